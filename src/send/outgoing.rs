//! What a line becomes before it is sent: its message text, id, sequence number, and the cut
//! into fragments when it does not fit in one request.
//!
//! Ids (`--ids`) must stay the same when rsyslog sends a message again and differ between two
//! events whose text is identical, so they come from the message, not from this process:
//!
//! - `prefix`: the line is `<id> <message>`, written by an rsyslog template from the `uuid`
//!   property, which rsyslog keeps with the message across retries and, with a disk queue,
//!   across restarts. A line without a valid id falls back to `content`, with a warning.
//! - `content`: the id is a hash of the whole line (128 bits of SHA-256). Re-sends keep it;
//!   two events collapse into one only if their lines are byte-identical, timestamp included,
//!   so use a template with sub-second timestamps (`RSYSLOG_FileFormat` has microseconds).
//!
//! A sequence number (`--sequence`) is a counter under a sender name, so `decode` can tell
//! which messages never reached the logs. Without a spool the name is random and the counter
//! this process's own; a message handed back to rsyslog gives its number back, and the next
//! message read takes it, so a retry leaves no gap. With `--spool` the name is the spool's and
//! the counter carries on from it, so a message replayed after a restart keeps its number.
//!
//! A message goes into the spool as a record (see [`Outgoing::to_record`]) holding everything
//! computed here, and comes back out of it unchanged ([`Labeler::restore`]).
//!
//! Over 400 lines with its tests: labelling and the record form are read together, since a
//! record must restore exactly what was labelled.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::wire::{self, BudgetError, Fields, Fragment, Pieces, Sequence, Split, TargetFormat};

/// Where message ids come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IdMode {
    /// The line starts with the id and one space (rsyslog: `%uuid% %msg%`).
    Prefix,
    /// A hash of the whole line.
    Content,
}

/// Hex digits of the random sender name: 48 bits, so ten thousand sender processes share a
/// name with a chance of about 2 in 10 million.
const SENDER_DIGITS: usize = 12;
/// Hex digits of a `content` id: 128 bits of SHA-256.
const CONTENT_ID_DIGITS: usize = 32;
/// Lines without a usable id reported one by one; the rest are only counted.
const REPORTED_FALLBACKS: u64 = 10;

/// One line on its way: what was read, and what goes on the wire.
#[derive(Debug)]
pub struct Outgoing {
    /// The line as read: what the dead-letter file and rsyslog get back.
    pub line: Vec<u8>,
    /// The message is `line[text_start..]` (after a `prefix` id).
    text_start: usize,
    pub id: Option<String>,
    pub sequence: Option<u64>,
    /// The sequence's sender when it is not this process's (a message from an adopted spool).
    sender: Option<Arc<str>>,
    /// Set when the message goes in fragments.
    pub split: Option<Split>,
}

/// Record payload layout version (inside the spool's own format version).
const RECORD_KIND: u8 = 1;
const HAS_ID: u8 = 1;
const HAS_SEQUENCE: u8 = 2;

impl Outgoing {
    /// The spool record of this message: what `restore` needs to send it exactly as it would
    /// have gone now (kind, flags, line number, sequence, id, where the text starts, the line).
    /// The most bytes [`to_record`](Self::to_record) adds to the line.
    pub const RECORD_EXTRA_BYTES: u64 = 2 + 8 + 8 + 1 + u8::MAX as u64 + 4;

    pub fn to_record(&self, line_number: u64, out: &mut Vec<u8>) {
        let flags = if self.id.is_some() { HAS_ID } else { 0 }
            | if self.sequence.is_some() {
                HAS_SEQUENCE
            } else {
                0
            };
        out.extend_from_slice(&[RECORD_KIND, flags]);
        out.extend_from_slice(&line_number.to_le_bytes());
        out.extend_from_slice(&self.sequence.unwrap_or(0).to_le_bytes());
        let id = self.id.as_deref().unwrap_or("").as_bytes();
        // Ids are at most wire::MAX_ID_BYTES (64), made-up ones shorter still.
        out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&id[..id.len().min(usize::from(u8::MAX))]);
        out.extend_from_slice(&(self.text_start as u32).to_le_bytes());
        out.extend_from_slice(&self.line);
    }

    pub fn text(&self) -> &[u8] {
        &self.line[self.text_start..]
    }

    pub fn fragment_count(&self) -> u64 {
        self.split.map_or(1, |split| split.count)
    }
}

/// Gives out sequence numbers from 1; numbers handed back are given out again first.
#[derive(Debug, Default)]
struct Sequencer {
    state: Mutex<SequencerState>,
}

