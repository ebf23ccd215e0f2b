//! `send --spool`: the session appends each message to the spool before acknowledging it, a
//! feeder (`feeder`) hands spooled messages to the pipeline, settled messages are marked done,
//! and a maintenance task syncs (per policy), stores the done frontier and deletes finished
//! segments.
//!
//! Over 400 lines because appending (its waits for room and leases), maintenance and the
//! finish at exit share the spool's state and its stop, and are read together.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

use super::dead_letter::DeadLetter;
use super::job::Item;
use super::outgoing::Outgoing;
use super::stats::{Loss, Stats};
use crate::spool::{FULL_RETRY, Limits, Refused, Spool, SpoolError, Spools, SyncPolicy};

pub(super) struct Spooler {
    spools: Spools<Item>,
    senders: Vec<Arc<str>>,
    sync: SyncPolicy,
    sync_interval: Duration,
    capacity: u64,
    /// "The spool is full" is logged once per episode.
    full_reported: AtomicBool,
    stats: Arc<Stats>,
    /// Set once the run's signals exist: what ends a wait for room.
    stopping: OnceLock<Stopping>,
    /// Set by `finish`: the maintenance task ends.
    finishing: watch::Sender<bool>,
    /// Held for each maintenance round and by `finish`: a round in progress ends before the
    /// last one, and none starts after it, so no blocking spool work outlives the run.
    rounds: tokio::sync::Mutex<()>,
    /// Errors of the maintenance task (sync, state store, deletes), all spools together.
    maintenance_errors: AtomicU64,
    /// Synced before any frontier is stored: a record counts as done only once its
    /// dead-letter line is durable.
    dead_letter: OnceLock<Arc<DeadLetter>>,
}

/// The stop (read no more) and the abort (the drain deadline, or a second signal).
struct Stopping {
    stopped: watch::Receiver<bool>,
    abort: watch::Receiver<bool>,
    /// Plain mode: a line read is taken from the writer (no one holds it but us).
    plain: bool,
}

/// Why a message was not appended.
#[derive(Debug)]
pub(super) enum Unspooled {
    Failed(SpoolError),
    /// The disk stayed full until the drain was given up: the message is given back.
    GaveUp(u64, Outgoing),
}

impl Spooler {
    pub(super) fn new(
        spools: Spools<Item>,
        limits: Limits,
        sync_interval: Duration,
        stats: Arc<Stats>,
    ) -> Self {
        let senders = spools
            .delivery_order()
            .map(|spool| Arc::from(spool.name.as_str()))
            .collect();
        Stats::add(&stats.recovered, spools.recovered.pending);
        // Acknowledged once, and unreadable now: lost, and counted as such (issue 21 item 9).
        Stats::add(&stats.recovered, spools.recovered.lost);
        stats.lose_many(Loss::Corrupt, spools.recovered.lost);
        Spooler {
            spools,
            senders,
            sync: limits.sync,
            sync_interval,
            capacity: limits.max_bytes,
            full_reported: AtomicBool::new(false),
            stats,
            stopping: OnceLock::new(),
            finishing: watch::Sender::new(false),
            rounds: tokio::sync::Mutex::new(()),
            maintenance_errors: AtomicU64::new(0),
            dead_letter: OnceLock::new(),
        }
    }

    /// The dead-letter file is synced before the frontiers are stored, so that a rejected
    /// message's segment is never deleted before its dead-letter line is durable (issue 21
    /// item 10).
    pub(super) fn sync_before_reclaim(&self, dead_letter: Arc<DeadLetter>) {
        let _ = self.dead_letter.set(dead_letter);
    }

    /// Errors the maintenance task met so far (`drifter_spool_maintenance_errors_total`).
    pub(super) fn maintenance_errors(&self) -> u64 {
        self.maintenance_errors.load(Ordering::Relaxed)
    }

    /// Counts a maintenance error; logs the 1st, 2nd, 4th, 8th… (every one at exit), so that
    /// an error that comes back every interval is seen without flooding the log.
    fn maintenance_failed(&self, spool: &str, error: &SpoolError, at_exit: bool) {
        let count = self.maintenance_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if at_exit || count.is_power_of_two() {
            tracing::error!(
                spool,
                "spool maintenance: {error} ({count} errors so far); going on"
            );
        }
    }

