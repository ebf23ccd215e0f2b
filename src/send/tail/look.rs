//! What a look at the `--file` patterns finds: new files (resumed from their stored
//! position, or read from their start), files rotated away or deleted (read to their end,
//! then closed), and files truncated or rewritten in place (read again from 0 under a new
//! key). The first look also finishes files renamed away while the last run read them.

use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;

use super::discover;
use super::identity::{self, Anchor, FileId, Fingerprint};
use super::resume::{self, Verdict};
use super::tracked::{Rotated, Start, Tracked};
use super::{FileStart, Halt, KEY_DIGITS, Reading, entry_of};

/// Bytes looked at from the end of a file for `--file-start end`.
const TAIL_SEARCH_BYTES: u64 = 64 * 1024;

impl Reading<'_> {
    /// Finds new, rotated, truncated and finished files.
    pub(super) async fn look(&mut self, startup: bool) -> Result<(), Halt> {
        let found = discover::matching(&self.tail.input.patterns);
        let renamed = if startup {
            self.resume_renamed(&found).await
        } else {
            Vec::new()
        };
        let mut seen: Vec<FileId> = Vec::with_capacity(found.len());
        for (path, meta) in found {
            let id = FileId::of(&meta);
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            if let Some(known) = self.files.iter_mut().find(|t| t.id == id) {
                // Renamed to another name that is also read: still a live file.
                known.path = path;
                known.rotated = None;
                continue;
            }
            let replaced = self
                .files
                .iter()
                .find(|t| t.path == path && t.rotated.is_none())
                .map(|t| t.id)
                .or_else(|| {
                    renamed
                        .iter()
                        .rfind(|(old_path, _)| *old_path == path)
                        .map(|(_, id)| *id)
                });
            match self.open(path.clone(), id, startup).await {
                Ok(Some(mut tracked)) => {
                    tracked.after = replaced;
                    self.files.push(tracked);
                }
                Ok(None) => {}
                Err(OpenError::Spool(halt)) => return Err(halt),
                Err(OpenError::Io(e)) => {
                    // Once per path: it is tried again at every look.
                    if self.unreadable.insert(path.clone()) {
                        tracing::warn!("cannot read {}: {e}; trying again", path.display());
                    }
                }
            }
        }
        self.finish_quiet_rotated().await?;
        for tracked in &mut self.files {
            if !seen.contains(&tracked.id) && tracked.rotated.is_none() {
                tracing::info!(
                    file = %tracked.path.display(),
                    "rotated or deleted: reading it to its end"
                );
                tracked.rotated = Some(Rotated { quiet_looks: 0 });
            }
        }
        self.check_live_files().await
    }

    /// At start-up: positions whose file no pattern finds any more, kept under a name a
    /// pattern names, are looked for next to it ([`resume::find_renamed`]); each one found
    /// is read to its end like a file rotated while running, before the file now at its old
    /// name. Returns those old names with the ids of the files they had, oldest first.
    async fn resume_renamed(&mut self, found: &[(PathBuf, Metadata)]) -> Vec<(PathBuf, FileId)> {
        let found_ids: Vec<FileId> = found.iter().map(|(_, meta)| FileId::of(meta)).collect();
        let patterns = &self.tail.input.patterns;
        let lost: Vec<_> = self
            .tail
            .input
            .positions
            .entries()
            .filter(|(id, entry)| {
                !found_ids.contains(id) && patterns.iter().any(|p| p.names(&entry.path))
            })
            .map(|(id, entry)| (*id, entry.clone()))
            .collect();
        if lost.is_empty() {
            return Vec::new();
        }
        let mut renamed = tokio::task::spawn_blocking(move || resume::find_renamed(lost))
            .await
            .unwrap_or_default();
        // Oldest first (logrotate ran twice while stopped): each waits for the one before it
        // at the same old name, and the file now at that name for the newest.
        renamed.sort_by_key(|again| {
            let modified = again.file.metadata().and_then(|meta| meta.modified()).ok();
            (again.start.born, modified)
        });
        let mut old_names: Vec<(PathBuf, FileId)> = Vec::new();
        for again in renamed {
            let Some(old_path) = self
                .tail
                .input
                .positions
                .get(again.id)
                .map(|e| e.path.clone())
            else {
                continue;
            };
            tracing::info!(
                file = %again.path.display(),
                was = %old_path.display(),
                offset = again.start.offset,
                "renamed while being read before the restart: reading it to its end"
            );
            // Known by its old name, as a file rotated while running: its position stays
            // under a name the patterns name, so a kill now finds it again next time.
            let mut tracked = Tracked::new(
                again.id,
                again.file,
                old_path.clone(),
                again.start,
                self.tail.max_line_bytes,
            );
            tracked.rotated = Some(Rotated { quiet_looks: 0 });
            tracked.after = old_names
                .iter()
                .rfind(|(name, _)| *name == old_path)
                .map(|(_, id)| *id);
            self.files.push(tracked);
            old_names.push((old_path, again.id));
        }
        old_names
    }

    /// A rotated file read to its end at two looks in a row is finished.
    async fn finish_quiet_rotated(&mut self) -> Result<(), Halt> {
        let mut i = 0;
        while i < self.files.len() {
            let tracked = &mut self.files[i];
            if tracked.rotated.is_none() {
                i += 1;
                continue;
            }
            let at_end = tracked
                .file()
                .metadata()
                .is_ok_and(|meta| tracked.read_to(meta.len()));
            let quiet_looks = match &mut tracked.rotated {
                Some(rotated) if at_end => {
                    rotated.quiet_looks += 1;
                    rotated.quiet_looks
                }
                Some(rotated) => {
                    rotated.quiet_looks = 0;
                    0
                }
                None => 0,
            };
            if quiet_looks < 2 {
                i += 1;
                continue;
            }
            if let Some(line) = tracked.take_partial(&mut self.line_number) {
                self.hand_on(i, line).await?;
            }
            let finished = self.files.remove(i);
            tracing::info!(file = %finished.path.display(), "rotated file read to its end");
            // A file not deleted whose path names nothing now (a volume unmounted, a directory
            // moved away or unreadable for a while) keeps its position: found there again, it
            // resumes instead of being read again under a new key.
            let out_of_reach = finished
                .file()
                .metadata()
                .is_ok_and(|meta| meta.nlink() > 0)
                && std::fs::metadata(&finished.path).is_err();
            if out_of_reach {
                let entry = entry_of(&finished);
                self.tail.input.positions.set(finished.id, entry);
            } else {
                self.tail.input.positions.remove(finished.id);
            }
            self.uncommitted = true;
            self.commit(true).await?;
        }
        Ok(())
    }

    /// Open files: truncated (shorter than read), rewritten (other first bytes, or other
    /// bytes before the position), or grown. Rotated files too: one rewritten before the look
    /// that found it rotated is otherwise never read to its end (reading stops at a failed
    /// check), and the file now at its path would wait for it forever.
    async fn check_live_files(&mut self) -> Result<(), Halt> {
        for i in 0..self.files.len() {
            let tracked = &mut self.files[i];
            let Ok(size) = tracked.file().metadata().map(|meta| meta.len()) else {
                continue;
            };
            let metrics = &self.tail.input.metrics;
            if tracked.rotated.is_none() {
                metrics.lag(&tracked.path, size.saturating_sub(tracked.done));
            }
            let rewritten = !tracked.fingerprint.matches(tracked.file()).unwrap_or(true)
                || !tracked
                    .anchor
                    .matches(tracked.file(), tracked.done)
                    .unwrap_or(true);
            if !tracked.shrank(size) && !rewritten {
                if tracked.fingerprint.can_grow(size)
                    && let Ok(grown) = Fingerprint::read(tracked.file(), size)
                {
                    tracked.fingerprint = grown;
                }
                continue;
            }
            tracing::warn!(
                file = %tracked.path.display(),
                "truncated or rewritten (copytruncate?): reading it again from its start"
            );
            metrics.read_again(&tracked.path);
            if let Some(line) = tracked.take_partial(&mut self.line_number) {
                self.hand_on(i, line).await?;
            }
            // The old content's lines are in the spool before its position is let go.
            self.commit(true).await?;
            let tracked = &mut self.files[i];
            let fingerprint =
                Fingerprint::read(tracked.file(), size).map_err(|e| Halt::Failed(e.to_string()))?;
            tracked.restart(crate::hex::random(KEY_DIGITS), fingerprint);
            let entry = entry_of(tracked);
            self.tail.input.positions.set(tracked.id, entry);
            self.store_positions().await?;
        }
        Ok(())
    }

    async fn open(
        &mut self,
        path: PathBuf,
        id: FileId,
        startup: bool,
    ) -> Result<Option<Tracked>, OpenError> {
        let file = File::open(&path)?;
        let meta = file.metadata()?;
        if FileId::of(&meta) != id {
            // Replaced between the look and the open: the next look sees it.
            return Ok(None);
        }
        let size = meta.len();
        let born = identity::born(&meta);
        let max = self.tail.max_line_bytes;
        let mut read_again = false;
        if let Some(entry) = self.tail.input.positions.get(id) {
            match resume::verify(entry, &file, size, born)? {
                Verdict::Same(start) => {
                    tracing::info!(file = %path.display(), offset = start.offset, "resuming");
                    return Ok(Some(Tracked::new(id, file, path, start, max)));
                }
                Verdict::Truncated => tracing::warn!(
                    file = %path.display(),
                    "truncated while stopped: reading it from its start"
                ),
                Verdict::Other(why) => tracing::warn!(
                    file = %path.display(),
                    "not the file its position was kept for ({why}; an inode reused, or the \
                     file rewritten): reading it from its start"
                ),
            }
            // Lines written while stopped: from its start, whatever --file-start says.
            self.tail.input.metrics.read_again(&path);
            read_again = true;
        }
        // A path the last run followed names a file that came after it (rotated while
        // stopped): its lines are all new, whatever --file-start says.
        let followed = self
            .tail
            .input
            .positions
            .entries()
            .any(|(_, entry)| entry.path == path);
        let offset = match self.tail.input.start {
            FileStart::End if startup && !read_again && !followed => after_last_line(&file, size)?,
            _ => 0,
        };
        let start = Start {
            key: crate::hex::random(KEY_DIGITS),
            fingerprint: Fingerprint::read(&file, size)?,
            born,
            offset,
            before: Anchor::bytes_before(&file, offset)?,
        };
        tracing::info!(file = %path.display(), offset, "reading a new file");
        let tracked = Tracked::new(id, file, path, start, max);
        // Its key is stored before any of its lines goes out: read again after a kill, they
        // get the same ids.
        self.tail.input.positions.set(id, entry_of(&tracked));
        self.store_positions().await.map_err(OpenError::Spool)?;
        Ok(Some(tracked))
    }
}

enum OpenError {
    Io(std::io::Error),
    Spool(Halt),
}

impl From<std::io::Error> for OpenError {
    fn from(e: std::io::Error) -> Self {
        OpenError::Io(e)
    }
}

/// Where the first line after `size` starts: after the last LF, so a line being written is
/// read whole (or at `size` when no LF is near the end).
fn after_last_line(file: &File, size: u64) -> std::io::Result<u64> {
    let from = size.saturating_sub(TAIL_SEARCH_BYTES);
    let mut end = vec![0; (size - from) as usize];
    file.read_exact_at(&mut end, from)?;
    Ok(match memchr::memrchr(b'\n', &end) {
        Some(lf) => from + lf as u64 + 1,
        None if from == 0 => 0,
        None => size,
    })
}
