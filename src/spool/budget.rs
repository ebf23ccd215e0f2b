//! `--spool-max-bytes` bounds the spool directory, not each spool (issue 21 item 13): every
//! spool under DIR (this process's own, the ones it adopted, and those of other processes,
//! live or dead) and the `aside/` copies of damaged segments count.
//!
//! Room is taken a segment at a time. Before a spool starts a segment, it takes DIR's `flock`,
//! adds up what DIR holds, and goes on only if a whole segment (`segment_bytes`, or the one
//! record that does not fit in one) still fits; the lock is held until the new file exists,
//! so two processes never take the same room. Within a segment, appends need no check: it
//! never grows past what was reserved. What another process's spool may still write into
//! the segment it has open is counted as reserved: its last segment counts as a whole one
//! (processes on one DIR share their flags; a different `--spool-max-bytes` skews this).
//!
//! What DIR holds: segment files and `aside/` files, by size. The state and lock files (a
//! few hundred bytes per spool) are not counted.
//!
//! `aside/` holds forensic copies, not undelivered data: when room is needed, the oldest are
//! removed first, each with a warning.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use super::store::segment_first;

/// The bound of one spool directory, shared by the spools of one process.
pub(crate) struct Budget {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// The spools of this process (own and adopted): their files are all they hold.
    mine: Mutex<BTreeSet<String>>,
}

/// DIR's lock, held from the check until the new segment file exists.
pub(crate) struct Admitted {
    _lock: File,
}

/// What DIR holds, added up.
#[derive(Debug, Default)]
struct Usage {
    bytes: u64,
    /// `aside/` files: (modified, path, size).
    aside: Vec<(SystemTime, PathBuf, u64)>,
}

impl Budget {
    pub(crate) fn new(dir: &Path, max_bytes: u64, segment_bytes: u64) -> Self {
        Budget {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes,
            mine: Mutex::new(BTreeSet::new()),
        }
    }

    pub(crate) fn claim(&self, name: &str) {
        self.mine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string());
    }

    /// A new segment of `need` bytes at most fits under the bound (after removing `aside/`
    /// copies if that makes room): DIR stays locked until the returned guard is dropped.
    /// `None`: no room. A DIR holding nothing counted always takes one segment, so a record
    /// larger than the bound never waits forever.
    pub(crate) fn admit(&self, need: u64) -> io::Result<Option<Admitted>> {
        let lock = File::open(&self.dir)?;
        lock.lock()?;
        let mut usage = self.usage()?;
        if usage.bytes == 0 || usage.bytes + need <= self.max_bytes {
            return Ok(Some(Admitted { _lock: lock }));
        }
        usage.aside.sort();
        for (_, path, size) in usage.aside {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::warn!(
                        "removed {} ({size} bytes), a copy of a damaged spool file, to make room under --spool-max-bytes",
                        path.display()
                    );
                    usage.bytes -= size;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => usage.bytes -= size,
                Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
            }
            if usage.bytes + need <= self.max_bytes {
                return Ok(Some(Admitted { _lock: lock }));
            }
        }
        Ok(None)
    }

    fn usage(&self) -> io::Result<Usage> {
        let mine = self.mine.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut usage = Usage::default();
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            // Only spools count: not lost+found (DIR as a mount point), nor a spool being
            // made (`.new-*`) or removed (`.gone-*`), which would each reserve a segment.
            if !super::is_spool_name(&name) {
                continue;
            }
            let (segments, last) = segments_in(&entry.path(), &mut usage);
            usage.bytes += segments;
            if !mine.contains(&name) {
                // Its owner, if alive, may fill its open segment.
                usage.bytes += self.segment_bytes.saturating_sub(last);
            }
        }
        Ok(usage)
    }
}