    /// From now on a wait for room ends at a stop (the line in hand then goes in past the
    /// bound) and at the abort (issue 21 item 2: a full spool held a stop up forever).
    pub(super) fn watch_stop(
        &self,
        stopped: watch::Receiver<bool>,
        abort: watch::Receiver<bool>,
        plain: bool,
    ) {
        let _ = self.stopping.set(Stopping {
            stopped,
            abort,
            plain,
        });
    }

    fn stopped(&self) -> bool {
        self.stopping.get().is_some_and(|s| *s.stopped.borrow())
    }

    fn aborted(&self) -> bool {
        self.stopping.get().is_some_and(|s| *s.abort.borrow())
    }

    /// Waits for `room`, at most [`FULL_RETRY`], or until the stop or the abort.
    async fn wait_for_room(&self, room: tokio::sync::futures::Notified<'_>) {
        let (mut stopped, mut abort) = match self.stopping.get() {
            Some(s) => (s.stopped.clone(), s.abort.clone()),
            None => {
                let _ = tokio::time::timeout(FULL_RETRY, room).await;
                return;
            }
        };
        let already_stopped = *stopped.borrow();
        tokio::select! {
            _ = tokio::time::timeout(FULL_RETRY, room) => {}
            _ = stopped.wait_for(|s| *s), if !already_stopped => {}
            _ = abort.wait_for(|a| *a) => {}
        }
    }

    /// Every spool, adopted ones first (they hold the older messages), each with its sender
    /// name: what the feeder takes from.
    pub(super) fn delivery_order(&self) -> impl Iterator<Item = (&Arc<Spool<Item>>, &Arc<str>)> {
        self.spools.delivery_order().zip(&self.senders)
    }

    pub(super) fn own(&self) -> &Arc<Spool<Item>> {
        &self.spools.own
    }

    /// The own spool's name and the last sequence number it gave out: the labeler's sender.
    pub(super) fn sender(&self) -> (String, u64) {
        (
            self.spools.own.name.clone(),
            self.spools.own.last_sequence(),
        )
    }

    pub(super) fn pending(&self) -> u64 {
        self.spools.pending()
    }

    pub(super) fn bytes(&self) -> u64 {
        self.spools.bytes()
    }

    pub(super) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Records skipped as corrupt, at recovery and since.
    pub(super) fn corrupt(&self) -> u64 {
        self.spools.recovered.corrupt
            + self
                .spools
                .delivery_order()
                .map(|spool| spool.corrupt_at_runtime())
                .sum::<u64>()
    }

    /// Appends a message, waiting while the spool (or the disk) is full. Once stopped, the
    /// message goes in past the bound; if the disk is still full at the abort, it is given
    /// back.
    pub(super) async fn append(
        &self,
        line_number: u64,
        outgoing: Outgoing,
    ) -> Result<(), Unspooled> {
        let mut record = Vec::with_capacity(outgoing.line.len() + 96);
        outgoing.to_record(line_number, &mut record);
        let sequence = outgoing.sequence.unwrap_or(0);
        if !self.lease(sequence).await.map_err(Unspooled::Failed)? {
            return Err(Unspooled::GaveUp(line_number, outgoing));
        }
        let mut item = (line_number, outgoing);
        loop {
            let own = &self.spools.own;
            // Registered before trying, so room freed in between is not missed.
            let room = own.room.notified();
            let appended = if self.stopped() {
                own.append_over_bound(&record, sequence, item)
            } else {
                own.append(&record, sequence, item)
            };
            match appended {
                Ok(()) => {
                    self.full_reported.store(false, Ordering::Relaxed);
                    return Ok(());
                }
                Err(Refused::Failed(e)) => return Err(Unspooled::Failed(e)),
                Err(Refused::Full(refused)) => {
                    item = refused;
                    if self.aborted() {
                        return Err(Unspooled::GaveUp(item.0, item.1));
                    }
                    self.report_full();
                    self.flush().await.map_err(Unspooled::Failed)?;
                    self.wait_for_room(room).await;
                }
            }
        }
    }

