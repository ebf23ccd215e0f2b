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
/// returned, once. Blocking: a directory listing per directory.
pub(super) fn find_renamed(lost: Vec<(FileId, Entry)>) -> Vec<Renamed> {
    let mut by_dir: BTreeMap<PathBuf, Vec<(FileId, Entry)>> = BTreeMap::new();
    for (id, entry) in lost {
        for dir in dirs_of(&entry.path) {
            by_dir.entry(dir).or_default().push((id, entry.clone()));
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
                // Two names of one directory (a link, `..`) find it twice: kept once.
                if id.ino == dir_entry.ino()
                    && path != entry.path
                    && !found.iter().any(|renamed: &Renamed| renamed.id == *id)
                    && let Some(renamed) = check(*id, entry, &path)
                {
                    found.push(renamed);
                }
            }
        }
    }
    found
}

/// Where a file last seen at `path` may have been renamed within: its directory and, for a
/// link (Kubernetes' /var/log/containers), the directory of the file it now leads to, where
/// the runtime renames the file it rotates.
fn dirs_of(path: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = path.parent().map(Path::to_path_buf).into_iter().collect();
    if let Some(target_dir) = std::fs::canonicalize(path)
        .ok()
        .and_then(|target| target.parent().map(Path::to_path_buf))
        && !dirs.contains(&target_dir)
    {
        dirs.push(target_dir);
    }
    dirs
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::send::tail::identity::Fingerprint;

    /// A header longer than the fingerprint, as a file format's fixed first line.
    fn header() -> String {
        format!("# {}\n", "h".repeat(300))
    }

    /// The position a run would have stored at the end of `path`, with its inode.
    fn kept(path: &Path) -> (FileId, Entry) {
        let file = File::open(path).expect("open");
        let meta = file.metadata().expect("stat");
        let content = std::fs::read(path).expect("read");
        let entry = Entry {
            key: "0123456789ab".into(),
            fingerprint: Fingerprint::read(&file, meta.len()).expect("fingerprint"),
            offset: meta.len(),
            anchor: Anchor::of(&content, &[]),
            born: identity::born(&meta),
            path: path.to_path_buf(),
            touched: 0,
        };
        (FileId::of(&meta), entry)
    }

    fn verdict(entry: &Entry, path: &Path, born: Option<u64>) -> Verdict {
        let file = File::open(path).expect("open");
        let size = file.metadata().expect("stat").len();
        verify(entry, &file, size, born).expect("verify")
    }

    #[test]
    fn a_position_resumes_only_in_the_file_it_was_kept_for() {
        let dir = tempfile::tempdir().expect("temp dir");
        let old = dir.path().join("old.log");
        std::fs::write(&old, format!("{}old 1\nold 2\n", header())).expect("write");
        // Its inode given to a new file with the same first bytes (the case of a reused
        // inode: `verify` is what runs once the inode matched).
        let (_, mut entry) = kept(&old);
        entry.born = None;
        let new = dir.path().join("new.log");
        let reused = format!("{}new 1\nnew 2\nnew 3\n", header());
        std::fs::write(&new, &reused).expect("write");
        assert!(matches!(
            verdict(&entry, &new, None),
            Verdict::Other("its bytes before the position differ")
        ));
        // The same file, grown: resumed where it was, under its key.
        std::fs::write(&old, format!("{}old 1\nold 2\nold 3\n", header())).expect("append");
        match verdict(&entry, &old, None) {
            Verdict::Same(start) => {
                assert_eq!(
                    (start.key.as_str(), start.offset),
                    ("0123456789ab", entry.offset)
                );
                assert_eq!(Anchor::of(&start.before, &[]), entry.anchor);
            }
            _ => panic!("not resumed"),
        }
        // Shorter than the position: truncated while stopped.
        std::fs::write(&old, format!("{}old\n", header())).expect("truncate");
        assert!(matches!(verdict(&entry, &old, None), Verdict::Truncated));
        // A version 1 position has no anchor: only the first bytes are checked (the old risk).
        let legacy = Entry {
            anchor: Anchor::empty(),
            ..entry.clone()
        };
        assert!(matches!(verdict(&legacy, &new, None), Verdict::Same(_)));
        // Other first bytes.
        std::fs::write(&new, "other\n".repeat(100)).expect("write");
        assert!(matches!(
            verdict(&entry, &new, None),
            Verdict::Other("its first bytes differ")
        ));
    }

    #[test]
    fn the_same_bytes_up_to_the_position_are_told_apart_by_the_birth_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let old = dir.path().join("short.log");
        std::fs::write(&old, "one\ntwo\n").expect("write");
        let (_, mut entry) = kept(&old);
        entry.born = Some(1_000);
        // A new file starting with all the old one had: only its birth tells it apart.
        std::fs::write(&old, "one\ntwo\nthree\n").expect("write");
        assert!(matches!(
            verdict(&entry, &old, Some(2_000)),
            Verdict::Other("its birth time differs")
        ));
        assert!(matches!(
            verdict(&entry, &old, Some(1_000)),
            Verdict::Same(_)
        ));
        // A file system without birth times: content alone, so it resumes.
        assert!(matches!(verdict(&entry, &old, None), Verdict::Same(_)));
    }

    #[test]
    fn a_file_renamed_away_is_found_next_to_its_old_name_only_if_unchanged() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("app.log");
        std::fs::write(&log, format!("{}a 1\na 2\n", header())).expect("write");
        let (id, entry) = kept(&log);
        let rotated = dir.path().join("app.log.1");
        std::fs::rename(&log, &rotated).expect("rotate");
        std::fs::write(&log, format!("{}b 1\nb 2\n", header())).expect("new file");
        std::fs::write(dir.path().join("other.log"), "x\n").expect("other");
        let found = find_renamed(vec![(id, entry.clone())]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, rotated);
        assert_eq!((found[0].id, found[0].start.offset), (id, entry.offset));
        // Under two names (a hard link; or one directory reached two ways): read once.
        std::fs::hard_link(&rotated, dir.path().join("app.log.2")).expect("link");
        assert_eq!(find_renamed(vec![(id, entry.clone())]).len(), 1);

        // Changed before the position in place (same inode): not resumed, not read.
        let mut changed = std::fs::read(&rotated).expect("read");
        let last = changed.len() - 2;
        changed[last] = b'9';
        std::fs::write(&rotated, &changed).expect("rewrite in place");
        assert!(find_renamed(vec![(id, entry.clone())]).is_empty());

        let gone = Entry {
            path: dir.path().join("no such dir/app.log"),
            ..entry
        };
        assert!(find_renamed(vec![(id, gone)]).is_empty());
    }
}
