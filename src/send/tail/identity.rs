//! What makes a file the same file across renames and restarts: its device and inode, and a
//! fingerprint of its first bytes, so that a new file given a freed inode (inode reuse) or a
//! file truncated and written again is not taken for the one a position was kept for.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use sha2::{Digest, Sha256};

/// Bytes at the start of a file that the fingerprint covers, once the file has that many.
pub(super) const FINGERPRINT_BYTES: u64 = 256;

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

fn read_head(file: &File, len: u64) -> io::Result<Vec<u8>> {
    let mut head = vec![0; len as usize];
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], filled as u64) {
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
    let digest = Sha256::digest(bytes);
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
}
