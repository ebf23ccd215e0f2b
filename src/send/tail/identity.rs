//! What makes a file the same file across renames and restarts: its device and inode, a
//! fingerprint of its first bytes, an anchor (a hash of the bytes just before the position)
//! and its birth time, so that a new file given a freed inode (inode reuse) or a file
//! truncated and written again is not taken for the one a position was kept for.
//!
//! The fingerprint alone misses a new file that starts with the same bytes (a fixed header, or
//! an old file shorter than the fingerprint); the anchor catches one whose bytes before the
//! position differ, and the birth time (where the file system keeps one) one whose bytes are
//! the same up to the position: it was still created at another moment.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

/// Bytes at the start of a file that the fingerprint covers, once the file has that many.
pub(super) const FINGERPRINT_BYTES: u64 = 256;
/// Bytes before a position that its anchor covers, once the position is that far in.
pub(super) const ANCHOR_BYTES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub(super) fn of(meta: &Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A hash of a file's first `len` bytes (fewer than [`FINGERPRINT_BYTES`] while the file is
/// shorter; it grows with the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint {
    pub len: u64,
    pub hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `file` as it is now, `size` bytes long.
    pub(super) fn read(file: &File, size: u64) -> io::Result<Self> {
        let head = read_head(file, size.min(FINGERPRINT_BYTES))?;
        Ok(Fingerprint {
            len: head.len() as u64,
            hash: hash(&head),
        })
    }

    /// Whether `file` still starts with the bytes this was taken of.
    pub(super) fn matches(&self, file: &File) -> io::Result<bool> {
        let head = read_head(file, self.len)?;
        Ok(head.len() as u64 == self.len && hash(&head) == self.hash)
    }

    /// Whether it covers less than it could, for a file of `size` bytes.
    pub(super) fn can_grow(&self, size: u64) -> bool {
        self.len < FINGERPRINT_BYTES && size > self.len
    }
}

/// A hash of the `len` bytes that end at a position (fewer than [`ANCHOR_BYTES`] only when the
/// position is nearer the start): the content a stored position points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Anchor {
    pub len: u64,
    pub hash: u64,
}

impl Anchor {
    /// The anchor at offset 0, which covers no bytes, so any file matches it.
    pub(super) fn empty() -> Self {
        Anchor::of(&[], &[])
    }

    /// The anchor at the end of `before` followed by `then` (both may be longer than needed).
    pub(super) fn of(before: &[u8], then: &[u8]) -> Self {
        let then = &then[then.len().saturating_sub(ANCHOR_BYTES)..];
        let before = &before[before.len().saturating_sub(ANCHOR_BYTES - then.len())..];
        Anchor {
            len: (before.len() + then.len()) as u64,
            hash: hash_parts(&[before, then]),
        }
    }

    /// The bytes of `file` its anchor at `end` would cover (fewer if the file is shorter).
    pub(super) fn bytes_before(file: &File, end: u64) -> io::Result<Vec<u8>> {
        let from = end.saturating_sub(ANCHOR_BYTES as u64);
        read_at(file, from, end - from)
    }

    /// Whether the bytes of `file` that end at `end` are still those this was taken of.
    pub(super) fn matches(&self, file: &File, end: u64) -> io::Result<bool> {
        let Some(from) = end.checked_sub(self.len) else {
            return Ok(false);
        };
        let bytes = read_at(file, from, self.len)?;
        Ok(bytes.len() as u64 == self.len && hash(&bytes) == self.hash)
    }
}

/// When the file was created, in nanoseconds since 1970, where the file system keeps it
/// (statx's btime: ext4, xfs, btrfs, tmpfs; not every NFS or FUSE mount).
pub(super) fn born(meta: &Metadata) -> Option<u64> {
    let since = meta.created().ok()?.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_nanos()).ok()
}

/// Whether two birth times may be the same file's: unknown on either side proves nothing.
pub(super) fn same_birth(kept: Option<u64>, now: Option<u64>) -> bool {
    match (kept, now) {
        (Some(kept), Some(now)) => kept == now,
        _ => true,
    }
}

fn read_head(file: &File, len: u64) -> io::Result<Vec<u8>> {
    read_at(file, 0, len)
}

/// Up to `len` bytes at `from` (fewer at the end of the file).
fn read_at(file: &File, from: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut head = vec![0; len as usize];
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], from + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(filled);
    Ok(head)
}

fn hash(bytes: &[u8]) -> u64 {
    hash_parts(&[bytes])
}

/// The hash of the parts one after the other.
fn hash_parts(parts: &[&[u8]]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut first = [0; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_fingerprint_tells_rewritten_content_apart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        let mut file = File::create(&path).expect("create");
        file.write_all(b"first line\n").expect("write");
        let reader = File::open(&path).expect("open");
        let taken = Fingerprint::read(&reader, 11).expect("read");
        assert_eq!(taken.len, 11);
        file.write_all(&[b'x'; 400]).expect("write");
        assert!(taken.matches(&reader).expect("read"), "growth keeps it");
        assert!(taken.can_grow(411));
        assert_eq!(Fingerprint::read(&reader, 411).expect("read").len, 256);
        file.set_len(0).expect("truncate");
        assert!(!taken.matches(&reader).expect("read"), "shorter: not it");
        std::fs::write(&path, b"other line\n").expect("rewrite");
        assert!(
            !taken.matches(&reader).expect("read"),
            "other bytes: not it"
        );
    }

    #[test]
    fn an_anchor_covers_the_last_bytes_before_a_position_however_they_are_split() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        let content: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).expect("write");
        let file = File::open(&path).expect("open");
        for end in [0, 1, 255, 256, 257, 999, 1000] {
            let whole = Anchor::of(&content[..end], &[]);
            assert_eq!(whole.len, end.min(ANCHOR_BYTES) as u64);
            for split in [0, end / 3, end] {
                let parts = Anchor::of(&content[..split], &content[split..end]);
                assert_eq!(parts, whole, "end {end}, split {split}");
            }
            let before = Anchor::bytes_before(&file, end as u64).expect("read");
            assert_eq!(Anchor::of(&before, &[]), whole);
            assert!(whole.matches(&file, end as u64).expect("read"));
        }
        let at_500 = Anchor::of(&content[..500], &[]);
        assert!(!at_500.matches(&file, 501).expect("read"), "another place");
        assert!(
            !at_500.matches(&file, 100).expect("read"),
            "before its bytes"
        );
        assert!(Anchor::empty().matches(&file, 700).expect("read"));
        let mut changed = content.clone();
        changed[400] ^= 1;
        std::fs::write(&path, &changed).expect("rewrite");
        assert!(!at_500.matches(&file, 500).expect("read"), "a byte changed");
        std::fs::write(&path, &content[..499]).expect("truncate");
        assert!(!at_500.matches(&file, 500).expect("read"), "shorter");
    }

    #[test]
    fn birth_times_differ_only_when_both_are_known() {
        assert!(same_birth(Some(5), Some(5)));
        assert!(!same_birth(Some(5), Some(6)));
        assert!(same_birth(None, Some(6)));
        assert!(same_birth(Some(5), None));
    }
}
