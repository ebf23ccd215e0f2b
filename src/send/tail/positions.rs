//! The `--file` read positions, kept in the spool directory next to the spools (the segment
//! format is not touched): one line per file, written whole to a temporary file and renamed
//! over the last, so a kill leaves the old positions or the new, never a mix. A position is
//! stored only once the lines before it are in the spool (see [`super::Tail::commit`]).
//!
//! The file is locked for as long as the process runs: two processes tailing into one spool
//! directory would overwrite each other's positions.
//!
//! Format: a header line, then `<key> <dev> <ino> <fingerprint length> <fingerprint hash hex>
//! <offset> <anchor length> <anchor hash hex> <birth time in ns, or -> <path, percent-encoded>`
//! per file. The key names the file's content in message ids (see
//! [`super::Tracked::line_id`]). Version 1 had no anchor and no birth time: its entries load
//! without them, and are checked by inode and fingerprint only, until stored again.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode, percent_encode};

use super::identity::{ANCHOR_BYTES, Anchor, FINGERPRINT_BYTES, FileId, Fingerprint};

pub(crate) const POSITIONS_FILE: &str = "file-positions";
const LOCK_FILE: &str = "file-positions.lock";
const HEADER: &str = "drifter-rsyslog file positions 2";
/// The format without anchor and birth time, still read.
const HEADER_1: &str = "drifter-rsyslog file positions 1";
/// Entries kept for files not seen since start-up (a mount that comes late, a file moved
/// away for a while), at most; the rest are dropped oldest first.
const MAX_ENTRIES: usize = 4096;

const PATH_ESCAPES: &AsciiSet = &CONTROLS.add(b' ').add(b'%');

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub key: String,
    pub fingerprint: Fingerprint,
    /// Where the next line starts: every line before it is in the spool.
    pub offset: u64,
    /// The anchor at `offset`; empty (it checks nothing) from a version 1 file.
    pub anchor: Anchor,
    /// The file's birth time, where known.
    pub born: Option<u64>,
    pub path: PathBuf,
    /// When this run last stored it (entries from earlier runs: 0), for [`MAX_ENTRIES`].
    pub touched: u64,
}

pub(super) struct Positions {
    path: PathBuf,
    temporary: PathBuf,
    dir: PathBuf,
    entries: BTreeMap<FileId, Entry>,
    /// Off with `--spool-sync off`, like the spool itself.
    sync: bool,
    stores: u64,
    _lock: File,
}

impl Positions {
    /// Locks and loads the positions under the spool directory `dir`. A damaged file is
    /// reported and set aside: its files are then read as new (from their start).
    pub(super) fn open(dir: &Path, sync: bool) -> anyhow::Result<Self> {
        let lock_path = dir.join(LOCK_FILE);
        let lock = crate::spool::file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "another `send --file` process keeps its file positions in {}; give each its own --spool",
                dir.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
            }
        }
        let path = dir.join(POSITIONS_FILE);
        let entries = match std::fs::read(&path) {
            Ok(bytes) => match parse(&bytes) {
                Some(entries) => entries,
                None => {
                    tracing::error!(
                        "{} is damaged; its files are read again from their start",
                        path.display()
                    );
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Positions {
            temporary: dir.join(format!("{POSITIONS_FILE}.new")),
            dir: dir.to_path_buf(),
            path,
            entries,
            sync,
            stores: 0,
            _lock: lock,
        })
    }

    pub(super) fn get(&self, id: FileId) -> Option<&Entry> {
        self.entries.get(&id)
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = (&FileId, &Entry)> {
        self.entries.iter()
    }

    pub(super) fn set(&mut self, id: FileId, mut entry: Entry) {
        entry.touched = self.stores + 1;
        self.entries.insert(id, entry);
    }

    pub(super) fn remove(&mut self, id: FileId) {
        self.entries.remove(&id);
    }

    /// Every entry, ready to be written (blocking work, done off the runtime).
    pub(super) fn snapshot(&mut self) -> Snapshot {
        self.stores += 1;
        while self.entries.len() > MAX_ENTRIES {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.touched)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => self.entries.remove(&id),
                None => break,
            };
        }
        let mut text = format!("{HEADER}\n");
        for (id, entry) in &self.entries {
            let path = percent_encode(entry.path.as_os_str().as_bytes(), PATH_ESCAPES);
            let anchor = entry.anchor;
            let born = entry
                .born
                .map_or_else(|| "-".to_string(), |ns| ns.to_string());
            text.push_str(&format!(
                "{} {} {} {} {:016x} {} {} {:016x} {born} {path}\n",
                entry.key,
                id.dev,
                id.ino,
                entry.fingerprint.len,
                entry.fingerprint.hash,
                entry.offset,
                anchor.len,
                anchor.hash,
            ));
        }
        Snapshot {
            text,
            temporary: self.temporary.clone(),
            path: self.path.clone(),
            dir: self.dir.clone(),
            sync: self.sync,
        }
    }
}

pub(super) struct Snapshot {
    text: String,
    temporary: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    sync: bool,
}

impl Snapshot {
    /// Replaces the positions file atomically (and durably unless sync is off).
    pub(super) fn write(self) -> io::Result<()> {
        let mut file = crate::spool::file_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.temporary)?;
        file.write_all(self.text.as_bytes())?;
        if self.sync {
            file.sync_data()?;
        }
        drop(file);
        std::fs::rename(&self.temporary, &self.path)?;
        if self.sync {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }
}

