//! Resuming a stored position after a restart: whether the file found is the one the position
//! was kept for, and where a file renamed away while it was being read went.
//!
//! A file with the stored device and inode is that file only if it still starts with the
//! same bytes (fingerprint), has the same bytes just before the position (anchor) and, where
//! the file system keeps birth times, was born at the same moment. Otherwise the inode was
//! given to a new file while `send` was stopped, or the file was rewritten: it is read from
//! its start under a new key (copies are better than losses).
//!
//! A file that rotation renamed to a name no pattern matches (`app.log` to `app.log.1` with
//! `--file app.log`) while the last run was reading it, and that was killed before finishing
//! it, is looked for next to where it was (logrotate renames within the directory) by its
//! inode, checked the same way, and read to its end.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};

use super::identity::{self, Anchor, FileId};
use super::positions::Entry;
use super::tracked::Start;

/// What a file found at a stored position's inode is.
pub(super) enum Verdict {
    /// The file the position was kept for: resumed there.
    Same(Start),
    /// That file, now shorter than the position (truncated while stopped).
    Truncated,
    /// Another file (given the freed inode) or the file rewritten; why, for the log.
    Other(&'static str),
}

/// Checks `file` (`size` bytes, born at `born`) against the position kept for its inode.
pub(super) fn verify(
    entry: &Entry,
    file: &File,
    size: u64,
    born: Option<u64>,
) -> io::Result<Verdict> {
    if !entry.fingerprint.matches(file)? {
        return Ok(Verdict::Other("its first bytes differ"));
    }
    if !identity::same_birth(entry.born, born) {
        return Ok(Verdict::Other("its birth time differs"));
    }
    if entry.offset > size {
        return Ok(Verdict::Truncated);
    }
    if !entry.anchor.matches(file, entry.offset)? {
        return Ok(Verdict::Other("its bytes before the position differ"));
    }
    Ok(Verdict::Same(Start {
        key: entry.key.clone(),
        fingerprint: entry.fingerprint,
        born,
        offset: entry.offset,
        before: Anchor::bytes_before(file, entry.offset)?,
    }))
}

/// A file found again under another name, ready to be read to its end.
pub(super) struct Renamed {
    pub id: FileId,
    pub file: File,
    /// Where it is now.
    pub path: PathBuf,
    pub start: Start,
}

/// Looks for the files of `lost` (positions whose inode no pattern found) in the directory
/// each was last seen in, under another name; only a file that passes [`verify`] is
/// returned. Blocking: a directory listing per directory.
pub(super) fn find_renamed(lost: Vec<(FileId, Entry)>) -> Vec<Renamed> {
    let mut by_dir: BTreeMap<PathBuf, Vec<(FileId, Entry)>> = BTreeMap::new();
    for (id, entry) in lost {
        if let Some(dir) = entry.path.parent() {
            by_dir
                .entry(dir.to_path_buf())
                .or_default()
                .push((id, entry));
        }
    }
    let mut found = Vec::new();
    for (dir, lost) in by_dir {
        let inodes: BTreeSet<u64> = lost.iter().map(|(id, _)| id.ino).collect();
        let Ok(listing) = std::fs::read_dir(dir_or_current(&dir)) else {
            continue;
        };
        for dir_entry in listing.flatten() {
            if !inodes.contains(&dir_entry.ino()) {
                continue;
            }
            let path = dir_entry.path();
            for (id, entry) in &lost {
                if id.ino == dir_entry.ino()
                    && path != entry.path
                    && let Some(renamed) = check(*id, entry, &path)
                {
                    found.push(renamed);
                }
            }
        }
    }
    found
}

/// `path` opened, if it is the file of `entry`, unchanged before its position.
fn check(id: FileId, entry: &Entry, path: &Path) -> Option<Renamed> {
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if FileId::of(&meta) != id || !meta.is_file() {
        return None;
    }
    match verify(entry, &file, meta.len(), identity::born(&meta)) {
        Ok(Verdict::Same(start)) => Some(Renamed {
            id,
            file,
            path: path.to_path_buf(),
            start,
        }),
        Ok(Verdict::Truncated | Verdict::Other(_)) | Err(_) => None,
    }
}

/// A relative `--file` path's directory: `app.log`'s parent is "".
fn dir_or_current(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}