    /// Makes sure `sequence` is covered by a durable lease before it is appended (issue 21
    /// item 8), waiting while the disk has no room for the lease. Usually the maintenance task
    /// has leased ahead and this returns at once. False: given up at the abort.
    async fn lease(&self, sequence: u64) -> Result<bool, SpoolError> {
        let own = &self.spools.own;
        while sequence > own.leased() {
            let room = own.room.notified();
            let spool = own.clone();
            let leased = tokio::task::spawn_blocking(move || spool.extend_lease(sequence))
                .await
                .map_err(|e| SpoolError::Failed(format!("the lease task failed: {e}")))?;
            match leased {
                Ok(()) => {}
                Err(Refused::Failed(e)) => return Err(e),
                Err(Refused::Full(())) if self.aborted() => return Ok(false),
                Err(Refused::Full(())) => {
                    self.report_full();
                    self.wait_for_room(room).await;
                }
            }
        }
        Ok(true)
    }

    fn report_full(&self) {
        if !self.full_reported.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                pending = self.pending(),
                bytes = self.bytes(),
                "the spool is full (--spool-max-bytes or the disk); input waits until delivery makes room"
            );
        }
    }

    /// Writes what was appended (one `write()`), waiting while the disk is full. At the abort,
    /// what the disk still has no room for is counted lost: it was read, and is not in the
    /// spool.
    pub(super) async fn flush(&self) -> Result<(), SpoolError> {
        loop {
            let own = &self.spools.own;
            let room = own.room.notified();
            match own.flush() {
                Ok(()) => return Ok(()),
                Err(Refused::Failed(e)) => return Err(e),
                Err(Refused::Full(())) if self.aborted() => {
                    let abandoned = own.abandon_buffered();
                    let plain = self.stopping.get().is_none_or(|s| s.plain);
                    for _ in &abandoned {
                        if plain {
                            self.stats.lose(Loss::Stopped);
                        } else {
                            // Never acknowledged (a flush comes before each OK and
                            // DEFER_COMMIT): rsyslog still holds them.
                            self.stats.hand_back();
                        }
                    }
                    let fate = if plain {
                        "are lost"
                    } else {
                        "were not acknowledged"
                    };
                    return Err(SpoolError::Failed(format!(
                        "the disk was still full at the drain deadline: {} messages read were not written to the spool, and {fate}",
                        abandoned.len()
                    )));
                }
                Err(Refused::Full(())) => {
                    self.report_full();
                    self.wait_for_room(room).await;
                }
            }
        }
    }

    /// Plain mode, before reading from the input: reading more is what acknowledges the lines
    /// read so far, so they are written first (a kill then loses none of them), and synced
    /// under the strict policy (issue 21 item 1: strict in plain mode never synced a segment
    /// until exit; and up to 256 KiB of lines read could still be in the append buffer).
    pub(super) async fn before_read(&self) -> Result<(), SpoolError> {
        self.before_ack().await
    }

    /// Makes an acknowledgement durable under the strict policy (flushed first in any policy).
    pub(super) async fn before_ack(&self) -> Result<(), SpoolError> {
        self.make_durable(self.sync == SyncPolicy::Strict).await
    }

    /// Flushes, then syncs if `sync` says so (`--file`: unless the policy is off, before a
    /// position moves past what was appended).
    pub(super) async fn make_durable(&self, sync: bool) -> Result<(), SpoolError> {
        self.flush().await?;
        if !sync || !self.spools.own.needs_sync() {
            return Ok(());
        }
        let own = self.spools.own.clone();
        tokio::task::spawn_blocking(move || own.sync())
            .await
            .map_err(|e| SpoolError::Failed(format!("the sync task failed: {e}")))?
    }

    /// Syncs per policy, syncs and closes rotated segments, and lets finished segments go,
    /// until `finish` (which does it once more). Through the drain too: delivery there frees
    /// the room a stop on a full disk waits for. An error is logged and counted, and the
    /// task goes on, each spool on its own (issue 21 item 11: it returned on the first error
    /// of any spool, and the own spool was never synced or reclaimed again).
    pub(super) async fn maintain(self: Arc<Self>) {
        let mut finishing = self.finishing.subscribe();
        loop {
            let own = self.spools.own.clone();
            let sync = tokio::select! {
                _ = tokio::time::sleep(self.sync_interval) => Sync::Policy,
                _ = own.reclaimable.notified() => Sync::Policy,
                _ = own.rotated.notified() => Sync::Rotated,
                // Leased ahead here, so that appends seldom wait for a lease.
                _ = own.lease_low.notified() => Sync::No,
                _ = finishing.wait_for(|finishing| *finishing) => return,
            };
            let sync = match (sync, self.sync) {
                (_, SyncPolicy::Off) => Sync::No,
                (Sync::Policy, SyncPolicy::Strict) => Sync::Rotated,
                (sync, _) => sync,
            };
            let round = self.rounds.lock().await;
            if *self.finishing.borrow() {
                return;
            }
            let spooler = self.clone();
            let done = tokio::task::spawn_blocking(move || spooler.sync_and_reclaim(sync, false));
            let done = done.await;
            drop(round);
            if let Err(e) = done {
                let error = SpoolError::Failed(format!("the maintenance task failed: {e}"));
                self.maintenance_failed(&self.spools.own.name, &error, false);
            }
        }
    }

    /// Blocking: sync (as `sync` says), store frontiers, delete finished segments; every
    /// spool is reclaimed whatever failed before. False if anything failed.
    fn sync_and_reclaim(&self, sync: Sync, at_exit: bool) -> bool {
        let own = &self.spools.own;
        if !at_exit && let Err(Refused::Failed(e)) = own.extend_lease(0) {
            // A full disk is waited out by the append that needs the lease.
            self.maintenance_failed(&own.name, &e, at_exit);
        }
        let synced = match sync {
            Sync::Policy => own.sync(),
            Sync::Rotated => own.sync_rotated(),
            Sync::No => Ok(()),
        };
        let mut ok = true;
        if let Err(e) = synced {
            self.maintenance_failed(&own.name, &e, at_exit);
            ok = false;
        }
        if self.sync != SyncPolicy::Off
            && let Some(dead_letter) = self.dead_letter.get()
            && let Err(e) = dead_letter.sync()
        {
            // No frontier is stored this time: the records stay until their lines are
            // durable (or, after a crash, are rejected and dead-lettered again).
            let reason = format!(
                "cannot sync dead-letter file {}: {e}",
                dead_letter.path().display()
            );
            self.maintenance_failed(&own.name, &SpoolError::Failed(reason), at_exit);
            return false;
        }
        for spool in self.spools.delivery_order() {
            if let Err(e) = spool.reclaim() {
                self.maintenance_failed(&spool.name, &e, at_exit);
                ok = false;
            }
        }
        ok
    }

    /// At exit: everything written, synced (unless the policy is off), frontiers stored; an
    /// adopted spool with nothing left is removed. Returns false if the spool failed.
    pub(super) async fn finish(self: Arc<Self>) -> bool {
        self.finishing.send_replace(true);
        let unreadable: u64 = self
            .spools
            .delivery_order()
            .map(|spool| spool.corrupt_at_runtime())
            .sum();
        self.stats.lose_many(Loss::Corrupt, unreadable);
        let flushed = self.flush().await;
        let _last_round = self.rounds.lock().await;
        let spooler = self.clone();
        let sync = match self.sync {
            SyncPolicy::Off => Sync::No,
            SyncPolicy::Interval | SyncPolicy::Strict => Sync::Policy,
        };
        let closed = tokio::task::spawn_blocking(move || {
            let closed = spooler.sync_and_reclaim(sync, true);
            if let Err(e) = spooler.spools.own.release_lease() {
                // The unused numbers stay leased: after a reboot, a gap, never a reuse.
                tracing::warn!("cannot give back the unused sequence numbers: {e}");
            }
            closed
        })
        .await;
        let ok = match (flushed, closed) {
            (Ok(()), Ok(closed)) => closed,
            (Err(e), _) => {
                tracing::error!("{e}");
                false
            }
            (_, Err(e)) => {
                tracing::error!("the spool's last sync failed: {e}");
                false
            }
        };
        for spool in &self.spools.adopted {
            if spool.pending() == 0
                && let Err(e) = spool.remove()
            {
                tracing::warn!("cannot remove delivered spool {}: {e}", spool.name);
            }
        }
        let left = self.pending();
        Stats::add(&self.stats.left_in_spool, left);
        ok && self.spools.own.failure().is_none()
    }
}

#[cfg(test)]
#[path = "spooling_tests.rs"]
mod tests;

/// What the maintenance task syncs.
#[derive(Debug, Clone, Copy)]
enum Sync {
    /// Everything written (the interval policy's sync, and the last one at exit).
    Policy,
    /// The rotated segments only, which are closed after.
    Rotated,
    No,
}
