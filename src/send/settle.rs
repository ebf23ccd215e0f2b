//! How every message ends: delivered, handed back to its confirming caller, written to the
//! dead-letter file, or counted lost; never silently dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::dead_letter::DeadLetter;
use super::job::{Ack, Job, Returned, Ticket};
use super::outgoing::Labeler;
use super::retry::{self, AfterFailure, Failure};
use super::stats::{Loss, Stats};
use crate::shutdown::Tasks;

/// Accounts for messages that were not delivered: into the dead-letter file when there is one,
/// otherwise counted as lost. Logs the first few individually, then only counts.
pub(super) struct Settler {
    pub stats: Arc<Stats>,
    dead_letter: Option<Arc<DeadLetter>>,
    logged: AtomicU64,
    /// Dead-letter writes waiting for room, aborted when the run ends.
    retries: Tasks,
}

const LOGGED_INDIVIDUALLY: u64 = 20;

impl Settler {
    pub(super) fn new(stats: Arc<Stats>, dead_letter: Option<Arc<DeadLetter>>) -> Self {
        Settler {
            stats,
            dead_letter,
            logged: AtomicU64::new(0),
            retries: Tasks::default(),
        }
    }

    pub(super) fn retries(&self) -> &Tasks {
        &self.retries
    }

    /// Settles a message whose delivery ended: counted delivered, or handed back to its
    /// confirming caller, or dead-lettered, or counted lost.
    pub(super) fn settle(
        &self,
        mut job: Job,
        ack: Option<Ack>,
        result: Result<(), Failure>,
        labeler: &Labeler,
    ) {
        if let Some(ticket) = job.ticket.take() {
            return self.settle_spooled(job, ticket, result);
        }
        let stats = &self.stats;
        let failure = match result {
            Ok(()) => {
                Stats::add(&stats.delivered, 1);
                if let Some(ack) = ack {
                    let _ = ack.reply.send(Ok(()));
                }
                return;
            }
            Err(failure) => failure,
        };
        let reason = failure.reason();
        let confirming = ack.is_some();
        match (
            retry::after_failure(&failure, confirming, self.has_dead_letter()),
            ack,
        ) {
            (AfterFailure::HandBack, Some(ack)) => {
                stats.hand_back();
                // rsyslog sends it again; the retry takes the same sequence number.
                labeler.give_back(&job.outgoing);
                let returned = Returned {
                    line_number: job.line_number,
                    reason,
                    message: job.outgoing.line,
                };
                let _ = ack.reply.send(Err(returned));
            }
            (_, ack) => {
                let loss = match failure {
                    Failure::Rejected(_) => Loss::Rejected,
                    Failure::Exhausted { .. } => Loss::MaxAttempts,
                    Failure::DrainPassed | Failure::GaveUp(_) => Loss::DrainDeadline,
                    Failure::Cancelled => Loss::Stopped,
                };
                self.undelivered(job.line_number, &job.outgoing.line, &reason, loss);
                if let Some(ack) = ack {
                    let _ = ack.reply.send(Ok(()));
                }
            }
        }
    }

    /// A spooled message is done once delivered, or rejected or given up for good
    /// (dead-lettered, or lost without a dead-letter file); otherwise it stays in the spool
    /// for the next run.
    fn settle_spooled(&self, job: Job, ticket: Ticket, result: Result<(), Failure>) {
        match result {
            Ok(()) => Stats::add(&self.stats.delivered, 1),
            Err(failure @ (Failure::Rejected(_) | Failure::Exhausted { .. })) => {
                let loss = match failure {
                    Failure::Exhausted { .. } => Loss::MaxAttempts,
                    _ => Loss::Rejected,
                };
                let reason = failure.reason();
                let Some(dead_letter) = &self.dead_letter else {
                    self.stats.lose(loss);
                    self.log(job.line_number, &format!("{reason}; lost"));
                    ticket.done();
                    return;
                };
                match dead_letter.append(&job.outgoing.line) {
                    Ok(()) => {
                        Stats::add(&self.stats.dead_lettered, 1);
                        let text = format!("{reason}; written to the dead-letter file");
                        self.log(job.line_number, &text);
                    }
                    // A full disk is waited out, as everywhere else: the record stays in the
                    // spool until its line is written (issue 21 item 10: it was dropped).
                    Err(e) if crate::spool::is_full(&e) => {
                        return self.dead_letter_when_room(
                            job,
                            ticket,
                            dead_letter.clone(),
                            e,
                            loss,
                        );
                    }
                    Err(e) => {
                        tracing::error!(
                            line = job.line_number,
                            "cannot write to dead-letter file {}: {e}",
                            dead_letter.path().display()
                        );
                        self.stats.lose(loss);
                        self.log(job.line_number, &format!("{reason}; lost"));
                    }
                }
            }
            Err(Failure::DrainPassed | Failure::GaveUp(_) | Failure::Cancelled) => return,
        }
        ticket.done();
    }

