//! The dead-letter file: messages that could not be delivered, appended raw, one per line, so
//! that `drifter-rsyslog send URL < FILE` replays them.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

pub(super) struct DeadLetter {
    path: PathBuf,
    file: Mutex<File>,
    /// The same file, for fsync without the lock that appends (on the runtime thread) take.
    for_sync: File,
    /// Appended since the last sync.
    unsynced: AtomicBool,
}

impl DeadLetter {
    /// Opens (creating if needed) for appending; done before any input is read so that a bad
    /// path is a configuration error, not a surprise at the end.
    pub(super) fn open(path: &Path) -> io::Result<Self> {
        // Owner-only, as the spool: the lines are what applications logged (issue 27).
        let file = crate::spool::file_options()
            .create(true)
            .append(true)
            .open(path)?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(warning) = crate::spool::shared_dir_warning(parent.unwrap_or(Path::new("."))) {
            tracing::warn!("dead-letter directory {warning}");
        }
        let for_sync = file.try_clone()?;
        Ok(DeadLetter {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            for_sync,
            unsynced: AtomicBool::new(false),
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one message and its LF in a single write, so concurrent writers never
    /// interleave and a crash leaves whole lines.
    pub(super) fn append(&self, message: &[u8]) -> io::Result<()> {
        let mut line = Vec::with_capacity(message.len() + 1);
        line.extend_from_slice(message);
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(&line)?;
        self.unsynced.store(true, Ordering::Release);
        Ok(())
    }

    /// Makes everything appended durable (nothing to do when nothing was). Blocking; never
    /// holds the lock appends take.
    pub(super) fn sync(&self) -> io::Result<()> {
        if !self.unsynced.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        self.for_sync.sync_all().inspect_err(|_| {
            // Not known to be durable: the next sync tries again, and says so again.
            self.unsynced.store(true, Ordering::Release);
        })
    }
}