#[derive(Debug, Default)]
struct SequencerState {
    last: u64,
    returned: BinaryHeap<Reverse<u64>>,
}

impl Sequencer {
    fn next(&self) -> u64 {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match state.returned.pop() {
            Some(Reverse(number)) => number,
            None => {
                state.last += 1;
                state.last
            }
        }
    }

    fn give_back(&self, number: u64) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.returned.push(Reverse(number));
    }
}

/// Turns lines into [`Outgoing`] messages and those into request targets.
#[derive(Debug)]
pub struct Labeler {
    format: TargetFormat,
    ids: Option<IdMode>,
    sequencer: Option<Sequencer>,
    sender: String,
    /// Ids made up for fragmented messages when `--ids` is off: `<prefix>-<n>`, the prefix
    /// random per process, so no restart reuses one.
    made_up_prefix: String,
    made_up: AtomicU64,
    fallbacks: AtomicU64,
}

impl Labeler {
    /// Plain messages (no ids, sequence numbers or signatures), for the unit tests.
    #[cfg(test)]
    pub(crate) fn plain() -> Self {
        let format = TargetFormat::new("/", 8192, None);
        Labeler::new(format, None, false, 1 << 20, None).expect("budget is enough")
    }

    /// Fails if a message of `max_line_bytes` could not be sent within the budget. `sender`
    /// is a spool's name and the last sequence number it gave out; `None` picks a random name.
    pub fn new(
        format: TargetFormat,
        ids: Option<IdMode>,
        sequence: bool,
        max_line_bytes: u64,
        sender: Option<(String, u64)>,
    ) -> Result<Self, BudgetError> {
        let (sender, last_sequence) =
            sender.unwrap_or_else(|| (crate::hex::random(SENDER_DIGITS), 0));
        let sequencer = Sequencer::default();
        sequencer
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .last = last_sequence;
        let labeler = Labeler {
            format,
            ids,
            sequencer: sequence.then_some(sequencer),
            sender,
            made_up_prefix: crate::hex::random(SENDER_DIGITS),
            made_up: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        };
        // A made-up id (`<sender>-<counter>`) when the line brings none.
        let longest_id_len = match ids {
            Some(IdMode::Prefix) => wire::MAX_ID_BYTES,
            Some(IdMode::Content) => CONTENT_ID_DIGITS,
            None => SENDER_DIGITS + 1 + u64::MAX.to_string().len(),
        };
        let longest_id = "x".repeat(longest_id_len);
        let longest = Fields {
            id: Some(&longest_id),
            sequence: sequence.then_some(Sequence {
                sender: &labeler.sender,
                number: u64::MAX,
            }),
            fragment: None,
        };
        labeler.format.check_budget(max_line_bytes, &longest)?;
        Ok(labeler)
    }

    pub fn format(&self) -> &TargetFormat {
        &self.format
    }

    /// The message a line carries, labelled and cut to fit; `None` when it carries no text
    /// (a `prefix` line that is only an id).
    pub fn prepare(&self, line_number: u64, line: Vec<u8>) -> Option<Outgoing> {
        self.prepare_identified(line_number, line, None)
    }

    /// [`prepare`](Self::prepare), with the id a line gets when `--ids` is off: `send --file`
    /// names each line by where it is in its file, so a line read again after a kill carries
    /// the id it was first sent with.
    pub fn prepare_identified(
        &self,
        line_number: u64,
        line: Vec<u8>,
        id: Option<String>,
    ) -> Option<Outgoing> {
        let (id, text_start) = match self.ids {
            None => (id, 0),
            Some(IdMode::Content) => (Some(content_id(&line)), 0),
            Some(IdMode::Prefix) => match split_prefix_id(&line) {
                Some((id, text_start)) => (Some(id), text_start),
                None => {
                    self.report_fallback(line_number);
                    (Some(content_id(&line)), 0)
                }
            },
        };
        if text_start == line.len() {
            return None;
        }
        let mut outgoing = Outgoing {
            line,
            text_start,
            id,
            sequence: self.sequencer.as_ref().map(Sequencer::next),
            sender: None,
            split: None,
        };
        self.cut(&mut outgoing);
        Some(outgoing)
    }

    /// Decides whether a message goes in fragments, and how.
    fn cut(&self, outgoing: &mut Outgoing) {
        let encoded_len = wire::encoded_len(outgoing.text());
        if !self.format.fits(encoded_len, &self.fields(outgoing, None)) {
            if outgoing.id.is_none() {
                let n = self.made_up.fetch_add(1, Ordering::Relaxed) + 1;
                outgoing.id = Some(format!("{}-{n}", self.made_up_prefix));
            }
            // Labeler::new checked that the longest line fits in fragments.
            outgoing.split = self
                .format
                .split(outgoing.text(), encoded_len, &self.fields(outgoing, None))
                .ok();
        }
    }