    /// Retries a spooled message's dead-letter write every [`FULL_RETRY`] until it is written
    /// (then its record is done) or another error counts it lost. If the process ends first,
    /// its record stays in the spool for the next run.
    ///
    /// [`FULL_RETRY`]: crate::spool::FULL_RETRY
    fn dead_letter_when_room(
        &self,
        job: Job,
        ticket: Ticket,
        dead_letter: Arc<DeadLetter>,
        error: std::io::Error,
        loss: Loss,
    ) {
        self.log(
            job.line_number,
            &format!(
                "cannot write to dead-letter file {}: {error}; the message stays in the spool until there is room",
                dead_letter.path().display()
            ),
        );
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let stats = self.stats.clone();
        self.retries.spawn(async move {
            loop {
                tokio::time::sleep(crate::spool::FULL_RETRY).await;
                match dead_letter.append(&job.outgoing.line) {
                    Ok(()) => Stats::add(&stats.dead_lettered, 1),
                    Err(e) if crate::spool::is_full(&e) => continue,
                    Err(e) => {
                        tracing::error!(
                            line = job.line_number,
                            "cannot write to dead-letter file {}: {e}; lost",
                            dead_letter.path().display()
                        );
                        stats.lose(loss);
                    }
                }
                ticket.done();
                return;
            }
        });
    }

    fn has_dead_letter(&self) -> bool {
        self.dead_letter.is_some()
    }

