//! The texts the reorder buffer holds ([`super::order`]), one after another in chunks.
//!
//! A message is held about a window, then written: by then its memory has left every cache.
//! Held one allocation each, every text written was a read from a cold, scattered address
//! (and its allocation a malloc and a free): on a tree of two nodes, the ordered decode went
//! from 0.86 of `--order arrival` to about 0.95 with the chunks (and the turns' fronts kept
//! apart). Appended in the order read, texts are written in nearly that order (their log
//! times grow as a file is read), so the reads go forward through memory, as prefetchers
//! expect. A chunk is freed when the last of its texts is written: every text is written by
//! its turn, at most a window of the clock after it was read, so what chunks hold is what was
//! read in the last window, as with a text each.

/// Where a held text is: its chunk, and its bytes there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Text {
    chunk: u32,
    /// Within a chunk of at most [`MOST_CHUNK_BYTES`], or 0 in a text's own chunk.
    start: u32,
    len: usize,
}

/// Memory of a chunk beyond the bytes it holds: its allocation's header and its place here.
pub(super) const CHUNK_BYTES: usize = 48;
/// The largest chunk: big enough that a chunk's allocation is rare, small enough that a few
/// texts held longer than their neighbours (a sender's gap) pin little.
const MOST_CHUNK_BYTES: usize = 64 * 1024;
/// A chunk is at most this share of the bound. A text written frees nothing until its chunk
/// is written, so at the bound, with several files' texts interleaved in time, each file's
/// oldest chunk pins what was written of it: at a sixteenth, 16 files of 1,000 messages at a
/// 1 MiB bound had twice as many late as an allocation each; at this share, fewer.
pub(super) const CHUNK_SHARE: usize = 256;

struct Chunk {
    bytes: Vec<u8>,
    /// Texts in it not yet written.
    live: u32,
}

pub(super) struct Texts {
    chunk_bytes: usize,
    /// By chunk number; `None` for a number free to take again.
    chunks: Vec<Option<Chunk>>,
    vacant: Vec<u32>,
    /// The chunk texts are appended to.
    current: Option<u32>,
    /// An empty chunk kept for the next: a steady flow allocates nothing.
    spare: Option<Vec<u8>>,
    /// The chunks held, written or not: the bytes appended to the one being filled, the
    /// allocations of the others, and their [`CHUNK_BYTES`].
    held: usize,
}

impl Texts {
    /// Texts for a reorder buffer bound to `max_bytes`.
    pub(super) fn new(max_bytes: usize) -> Self {
        Texts {
            chunk_bytes: (max_bytes / CHUNK_SHARE).clamp(1, MOST_CHUNK_BYTES),
            chunks: Vec::new(),
            vacant: Vec::new(),
            current: None,
            spare: None,
            held: 0,
        }
    }

    /// Memory the texts pin, as the reorder buffer's bound counts it: each chunk still held,
    /// written or not, all of its allocation. The room left in the chunk being filled (at
    /// most 1/256 of the bound) and one spare chunk are outside it.
    pub(super) fn held_bytes(&self) -> usize {
        self.held
    }

    /// Appends `text`; it stays until [`free`](Self::free)d.
    pub(super) fn push(&mut self, text: &[u8]) -> Text {
        let len = text.len();
        let fits = self
            .current
            .and_then(|chunk| self.chunks[chunk as usize].as_ref())
            .is_some_and(|chunk| chunk.bytes.capacity() - chunk.bytes.len() >= len);
        let chunk = match self.current {
            Some(chunk) if fits => chunk,
            _ => self.start_chunk(len),
        };
        let held = self.chunks[chunk as usize]
            .as_mut()
            .expect("a chunk just started or current is held");
        let start = held.bytes.len();
        held.bytes.extend_from_slice(text);
        held.live += 1;
        self.held += len;
        Text {
            chunk,
            start: u32::try_from(start).expect("a shared chunk is at most 64 KiB"),
            len,
        }
    }

    /// A chunk for a text of `len` bytes: the next current one, or one of its own if the text
    /// is longer than a chunk.
    fn start_chunk(&mut self, len: usize) -> u32 {
        let own = len > self.chunk_bytes;
        let spare = if own { None } else { self.spare.take() };
        let bytes = spare.unwrap_or_else(|| Vec::with_capacity(len.max(self.chunk_bytes)));
        // A chunk no longer filled pins all of its allocation: the room no text will take
        // (nearly half of it, with texts a little over half a chunk) counts from now on.
        let left = if own {
            // Beyond the text, if the allocator gave more.
            bytes.capacity() - len
        } else {
            let current = self.current.take();
            current
                .and_then(|chunk| self.chunks[chunk as usize].as_ref())
                .map_or(0, |chunk| chunk.bytes.capacity() - chunk.bytes.len())
        };
        self.held += left;
        let chunk = Chunk { bytes, live: 0 };
        let number = match self.vacant.pop() {
            Some(number) => {
                self.chunks[number as usize] = Some(chunk);
                number
            }
            None => {
                self.chunks.push(Some(chunk));
                u32::try_from(self.chunks.len() - 1)
                    .expect("fewer chunks than 4 G: each holds a text, and texts are bounded")
            }
        };
        self.held += CHUNK_BYTES;
        if !own {
            self.current = Some(number);
        }
        number
    }