    /// A message read back from a spool record, with its line number. `sender` is the spool's
    /// name: the message keeps the id and sequence number it was first given. `None` for a
    /// record this version cannot read.
    pub fn restore(&self, record: &[u8], sender: &Arc<str>) -> Option<(u64, Outgoing)> {
        let (&[kind, flags], rest) = record.split_first_chunk::<2>()?;
        if kind != RECORD_KIND {
            return None;
        }
        let (line_number, rest) = rest.split_first_chunk::<8>()?;
        let (sequence, rest) = rest.split_first_chunk::<8>()?;
        let (&[id_len], rest) = rest.split_first_chunk::<1>()?;
        let (id, rest) = rest.split_at_checked(usize::from(id_len))?;
        let (text_start, line) = rest.split_first_chunk::<4>()?;
        let text_start = u32::from_le_bytes(*text_start) as usize;
        if text_start >= line.len() {
            return None;
        }
        let mut outgoing = Outgoing {
            line: line.to_vec(),
            text_start,
            id: (flags & HAS_ID != 0).then(|| String::from_utf8_lossy(id).into_owned()),
            sequence: (flags & HAS_SEQUENCE != 0).then(|| u64::from_le_bytes(*sequence)),
            sender: (**sender != *self.sender).then(|| sender.clone()),
            split: None,
        };
        self.cut(&mut outgoing);
        Some((u64::from_le_bytes(*line_number), outgoing))
    }

    /// A message handed back undelivered gives its sequence number back.
    pub fn give_back(&self, outgoing: &Outgoing) {
        if let (Some(sequencer), Some(number)) = (&self.sequencer, outgoing.sequence) {
            sequencer.give_back(number);
        }
    }

    fn fields<'a>(&'a self, outgoing: &'a Outgoing, fragment: Option<Fragment>) -> Fields<'a> {
        Fields {
            id: outgoing.id.as_deref(),
            sequence: outgoing.sequence.map(|number| Sequence {
                sender: outgoing.sender.as_deref().unwrap_or(&self.sender),
                number,
            }),
            fragment,
        }
    }

    /// The request targets for a message, one per fragment, built as they are asked for.
    pub fn targets<'a>(&'a self, outgoing: &'a Outgoing) -> impl Iterator<Item = String> + 'a {
        let text = outgoing.text();
        let pieces = match outgoing.split {
            Some(split) => split.pieces(text),
            None => Pieces::whole(text),
        };
        let count = outgoing.split.map(|split| split.count);
        pieces.enumerate().map(move |(i, piece)| {
            let fragment = count.map(|count| Fragment {
                index: i as u64 + 1,
                count,
            });
            self.format.target(piece, &self.fields(outgoing, fragment))
        })
    }

    fn report_fallback(&self, line_number: u64) {
        let seen = self.fallbacks.fetch_add(1, Ordering::Relaxed) + 1;
        if seen <= REPORTED_FALLBACKS {
            tracing::warn!(
                line = line_number,
                "--ids prefix: the line does not start with an id (1-64 of A-Z a-z 0-9 - _ . and a space); its id is a hash of the line"
            );
        } else if seen == REPORTED_FALLBACKS + 1 {
            tracing::warn!("more lines without an id: only counted from now on");
        }
    }
}

/// `<id> <text>` → the id and where the text starts.
fn split_prefix_id(line: &[u8]) -> Option<(String, usize)> {
    let space = memchr::memchr(b' ', &line[..line.len().min(wire::MAX_ID_BYTES + 1)])?;
    let id = &line[..space];
    if !wire::is_valid_id(id) {
        return None;
    }
    Some((String::from_utf8_lossy(id).into_owned(), space + 1))
}