/// The bytes of the segments under `spool` and the size of the last one; its `aside/` files
/// go into `usage`. Files that vanish meanwhile (delivered) are passed over.
fn segments_in(spool: &Path, usage: &mut Usage) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(spool) else {
        return (0, 0);
    };
    let (mut bytes, mut last) = (0, (None, 0));
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if name == "aside" && meta.is_dir() {
            for copy in std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if let Ok(meta) = copy.metadata()
                    && meta.is_file()
                {
                    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    usage.bytes += meta.len();
                    usage.aside.push((modified, copy.path(), meta.len()));
                }
            }
        } else if let Some(first) = segment_first(&name)
            && meta.is_file()
        {
            bytes += meta.len();
            if last.0.is_none_or(|newest| first > newest) {
                last = (Some(first), meta.len());
            }
        }
    }
    (bytes, last.1)
}

#[cfg(test)]
mod tests {
    use super::super::{Limits, Refused, Spools, SyncPolicy};
    use super::*;

    /// Issue 21 item 13: `aside/` copies count under the bound, and the oldest go first when
    /// room is needed; the directory never holds more than the bound.
    #[test]
    fn aside_copies_count_and_the_oldest_make_room_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let limits = Limits {
            max_bytes: 64 * 1024,
            segment_bytes: 8 * 1024,
            window_bytes: 1 << 20,
            sync: SyncPolicy::Interval,
        };
        let spools: Spools<Vec<u8>> = Spools::open(dir.path(), limits).expect("open");
        let aside = dir.path().join(&spools.own.name).join("aside");
        std::fs::create_dir_all(&aside).expect("aside");
        let (older, newer) = (aside.join("seg-older.log"), aside.join("seg-newer.log"));
        std::fs::write(&older, vec![0; 40 * 1024]).expect("write");
        std::fs::write(&newer, vec![0; 20 * 1024]).expect("write");
        // Fixed times, not "now minus a minute": the kernel stamps files with the real clock,
        // which a test run under faketime does not share with SystemTime::now().
        for (path, seconds) in [(&older, 1_000_000), (&newer, 2_000_000)] {
            let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
            File::options()
                .write(true)
                .open(path)
                .and_then(|file| file.set_modified(at))
                .expect("set the copy's time");
        }
        let payload = vec![b'x'; 500];
        let budget = Budget::new(dir.path(), limits.max_bytes, limits.segment_bytes);
        let appended = |n: u64| spools.own.append(&payload, 0, payload.clone()).map(|()| n);
        assert!(appended(0).is_ok());
        assert!(
            !older.exists(),
            "the oldest copy made room for the first segment"
        );
        assert!(newer.exists());
        let mut n = 1;
        loop {
            match appended(n) {
                Ok(_) => n += 1,
                Err(Refused::Full(_)) => break,
                Err(Refused::Failed(e)) => panic!("{e}"),
            }
            assert!(spools.own.flush().is_ok());
        }
        assert!(
            !newer.exists(),
            "the newer copy went once room was needed again"
        );
        let held = budget.usage().expect("usage").bytes;
        assert!(held <= limits.max_bytes, "{held}");
        assert!(n > 100, "{n}");
    }

    /// Directories that are not spools reserve nothing: with DIR a mount point, `lost+found`
    /// (or leftovers of spools being made or removed) used to count as whole segments each,
    /// so eight of them kept every spool from ever starting a segment.
    #[test]
    fn directories_that_are_not_spools_take_no_room() {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["lost+found", ".new-0123456789ab", ".gone-0123456789ab"] {
            std::fs::create_dir(dir.path().join(name)).expect("mkdir");
        }
        let budget = Budget::new(dir.path(), 64 * 1024, 8 * 1024);
        assert_eq!(budget.usage().expect("usage").bytes, 0);
        std::fs::create_dir(dir.path().join("0123456789ab")).expect("mkdir");
        assert_eq!(
            budget.usage().expect("usage").bytes,
            8 * 1024,
            "another process's spool may still fill its open segment"
        );
    }
}