    /// What the chunks held pin in memory: every byte of their allocations, but the room
    /// left in the one being filled.
    #[cfg(test)]
    pub(super) fn pinned_bytes(&self) -> usize {
        let pinned = |(number, chunk): (usize, &Option<Chunk>)| {
            let chunk = chunk.as_ref()?;
            let current = self.current == u32::try_from(number).ok();
            let bytes = if current {
                chunk.bytes.len()
            } else {
                chunk.bytes.capacity()
            };
            Some(bytes + CHUNK_BYTES)
        };
        self.chunks.iter().enumerate().filter_map(pinned).sum()
    }

    pub(super) fn get(&self, text: Text) -> &[u8] {
        let chunk = self.chunks[text.chunk as usize]
            .as_ref()
            .expect("a text not freed is in a held chunk");
        &chunk.bytes[text.start as usize..][..text.len]
    }

    /// `text` was written: its chunk goes once it holds nothing else.
    pub(super) fn free(&mut self, text: Text) {
        let slot = &mut self.chunks[text.chunk as usize];
        let Some(chunk) = slot.as_mut() else { return };
        chunk.live -= 1;
        if chunk.live > 0 {
            return;
        }
        if let Some(mut chunk) = slot.take() {
            // Counted as its bytes while filled, then as its allocation.
            let counted = if self.current == Some(text.chunk) {
                self.current = None;
                chunk.bytes.len()
            } else {
                chunk.bytes.capacity()
            };
            self.held -= counted + CHUNK_BYTES;
            self.vacant.push(text.chunk);
            if chunk.bytes.capacity() == self.chunk_bytes {
                chunk.bytes.clear();
                self.spare = Some(chunk.bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_share_a_chunk_until_the_last_is_written() {
        let mut texts = Texts::new(CHUNK_SHARE * 64);
        let held: Vec<Text> = (0..10).map(|i| texts.push(&[b'a' + i; 10])).collect();
        assert_eq!(
            texts.chunks.len(),
            2,
            "64 bytes a chunk: six texts, then four"
        );
        assert_eq!(texts.get(held[7]), &[b'h'; 10]);
        // The first chunk's 4 bytes left pinned with it count.
        assert_eq!(texts.held_bytes(), 104 + 2 * CHUNK_BYTES);
        for &text in &held[..5] {
            texts.free(text);
        }
        assert_eq!(
            texts.held_bytes(),
            104 + 2 * CHUNK_BYTES,
            "the sixth pins its chunk"
        );
        texts.free(held[5]);
        assert_eq!(texts.held_bytes(), 40 + CHUNK_BYTES);
        assert!(texts.spare.is_some(), "kept for the next chunk");
        for &text in &held[6..] {
            texts.free(text);
        }
        assert_eq!(texts.held_bytes(), 0);
    }

    #[test]
    fn a_text_longer_than_a_chunk_has_its_own_and_the_current_one_goes_on() {
        let mut texts = Texts::new(CHUNK_SHARE * 64);
        let small = texts.push(b"small");
        let long = texts.push(&[b'l'; 1000]);
        let next = texts.push(b"next");
        assert_eq!(texts.chunks.len(), 2);
        assert_eq!((small.chunk, next.chunk), (0, 0));
        assert_eq!(texts.get(long), &[b'l'; 1000]);
        texts.free(long);
        assert_eq!(texts.held_bytes(), 9 + CHUNK_BYTES);
        assert!(
            texts.spare.is_none(),
            "only chunks of the usual size are kept"
        );
        assert_eq!(texts.get(next), b"next");
        texts.free(small);
        texts.free(next);
        assert!(texts.spare.is_some());
        let longer = texts.push(&[b'l'; 2000]);
        assert!(
            texts.spare.is_some(),
            "a text's own chunk takes no spare one"
        );
        texts.free(longer);
        assert_eq!(texts.held_bytes(), 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Pushes and frees in any order: each text reads back as pushed while held, a chunk
        /// is counted while anything in it is held, and nothing is once everything is freed.
        #[test]
        fn reads_back_what_was_pushed_and_counts_what_is_pinned(
            steps in proptest::collection::vec((0usize..200, proptest::bool::weighted(0.6)), 1..300)
        ) {
            let mut texts = Texts::new(CHUNK_SHARE * 256);
            let mut held: Vec<(Text, Vec<u8>)> = Vec::new();
            for (index, (len, push)) in steps.into_iter().enumerate() {
                if push || held.is_empty() {
                    let bytes: Vec<u8> = (0..len).map(|i| (index + i) as u8).collect();
                    held.push((texts.push(&bytes), bytes));
                } else {
                    let (text, bytes) = held.swap_remove(len % held.len());
                    proptest::prop_assert_eq!(texts.get(text), &bytes[..]);
                    texts.free(text);
                }
                for (text, bytes) in &held {
                    proptest::prop_assert_eq!(texts.get(*text), &bytes[..]);
                }
                let live: usize = held.iter().map(|(_, bytes)| bytes.len()).sum();
                proptest::prop_assert!(texts.held_bytes() >= live);
                proptest::prop_assert_eq!(texts.held_bytes(), texts.pinned_bytes());
            }
            for (text, _) in held {
                texts.free(text);
            }
            proptest::prop_assert_eq!(texts.held_bytes(), 0);
            proptest::prop_assert!(texts.chunks.iter().all(Option::is_none));
        }
    }
}