fn content_id(line: &[u8]) -> String {
    let digest = Sha256::digest(line);
    let mut id = String::with_capacity(CONTENT_ID_DIGITS);
    crate::hex::push(&mut id, &digest[..CONTENT_ID_DIGITS / 2]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labeler(ids: Option<IdMode>, sequence: bool, budget: usize) -> Labeler {
        Labeler::new(
            TargetFormat::new("/", budget, None),
            ids,
            sequence,
            1 << 20,
            None,
        )
        .expect("budget is enough")
    }

    #[test]
    fn compatible_default_has_no_extension() {
        let labeler = labeler(None, false, 8192);
        let outgoing = labeler.prepare(1, b"hello world".to_vec()).expect("text");
        let targets: Vec<String> = labeler.targets(&outgoing).collect();
        assert_eq!(targets, ["/?hello%20world"]);
    }

    #[test]
    fn prefix_ids_are_taken_off_the_line() {
        let labeler = labeler(Some(IdMode::Prefix), false, 8192);
        let outgoing = labeler
            .prepare(1, b"9F3A2B connection reset".to_vec())
            .expect("text");
        assert_eq!(outgoing.id.as_deref(), Some("9F3A2B"));
        assert_eq!(outgoing.text(), b"connection reset");
        let targets: Vec<String> = labeler.targets(&outgoing).collect();
        assert_eq!(targets, ["/?connection%20reset&i=9F3A2B"]);
        assert!(labeler.prepare(2, b"9F3A2B ".to_vec()).is_none());
        let fallback = labeler.prepare(3, b"no:id here".to_vec()).expect("text");
        assert_eq!(fallback.text(), b"no:id here");
        assert_eq!(fallback.id, Some(content_id(b"no:id here")));
    }

    #[test]
    fn content_ids_follow_the_bytes() {
        let labeler = labeler(Some(IdMode::Content), false, 8192);
        let first = labeler.prepare(1, b"same".to_vec()).expect("text");
        let again = labeler.prepare(2, b"same".to_vec()).expect("text");
        let other = labeler.prepare(3, b"other".to_vec()).expect("text");
        assert_eq!(first.id, again.id);
        assert_ne!(first.id, other.id);
        assert_eq!(first.id.as_deref().map(str::len), Some(32));
    }

    #[test]
    fn sequence_numbers_given_back_are_reused_first() {
        let labeler = labeler(None, true, 8192);
        let numbers: Vec<Option<u64>> = (0..3)
            .map(|i| labeler.prepare(i, b"m".to_vec()).and_then(|o| o.sequence))
            .collect();
        assert_eq!(numbers, [Some(1), Some(2), Some(3)]);
        let second = labeler.prepare(4, b"m".to_vec()).expect("text");
        assert_eq!(second.sequence, Some(4));
        labeler.give_back(&second);
        assert_eq!(
            labeler.prepare(5, b"m".to_vec()).and_then(|o| o.sequence),
            Some(4)
        );
        assert_eq!(
            labeler.prepare(6, b"m".to_vec()).and_then(|o| o.sequence),
            Some(5)
        );
    }

    #[test]
    fn long_messages_get_a_made_up_id_and_fragments() {
        let labeler = labeler(None, false, 80);
        let outgoing = labeler.prepare(1, vec![b'a'; 1000]).expect("text");
        let id = outgoing.id.clone().expect("made-up id");
        assert!(id.starts_with(&labeler.made_up_prefix));
        let targets: Vec<String> = labeler.targets(&outgoing).collect();
        assert_eq!(targets.len() as u64, outgoing.fragment_count());
        assert!(targets.len() > 10);
        for (i, target) in targets.iter().enumerate() {
            assert!(target.len() <= 80);
            assert!(target.ends_with(&format!("&i={id}&f={}.{}", i + 1, targets.len())));
        }
    }

    #[test]
    fn a_spool_record_restores_the_same_requests() {
        let labeler = labeler(Some(IdMode::Prefix), true, 200);
        let own: Arc<str> = Arc::from(labeler.sender.as_str());
        for line in [&b"7F3A hello"[..], &[b'z'; 1500][..], b"\xff\x00 raw"] {
            let outgoing = labeler.prepare(9, line.to_vec()).expect("text");
            let mut record = Vec::new();
            outgoing.to_record(9, &mut record);
            let (number, restored) = labeler.restore(&record, &own).expect("restores");
            assert_eq!(number, 9);
            let before: Vec<String> = labeler.targets(&outgoing).collect();
            let after: Vec<String> = labeler.targets(&restored).collect();
            assert_eq!(before, after);
        }
        // From another spool: that spool's sender goes on the wire.
        let other: Arc<str> = Arc::from("0123456789ab");
        let outgoing = labeler.prepare(1, b"id1 text".to_vec()).expect("text");
        let mut record = Vec::new();
        outgoing.to_record(1, &mut record);
        let (_, restored) = labeler.restore(&record, &other).expect("restores");
        let target: String = labeler.targets(&restored).collect();
        assert!(target.contains("0123456789ab"), "{target}");
        assert!(labeler.restore(&record[..5], &own).is_none());
    }
}