    /// Dead-letters a message, or counts it lost (for `loss`) without a dead-letter file.
    pub(super) fn undelivered(&self, line_number: u64, message: &[u8], reason: &str, loss: Loss) {
        let written = match &self.dead_letter {
            Some(dead_letter) => match dead_letter.append(message) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(
                        line = line_number,
                        "cannot write to dead-letter file {}: {e}",
                        dead_letter.path().display()
                    );
                    false
                }
            },
            None => false,
        };
        let outcome = if written {
            Stats::add(&self.stats.dead_lettered, 1);
            "written to the dead-letter file"
        } else {
            self.stats.lose(loss);
            "lost"
        };
        self.log(line_number, &format!("{reason}; {outcome}"));
    }

    /// A message handed back to a caller that cannot hand it on (its transaction was never
    /// committed): it is dead-lettered or lost after all.
    pub(super) fn reclaim(&self, returned: Returned) {
        self.stats.returned.fetch_sub(1, Ordering::Relaxed);
        self.undelivered(
            returned.line_number,
            &returned.message,
            &returned.reason,
            Loss::Uncommitted,
        );
    }

    /// A line that was too long to be read whole: it cannot be dead-lettered.
    pub(super) fn unreadable(&self, line_number: u64, reason: &str) {
        self.stats.lose(Loss::TooLong);
        self.log(line_number, &format!("{reason}; lost"));
    }

    fn log(&self, line_number: u64, text: &str) {
        let logged = self.logged.fetch_add(1, Ordering::Relaxed);
        if logged < LOGGED_INDIVIDUALLY {
            tracing::warn!(line = line_number, "{text}");
        } else if logged == LOGGED_INDIVIDUALLY {
            tracing::warn!("more messages were not delivered; they are counted in the summary");
        }
    }

    /// Makes the dead-letter file durable; false if that failed.
    pub(super) fn sync(&self) -> bool {
        let Some(dead_letter) = &self.dead_letter else {
            return true;
        };
        match dead_letter.sync() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(
                    "cannot sync dead-letter file {}: {e}",
                    dead_letter.path().display()
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use tokio::sync::Semaphore;

    use super::*;

    fn job(labeler: &Labeler, line_number: u64, text: &str, ack: Option<Ack>) -> Job {
        let outgoing = labeler
            .prepare(line_number, text.as_bytes().to_vec())
            .expect("a message");
        let permit = Arc::new(Semaphore::new(1))
            .try_acquire_owned()
            .expect("a free permit");
        Job::new(line_number, outgoing, ack, None, permit)
    }

    fn settler(dead_letter: Option<&std::path::Path>) -> Settler {
        let dead_letter =
            dead_letter.map(|path| Arc::new(DeadLetter::open(path).expect("a dead-letter file")));
        Settler::new(Arc::new(Stats::default()), dead_letter)
    }

    #[test]
    fn a_delivered_message_is_counted_and_confirmed() {
        let (labeler, settler) = (Labeler::plain(), settler(None));
        settler.settle(job(&labeler, 1, "plain", None), None, Ok(()), &labeler);
        let (ack, mut reply) = Ack::new(None);
        settler.settle(
            job(&labeler, 2, "confirmed", None),
            Some(ack),
            Ok(()),
            &labeler,
        );
        assert_eq!(settler.stats.delivered.load(Relaxed), 2);
        assert!(matches!(reply.try_recv(), Ok(Ok(()))));
    }

    #[test]
    fn a_confirming_caller_gets_a_retriable_failure_back() {
        let (labeler, settler) = (Labeler::plain(), settler(None));
        let (ack, mut reply) = Ack::new(None);
        let failure = Failure::GaveUp(Some("HTTP 500".into()));
        settler.settle(
            job(&labeler, 7, "hello", None),
            Some(ack),
            Err(failure),
            &labeler,
        );
        match reply.try_recv() {
            Ok(Err(returned)) => {
                assert_eq!(returned.line_number, 7);
                assert_eq!(returned.message, b"hello");
                assert!(returned.reason.contains("HTTP 500"), "{}", returned.reason);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(settler.stats.returned.load(Relaxed), 1);
        assert_eq!(settler.stats.lost.load(Relaxed), 0);
    }

    #[test]
    fn a_rejected_message_is_dead_lettered_or_counted_lost_by_reason() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("dead");
        let labeler = Labeler::plain();
        let with_file = settler(Some(&path));
        let (ack, mut reply) = Ack::new(None);
        let rejected = Failure::Rejected("HTTP 404".into());
        with_file.settle(
            job(&labeler, 1, "kept", None),
            Some(ack),
            Err(rejected),
            &labeler,
        );
        assert!(with_file.sync());
        assert_eq!(std::fs::read(&path).expect("the file"), b"kept\n");
        assert_eq!(with_file.stats.dead_lettered.load(Relaxed), 1);
        // Kept in the file, so rsyslog is told it is done rather than send it forever.
        assert!(matches!(reply.try_recv(), Ok(Ok(()))));

        let without = settler(None);
        let exhausted = Failure::Exhausted {
            attempts: 10,
            last: "HTTP 500".into(),
        };
        without.settle(
            job(&labeler, 2, "gone", None),
            None,
            Err(exhausted),
            &labeler,
        );
        without.settle(
            job(&labeler, 3, "late", None),
            None,
            Err(Failure::DrainPassed),
            &labeler,
        );
        assert_eq!(without.stats.lost_by(Loss::MaxAttempts), 1);
        assert_eq!(without.stats.lost_by(Loss::DrainDeadline), 1);
        assert_eq!(without.stats.lost.load(Relaxed), 2);
    }

    #[test]
    fn a_message_never_committed_is_reclaimed_as_lost() {
        let settler = settler(None);
        settler.stats.hand_back();
        settler.reclaim(Returned {
            line_number: 4,
            message: b"uncommitted".to_vec(),
            reason: "cancelled".into(),
        });
        assert_eq!(settler.stats.returned.load(Relaxed), 0);
        assert_eq!(settler.stats.lost_by(Loss::Uncommitted), 1);
        settler.unreadable(5, "too long");
        assert_eq!(settler.stats.lost_by(Loss::TooLong), 1);
    }
}
