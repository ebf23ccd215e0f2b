//! Segment files: started at rotation, synced per policy and closed (issue 21 item 1), retired once done.

use super::*;

impl<T> Spool<T> {
    /// Starts a segment, if the directory has room for `need` bytes more (`None`: past the
    /// bound, at a stop).
    pub(super) fn start_segment(
        &self,
        inner: &mut Inner<T>,
        need: Option<u64>,
    ) -> Result<(), Refused> {
        if !self.writable {
            return Err(self.fail(inner, "this spool is only being delivered".into()));
        }
        // Held until the new file exists, so no other process takes the same room.
        let _admitted = self.admit(inner, need)?;
        // Buffered records go into the new segment: it starts at the first of them.
        let first = inner.written_end;
        let path = segment_path(&self.dir, first);
        let created = self.disk.create(&path).and_then(|file| {
            self.disk.write_at(&file, &record::segment_header(), 0)?;
            Ok(file)
        });
        let file = match created {
            Ok(file) => file,
            Err(e) => {
                let _ = self.disk.remove(&path);
                if record::is_full(&e) {
                    return Err(Refused::Full(()));
                }
                if is_out_of_files(&e) {
                    // Other files (connections) may close: waited out like a full disk, so
                    // nothing read is lost and the spool is not given up.
                    tracing::warn!("spool {}: cannot create {}: {e}", self.name, path.display());
                    return Err(Refused::Full(()));
                }
                return Err(self.fail(inner, format!("cannot create {}: {e}", path.display())));
            }
        };
        self.close_writer(inner);
        // The new name must survive a crash along with the data written to it: the directory
        // is synced with the data, by the next sync, off this thread (issue 21 item 6).
        inner.dir_unsynced |= self.limits.sync != SyncPolicy::Off;
        inner.dirty = true;
        inner.writer = Some(Writer {
            first,
            file: Arc::new(file),
            offset: SEGMENT_HEADER_BYTES,
        });
        inner.segments.push_back(Segment {
            first,
            end: first,
            bytes: SEGMENT_HEADER_BYTES,
            path,
            skips: Vec::new(),
        });
        inner.bytes += SEGMENT_HEADER_BYTES;
        Ok(())
    }

    /// Room under the directory's bound (see [`super::super::budget`]) for a segment of `need`
    /// bytes. A directory that cannot be locked falls back to this spool's own bytes.
    fn admit(
        &self,
        inner: &Inner<T>,
        need: Option<u64>,
    ) -> Result<Option<super::super::budget::Admitted>, Refused> {
        let (Some(need), Some(budget)) = (need, self.budget.get()) else {
            return Ok(None);
        };
        match budget.admit(need) {
            Ok(Some(admitted)) => Ok(Some(admitted)),
            Ok(None) => Err(Refused::Full(())),
            Err(e) => {
                tracing::warn!(
                    "spool {}: cannot add up the spool directory: {e}; this spool alone is bounded",
                    self.name
                );
                let undone = inner.next_index > inner.frontier;
                if undone && inner.bytes + need > self.limits.max_bytes {
                    return Err(Refused::Full(()));
                }
                Ok(None)
            }
        }
    }

    /// Stops writing to the current segment (rotation, or a full disk): its file is closed
    /// now under `off` or when nothing in it is unsynced, or else by the next sync, after
    /// syncing it (issue 21 item 1: a rotated file was kept open until a sync that `off`, and
    /// `strict` in plain mode, never made).
    pub(super) fn close_writer(&self, inner: &mut Inner<T>) {
        let Some(writer) = inner.writer.take() else {
            return;
        };
        if std::mem::take(&mut inner.dirty) && self.limits.sync != SyncPolicy::Off {
            inner.rotated.push(Rotated {
                first: writer.first,
                file: writer.file,
            });
            self.rotated.notify_one();
        }
    }

    /// Syncs the segments found at open: the process that wrote them may have been killed
    /// before syncing them, and no later sync of this one covers files it did not write, so a
    /// host crash could otherwise take records acknowledged long ago. Usually already clean.
    pub(crate) fn sync_recovered(&self) -> io::Result<()> {
        let paths: Vec<PathBuf> = self
            .lock()
            .segments
            .iter()
            .map(|s| s.path.clone())
            .collect();
        for path in paths {
            let file = self.disk.open(&path)?;
            self.disk.sync_data(&file)?;
        }
        self.disk.sync_dir(&self.dir)
    }

    /// Something written is not yet durable (what `sync` would do).
    pub(crate) fn needs_sync(&self) -> bool {
        let inner = self.lock();
        inner.dirty || inner.dir_unsynced || !inner.rotated.is_empty()
    }

    /// fdatasync of every file written since the last sync (and of the directory, for new
    /// segments); the rotated ones are closed after. Returns once everything written before
    /// the call is durable. On failure the spool is failed for good: what the kernel could not
    /// write is not known, so it is never retried as success.
    pub(crate) fn sync(&self) -> Result<(), SpoolError> {
        self.sync_files(true)
    }

    /// Syncs and closes the rotated segments only (and the directory): what the maintenance
    /// task does at once after a rotation, so that files never pile up open.
    pub(crate) fn sync_rotated(&self) -> Result<(), SpoolError> {
        self.sync_files(false)
    }

    pub(super) fn sync_files(&self, writer_too: bool) -> Result<(), SpoolError> {
        let _syncing = locked(&self.syncing);
        let (dir, files) = {
            let mut inner = self.lock();
            let mut files: Vec<Arc<File>> = inner.rotated.drain(..).map(|r| r.file).collect();
            if writer_too && std::mem::take(&mut inner.dirty) {
                files.extend(inner.writer.as_ref().map(|w| w.file.clone()));
            }
            (std::mem::take(&mut inner.dir_unsynced), files)
        };
        let rotated = !files.is_empty();
        let synced = if dir {
            self.disk.sync_dir(&self.dir)
        } else {
            Ok(())
        }
        .and_then(|()| files.iter().try_for_each(|file| self.disk.sync_data(file)));
        // The rotated files close here, synced or not.
        drop(files);
        if let Err(e) = synced {
            let reason = format!("cannot sync the spool: {e}");
            let mut inner = self.lock();
            let _ = self.fail(&mut inner, reason.clone());
            return Err(SpoolError::Failed(reason));
        }
        if rotated {
            // Appends held back by too many rotated files can go on.
            self.room.notify_waiters();
        }
        Ok(())
    }

    pub(super) fn retire_done_segments(&self) {
        let mut inner = self.lock();
        self.retire_locked(&mut inner);
        self.check(&inner);
    }

    /// Moves fully done segments to `doomed`. The segment being written goes too once all of
    /// it is done and nothing is buffered: the next append starts a new one.
    pub(super) fn retire_locked(&self, inner: &mut Inner<T>) {
        while let Some(front) = inner.segments.front() {
            if front.end > inner.frontier {
                break;
            }
            if inner.segments.len() == 1 && inner.writer.is_some() {
                // The segment being written: only once nothing more is coming for it.
                if !inner.buffer.is_empty() || inner.next_index > inner.frontier {
                    break;
                }
                // Done: nothing in it needs to be durable any more.
                inner.writer = None;
                inner.dirty = false;
            }
            if let Some(segment) = inner.segments.pop_front() {
                // Closed before it is deleted, so its blocks go with its name.
                inner.rotated.retain(|r| r.first != segment.first);
                if inner
                    .reader
                    .as_ref()
                    .is_some_and(|r| r.segment_first == segment.first)
                {
                    inner.reader = None;
                }
                inner.doomed.push(segment);
            }
        }
    }
}
