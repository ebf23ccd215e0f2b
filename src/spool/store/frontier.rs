//! The done frontier, stored in the state file before the segments below it are deleted
//! (unless the disk has no room for the state: then they go anyway, see
//! `doomed_without_state`).

use super::*;

impl<T> Spool<T> {
    /// A record was delivered, or dead-lettered.
    pub(crate) fn done(&self, index: u64) {
        let mut inner = self.lock();
        self.mark_done(&mut inner, index);
        self.check(&inner);
    }

    pub(super) fn mark_done(&self, inner: &mut Inner<T>, index: u64) {
        if index < inner.frontier {
            return;
        }
        if index > inner.frontier {
            inner.done_ahead.insert(index);
            return;
        }
        inner.frontier += 1;
        while inner.done_ahead.remove(&inner.frontier) {
            inner.frontier += 1;
        }
        if inner
            .segments
            .front()
            .is_some_and(|s| s.end <= inner.frontier)
        {
            self.reclaimable.notify_one();
        }
    }

    /// Stores the frontier (synced unless the policy is off), then deletes the segments below
    /// it, so a crash in between never brings a deleted record back as not done, nor makes one
    /// look done that is not. Blocking.
    pub(crate) fn reclaim(&self) -> Result<(), SpoolError> {
        let mut state_file = locked(&self.state_file);
        let (state, changed) = {
            let mut inner = self.lock();
            self.retire_locked(&mut inner);
            let state = State {
                frontier: inner.frontier,
                last_sequence: inner.last_sequence,
            };
            (state, state != inner.persisted || !inner.doomed.is_empty())
        };
        if !changed {
            return Ok(());
        }
        let sync = self.limits.sync != SyncPolicy::Off;
        let stored = state_file.store(state, sync, &*self.disk);
        if let Err(e) = stored {
            if record::is_full(&e) {
                // Copy-on-write filesystems allocate even to write in place: without the
                // deletes, the disk would never have room for the state (issue 21 item 14).
                tracing::warn!(
                    "spool {}: cannot store its state yet ({e}); delivered segments are deleted anyway",
                    self.name
                );
                let doomed = self.doomed_without_state();
                self.delete(doomed);
                return Ok(());
            }
            let reason = format!("cannot store the spool state: {e}");
            let mut inner = self.lock();
            let _ = self.fail(&mut inner, reason.clone());
            return Err(SpoolError::Failed(reason));
        }
        let doomed = {
            let mut inner = self.lock();
            inner.persisted = state;
            let (gone, kept): (Vec<Segment>, Vec<Segment>) = std::mem::take(&mut inner.doomed)
                .into_iter()
                .partition(|s| s.end <= state.frontier);
            inner.doomed = kept;
            gone
        };
        self.delete(doomed);
        Ok(())
    }

    /// The done segments that can go while the stored frontier is behind: all of them but,
    /// when no later segment holds a record yet, the newest, which keeps the highest sequence
    /// number on disk for a restart in the same boot (see [`lease`]).
    ///
    /// Deleting them is safe without the frontier: they hold only records that are done, and
    /// they go oldest first, so what a crash leaves is the newer ones, and indices missing
    /// below the first segment left are read as done ([`take`]). The stored frontier only
    /// being behind means duplicates, never a loss.
    fn doomed_without_state(&self) -> Vec<Segment> {
        let mut inner = self.lock();
        let mut doomed = std::mem::take(&mut inner.doomed);
        doomed.sort_by_key(|s| s.first);
        if !inner.segments.iter().any(|s| s.end > s.first)
            && let Some(newest) = doomed.pop()
        {
            inner.doomed.push(newest);
        }
        doomed
    }

    /// Unlinks `doomed` in index order, and gives their room back.
    fn delete(&self, doomed: Vec<Segment>) {
        if doomed.is_empty() {
            return;
        }
        let mut freed = 0;
        for segment in doomed {
            match self.disk.remove(&segment.path) {
                Ok(()) => freed += segment.bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => freed += segment.bytes,
                Err(e) => tracing::warn!(
                    "cannot delete delivered spool file {}: {e}",
                    segment.path.display()
                ),
            }
        }
        self.lock().bytes -= freed;
        self.room.notify_waiters();
    }
}