fn parse(bytes: &[u8]) -> Option<BTreeMap<FileId, Entry>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    let version_1 = match lines.next()? {
        HEADER => false,
        HEADER_1 => true,
        _ => return None,
    };
    let mut entries = BTreeMap::new();
    for line in lines {
        let mut fields = line.splitn(if version_1 { 7 } else { 10 }, ' ');
        let mut next = || fields.next();
        let key = next()?.to_string();
        let dev = next()?.parse().ok()?;
        let ino = next()?.parse().ok()?;
        // Lengths are what is read back to check a file: never more than the checks cover.
        let len = next()?
            .parse()
            .ok()
            .filter(|len| *len <= FINGERPRINT_BYTES)?;
        let hash = u64::from_str_radix(next()?, 16).ok()?;
        let offset = next()?.parse().ok()?;
        let (anchor, born) = if version_1 {
            (Anchor::empty(), None)
        } else {
            let len = next()?
                .parse()
                .ok()
                .filter(|len| *len <= ANCHOR_BYTES as u64)?;
            let hash = u64::from_str_radix(next()?, 16).ok()?;
            let born = match next()? {
                "-" => None,
                ns => Some(ns.parse().ok()?),
            };
            (Anchor { len, hash }, born)
        };
        let path: Vec<u8> = percent_decode(next()?.as_bytes()).collect();
        if !crate::wire::is_valid_id(key.as_bytes()) {
            return None;
        }
        entries.insert(
            FileId { dev, ino },
            Entry {
                key,
                fingerprint: Fingerprint { len, hash },
                offset,
                anchor,
                born,
                path: PathBuf::from(std::ffi::OsStr::from_bytes(&path)),
                touched: 0,
            },
        );
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_survive_a_store_and_a_reopen_and_the_lock_is_exclusive() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut positions = Positions::open(dir.path(), true).expect("open");
        let id = FileId { dev: 7, ino: 42 };
        let entry = Entry {
            key: "0123456789ab".into(),
            fingerprint: Fingerprint { len: 3, hash: 99 },
            offset: 1234,
            anchor: Anchor { len: 256, hash: 7 },
            born: Some(1_700_000_000_123_456_789),
            path: PathBuf::from("/var/log/with space/%odd\n.log"),
            touched: 0,
        };
        positions.set(id, entry.clone());
        positions.snapshot().write().expect("store");
        assert!(Positions::open(dir.path(), true).is_err(), "locked");
        drop(positions);
        let reopened = Positions::open(dir.path(), true).expect("reopen");
        let got = reopened.get(id).expect("kept");
        assert_eq!((got.key.as_str(), got.offset), ("0123456789ab", 1234));
        assert_eq!(
            (got.fingerprint, &got.path),
            (entry.fingerprint, &entry.path)
        );
    }

    #[test]
    fn a_version_1_file_loads_without_anchor_or_birth_time_and_is_stored_as_version_2() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join(POSITIONS_FILE),
            "drifter-rsyslog file positions 1\n\
             0123456789ab 7 42 256 00000000000000ff 1234 /var/log/app.log\n",
        )
        .expect("write");
        let mut positions = Positions::open(dir.path(), false).expect("open");
        let id = FileId { dev: 7, ino: 42 };
        let got = positions.get(id).expect("kept").clone();
        assert_eq!((got.key.as_str(), got.offset), ("0123456789ab", 1234));
        assert_eq!(
            got.fingerprint,
            Fingerprint {
                len: 256,
                hash: 255
            }
        );
        assert_eq!((got.anchor, got.born), (Anchor::empty(), None));
        assert_eq!(got.path, PathBuf::from("/var/log/app.log"));
        positions.snapshot().write().expect("store");
        let text = std::fs::read_to_string(dir.path().join(POSITIONS_FILE)).expect("read");
        assert!(text.starts_with(&format!("{HEADER}\n")), "{text}");
        assert!(
            text.contains(" 1234 0 "),
            "an empty anchor, no birth time: {text}"
        );
        assert!(text.ends_with(" - /var/log/app.log\n"), "{text}");
        drop(positions);
        let reopened = Positions::open(dir.path(), false).expect("reopen");
        assert_eq!(reopened.get(id), Some(&got));
    }

    #[test]
    fn a_damaged_file_is_set_aside() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(POSITIONS_FILE), b"garbage\n").expect("write");
        let positions = Positions::open(dir.path(), false).expect("open");
        assert!(positions.entries.is_empty());
        drop(positions);
        // Lengths past what the checks cover would make them read (allocate) that much.
        for line in [
            "0123456789ab 7 42 99999999999999 00000000000000ff 1234 256 0000000000000001 - /a",
            "0123456789ab 7 42 256 00000000000000ff 1234 99999999999999 0000000000000001 - /a",
        ] {
            std::fs::write(
                dir.path().join(POSITIONS_FILE),
                format!("{HEADER}\n{line}\n"),
            )
            .expect("write");
            let positions = Positions::open(dir.path(), false).expect("open");
            assert!(positions.entries.is_empty(), "{line}");
        }
    }
}
