//! `send --spool`: the session appends each message to the spool before acknowledging it, a
//! feeder hands spooled messages to the pipeline, settled messages are marked done, and a
//! maintenance task syncs (per policy), stores the done frontier and deletes finished segments.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::outgoing::{Labeler, Outgoing};
use super::pipeline::Submitter;
use super::stats::Stats;
use crate::spool::{Body, FULL_RETRY, Limits, Refused, Spool, SpoolError, Spools, SyncPolicy};

/// What the window keeps of a message: its line number and the message itself.
pub(super) type Item = (u64, Outgoing);

/// A spooled message on its way: marked done in its spool once delivered or dead-lettered.
#[derive(Debug)]
pub(super) struct Ticket {
    spool: Arc<Spool<Item>>,
    index: u64,
}

impl Ticket {
    pub(super) fn done(self) {
        self.spool.done(self.index);
    }
}

pub(super) struct Spooler {
    spools: Spools<Item>,
    senders: Vec<Arc<str>>,
    sync: SyncPolicy,
    sync_interval: Duration,
    capacity: u64,
    /// "The spool is full" is logged once per episode.
    full_reported: AtomicBool,
    stats: Arc<Stats>,
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
        Spooler {
            spools,
            senders,
            sync: limits.sync,
            sync_interval,
            capacity: limits.max_bytes,
            full_reported: AtomicBool::new(false),
            stats,
        }
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

    /// Appends a message, waiting while the spool (or the disk) is full.
    pub(super) async fn append(
        &self,
        line_number: u64,
        outgoing: Outgoing,
    ) -> Result<(), SpoolError> {
        let mut record = Vec::with_capacity(outgoing.line.len() + 96);
        outgoing.to_record(line_number, &mut record);
        let sequence = outgoing.sequence.unwrap_or(0);
        let mut item = (line_number, outgoing);
        loop {
            let own = &self.spools.own;
            // Registered before trying, so room freed in between is not missed.
            let room = own.room.notified();
            match own.append(&record, sequence, item) {
                Ok(()) => {
                    self.full_reported.store(false, Ordering::Relaxed);
                    return Ok(());
                }
                Err(Refused::Failed(e)) => return Err(e),
                Err(Refused::Full(refused)) => {
                    item = refused;
                    self.report_full();
                    self.flush().await?;
                    let _ = tokio::time::timeout(FULL_RETRY, room).await;
                }
            }
        }
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

    /// Writes what was appended (one `write()`), waiting while the disk is full.
    pub(super) async fn flush(&self) -> Result<(), SpoolError> {
        loop {
            let own = &self.spools.own;
            let room = own.room.notified();
            match own.flush() {
                Ok(()) => return Ok(()),
                Err(Refused::Failed(e)) => return Err(e),
                Err(Refused::Full(())) => {
                    self.report_full();
                    let _ = tokio::time::timeout(FULL_RETRY, room).await;
                }
            }
        }
    }

    /// Makes an acknowledgement durable under the strict policy (flushed first in any policy).
    pub(super) async fn before_ack(&self) -> Result<(), SpoolError> {
        self.flush().await?;
        if self.sync != SyncPolicy::Strict {
            return Ok(());
        }
        let own = self.spools.own.clone();
        tokio::task::spawn_blocking(move || own.sync())
            .await
            .map_err(|e| SpoolError::Failed(format!("the sync task failed: {e}")))?
    }

    /// Hands spooled messages to the pipeline, the adopted spools' first, until input has
    /// ended and everything was taken, or the drain is given up (`abort`).
    pub(super) async fn feed(
        self: Arc<Self>,
        pipeline: Submitter,
        labeler: Arc<Labeler>,
        mut input_ended: watch::Receiver<bool>,
        mut abort: watch::Receiver<bool>,
    ) {
        'feeding: loop {
            if *abort.borrow() {
                return;
            }
            for (spool, sender) in self.spools.delivery_order().zip(&self.senders) {
                let readable = spool.readable.notified();
                let Some(taken) = spool.take() else {
                    drop(readable);
                    continue;
                };
                let (line_number, outgoing) = match taken.body {
                    Body::Item(item) => item,
                    Body::Payload(payload) => match labeler.restore(&payload, sender) {
                        Some(restored) => restored,
                        None => {
                            tracing::error!(
                                spool = %spool.name,
                                "record {} is not a message this version can read; skipped",
                                taken.meta.index
                            );
                            spool.done(taken.meta.index);
                            continue 'feeding;
                        }
                    },
                };
                let ticket = Ticket {
                    spool: spool.clone(),
                    index: taken.meta.index,
                };
                tokio::select! {
                    biased;
                    _ = abort.wait_for(|aborted| *aborted) => return,
                    submitted = pipeline.submit_spooled(line_number, outgoing, ticket) => {
                        if submitted.is_err() {
                            // The workers are gone; the message stays in the spool.
                            return;
                        }
                    }
                }
                continue 'feeding;
            }
            // Nothing to take anywhere.
            if *input_ended.borrow() && self.spools.delivery_order().all(|s| s.all_taken()) {
                return;
            }
            let own = &self.spools.own;
            tokio::select! {
                _ = own.readable.notified() => {}
                _ = input_ended.changed() => {}
                _ = abort.wait_for(|aborted| *aborted) => return,
                // Adopted spools and read errors are polled.
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Syncs per policy and lets finished segments go, until `stopped` (then once more).
    pub(super) async fn maintain(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        loop {
            let own = self.spools.own.clone();
            tokio::select! {
                _ = tokio::time::sleep(self.sync_interval) => {}
                _ = own.reclaimable.notified() => {}
                _ = stopped.wait_for(|stopped| *stopped) => return,
            }
            let spooler = self.clone();
            let sync = self.sync == SyncPolicy::Interval;
            let done = tokio::task::spawn_blocking(move || spooler.sync_and_reclaim(sync)).await;
            if let Ok(Err(e)) = done {
                tracing::error!("{e}");
                return;
            }
        }
    }

    /// Blocking: sync (when `sync`), store frontiers, delete finished segments.
    fn sync_and_reclaim(&self, sync: bool) -> Result<(), SpoolError> {
        if sync {
            self.spools.own.sync()?;
        }
        for spool in self.spools.delivery_order() {
            spool.reclaim()?;
        }
        Ok(())
    }

    /// At exit: everything written, synced (unless the policy is off), frontiers stored; an
    /// adopted spool with nothing left is removed. Returns false if the spool failed.
    pub(super) async fn finish(self: Arc<Self>) -> bool {
        let flushed = self.flush().await;
        let spooler = self.clone();
        let sync = self.sync != SyncPolicy::Off;
        let closed = tokio::task::spawn_blocking(move || spooler.sync_and_reclaim(sync)).await;
        let ok = match (flushed, closed) {
            (Ok(()), Ok(Ok(()))) => true,
            (Err(e), _) | (_, Ok(Err(e))) => {
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
