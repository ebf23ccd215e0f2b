//! The bounded queue between the reader and the worker pool, the workers' retry loop, and how
//! every message is settled: delivered, dead-lettered or lost, never silently dropped. A
//! message in fragments is one job: it is delivered when every fragment was accepted.
//!
//! Memory is bounded twice: the channel holds at most `queue_messages` waiting jobs, and every
//! job holds permits of a byte semaphore (its length) from the moment it is queued until it is
//! settled. When either runs out, `submit` waits, the reader stops reading, and backpressure
//! reaches the producer (rsyslog's queue, or the pipe of a shell script).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::dead_letter::DeadLetter;
use crate::deliver::{Attempt, Backoff, Deliverer};
use crate::outgoing::{Labeler, Outgoing};
use crate::stats::Stats;

#[derive(Debug, Clone, Copy)]
pub struct PipelineConfig {
    pub concurrency: usize,
    pub queue_messages: usize,
    pub queue_bytes: u64,
    pub backoff: Backoff,
}

/// One message on its way, holding its share of the byte budget until it is settled.
#[derive(Debug)]
pub struct Job {
    pub line_number: u64,
    pub outgoing: Outgoing,
    ack: Option<Ack>,
    _bytes: OwnedSemaphorePermit,
}

/// How a confirming caller (rsyslog's protocol) learns the fate of one message. A message
/// with an ack is never dead-lettered or counted lost for a retriable failure: it is handed
/// back, because rsyslog keeps it and sends it again. Dropping the receiver cancels it.
#[derive(Debug)]
pub struct Ack {
    pub reply: oneshot::Sender<Result<(), Returned>>,
    /// Stop retrying at this instant and hand the message back.
    pub give_up_at: Option<Instant>,
}

/// A message that was not delivered, handed back to its confirming caller.
#[derive(Debug)]
pub struct Returned {
    pub line_number: u64,
    /// The line as it was read.
    pub message: Vec<u8>,
    pub reason: String,
}

impl Ack {
    pub fn new(give_up_at: Option<Instant>) -> (Self, oneshot::Receiver<Result<(), Returned>>) {
        let (reply, receiver) = oneshot::channel();
        (Ack { reply, give_up_at }, receiver)
    }
}

/// Why a message was not delivered.
#[derive(Debug)]
enum Failure {
    Rejected(String),
    DrainPassed,
    GaveUp(Option<String>),
    Cancelled,
}

impl Failure {
    fn reason(&self) -> String {
        match self {
            Failure::Rejected(reason) => format!("rejected by the load balancer: {reason}"),
            Failure::DrainPassed => "not delivered before the drain deadline".into(),
            Failure::GaveUp(Some(last)) => format!("not delivered in time: {last}"),
            Failure::GaveUp(None) => "not delivered in time".into(),
            Failure::Cancelled => "cancelled".into(),
        }
    }
}

/// Sets the "abort" flag: workers stop retrying and settle what they hold as undelivered.
#[derive(Debug, Clone)]
pub struct Aborter(Arc<watch::Sender<bool>>);

impl Aborter {
    pub fn abort(&self) {
        self.0.send_replace(true);
    }
}

pub struct Pipeline {
    sender: mpsc::Sender<Job>,
    byte_budget: Arc<Semaphore>,
    byte_budget_size: u32,
    workers: JoinSet<()>,
    abort: Aborter,
}

impl Pipeline {
    /// Starts `concurrency` workers sharing one receiver and one HTTP client.
    pub fn start(
        config: PipelineConfig,
        deliverer: Arc<Deliverer>,
        labeler: Arc<Labeler>,
        settler: Arc<Settler>,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(config.queue_messages.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let (abort_sender, abort_receiver) = watch::channel(false);
        let concurrency = config.concurrency.max(1);
        let requests = Arc::new(Semaphore::new(concurrency));
        let mut workers = JoinSet::new();
        for _ in 0..concurrency {
            let worker = Worker {
                receiver: receiver.clone(),
                sending: Sending {
                    deliverer: deliverer.clone(),
                    labeler: labeler.clone(),
                    requests: requests.clone(),
                    concurrency,
                    backoff: config.backoff,
                    stats: settler.stats.clone(),
                },
                settler: settler.clone(),
                abort: abort_receiver.clone(),
            };
            workers.spawn(worker.run());
        }
        let byte_budget_size = u32::try_from(config.queue_bytes).unwrap_or(u32::MAX).max(1);
        Pipeline {
            sender,
            byte_budget: Arc::new(Semaphore::new(byte_budget_size as usize)),
            byte_budget_size,
            workers,
            abort: Aborter(Arc::new(abort_sender)),
        }
    }

    pub fn aborter(&self) -> Aborter {
        self.abort.clone()
    }

    /// Queues a message, waiting while the queue is full. Gives the message back if the
    /// workers are gone, so the caller can still settle it.
    pub async fn submit(
        &self,
        line_number: u64,
        outgoing: Outgoing,
        ack: Option<Ack>,
    ) -> Result<(), Outgoing> {
        // A message larger than the whole budget takes all of it rather than waiting forever.
        let cost = u32::try_from(outgoing.line.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.byte_budget_size);
        let Ok(permit) = self.byte_budget.clone().acquire_many_owned(cost).await else {
            return Err(outgoing);
        };
        let job = Job {
            line_number,
            outgoing,
            ack,
            _bytes: permit,
        };
        self.sender
            .send(job)
            .await
            .map_err(|refused| refused.0.outgoing)
    }

    /// Closes the queue and waits until the workers have settled every job in it.
    pub async fn finish(self) {
        let Pipeline {
            sender,
            mut workers,
            abort,
            ..
        } = self;
        drop(sender);
        while let Some(result) = workers.join_next().await {
            if let Err(e) = result {
                tracing::error!("a delivery worker failed: {e}");
            }
        }
        drop(abort);
    }
}

struct Worker {
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
    sending: Sending,
    settler: Arc<Settler>,
    abort: watch::Receiver<bool>,
}

/// The latest retriable failure of a message's requests, for the report when it is given up.
#[derive(Default)]
struct LastFailure(std::sync::Mutex<Option<String>>);

impl LastFailure {
    fn set(&self, reason: String) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(reason);
    }

    fn take(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

/// What a worker needs to get one message through.
struct Sending {
    deliverer: Arc<Deliverer>,
    labeler: Arc<Labeler>,
    /// Requests in flight across all workers: the fragments of one long message share it
    /// with everything else, so `--concurrency` holds however messages are cut.
    requests: Arc<Semaphore>,
    concurrency: usize,
    backoff: Backoff,
    stats: Arc<Stats>,
}

impl Worker {
    async fn run(mut self) {
        loop {
            let next = self.receiver.lock().await.recv().await;
            let Some(mut job) = next else { return };
            let mut ack = job.ack.take();
            let result = if *self.abort.borrow() {
                Err(Failure::DrainPassed)
            } else {
                self.deliver_until_settled(&job, ack.as_mut()).await
            };
            self.settle(job, ack, result);
        }
    }

    async fn deliver_until_settled(
        &mut self,
        job: &Job,
        ack: Option<&mut Ack>,
    ) -> Result<(), Failure> {
        let give_up_at = ack.as_ref().and_then(|ack| ack.give_up_at);
        let last_failure = LastFailure::default();
        enum Ended {
            Done(Result<(), Failure>),
            Aborted,
            GaveUp,
            Cancelled,
        }
        let ended = tokio::select! {
            result = self.sending.deliver(job, &last_failure) => Ended::Done(result),
            () = wait_for_abort(&mut self.abort) => Ended::Aborted,
            () = sleep_until_or_never(give_up_at) => Ended::GaveUp,
            () = closed_or_never(ack) => Ended::Cancelled,
        };
        match ended {
            Ended::Done(result) => result,
            Ended::Aborted => Err(Failure::DrainPassed),
            Ended::GaveUp => Err(Failure::GaveUp(last_failure.take())),
            Ended::Cancelled => Err(Failure::Cancelled),
        }
    }

    fn settle(&self, job: Job, ack: Option<Ack>, result: Result<(), Failure>) {
        let stats = &self.settler.stats;
        match (result, ack) {
            (Ok(()), ack) => {
                Stats::add(&stats.delivered, 1);
                if let Some(ack) = ack {
                    let _ = ack.reply.send(Ok(()));
                }
            }
            (Err(failure), None) => {
                self.settler
                    .undelivered(job.line_number, &job.outgoing.line, &failure.reason())
            }
            // Retrying a rejected message cannot help: keep it in the dead-letter file if there
            // is one and confirm it, rather than have rsyslog send it again forever.
            (Err(Failure::Rejected(reason)), Some(ack)) if self.settler.has_dead_letter() => {
                let reason = Failure::Rejected(reason).reason();
                self.settler
                    .undelivered(job.line_number, &job.outgoing.line, &reason);
                let _ = ack.reply.send(Ok(()));
            }
            (Err(failure), Some(ack)) => {
                Stats::add(&stats.returned, 1);
                // rsyslog sends it again; the retry takes the same sequence number.
                self.sending.labeler.give_back(&job.outgoing);
                let returned = Returned {
                    line_number: job.line_number,
                    reason: failure.reason(),
                    message: job.outgoing.line,
                };
                let _ = ack.reply.send(Err(returned));
            }
        }
    }
}

async fn wait_for_abort(abort: &mut watch::Receiver<bool>) {
    if abort.wait_for(|aborted| *aborted).await.is_err() {
        // The pipeline outlives its workers, so this is only reached at teardown.
        std::future::pending::<()>().await;
    }
}

async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn closed_or_never(ack: Option<&mut Ack>) {
    match ack {
        Some(ack) => ack.reply.closed().await,
        None => std::future::pending().await,
    }
}

impl Sending {
    /// Sends every request of a message until all are accepted, or one is rejected for good.
    /// The fragments of a long message go out concurrently, within `--concurrency`.
    async fn deliver(&self, job: &Job, last_failure: &LastFailure) -> Result<(), Failure> {
        let mut targets = self.labeler.targets(&job.outgoing);
        if job.outgoing.split.is_none() {
            // One request, the common case: no fan-out machinery.
            let Some(target) = targets.next() else {
                return Ok(());
            };
            return self
                .deliver_target(job.line_number, target, last_failure)
                .await;
        }
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < self.concurrency {
                let Some(target) = targets.next() else { break };
                in_flight.push(self.deliver_target(job.line_number, target, last_failure));
            }
            match in_flight.next().await {
                None => return Ok(()),
                Some(Ok(())) => {}
                Some(Err(failure)) => return Err(failure),
            }
        }
    }

    /// One request, retried until accepted or rejected for good. The latest retriable
    /// failure is kept for the report if the caller gives up.
    async fn deliver_target(
        &self,
        line_number: u64,
        target: String,
        last_failure: &LastFailure,
    ) -> Result<(), Failure> {
        let mut retry = 0u32;
        loop {
            let attempt = {
                let Ok(_slot) = self.requests.acquire().await else {
                    return Err(Failure::Cancelled);
                };
                self.deliverer.attempt(&target).await
            };
            match attempt {
                Attempt::Accepted => return Ok(()),
                Attempt::Permanent { reason } => return Err(Failure::Rejected(reason)),
                Attempt::Retry { reason, after } => {
                    let delay = self.backoff.delay(retry, after);
                    tracing::debug!(line = line_number, retry, ?delay, "will retry: {reason}");
                    last_failure.set(reason);
                    Stats::add(&self.stats.retries, 1);
                    tokio::time::sleep(delay).await;
                    retry = retry.saturating_add(1);
                }
            }
        }
    }
}

/// Accounts for messages that were not delivered: into the dead-letter file when there is one,
/// otherwise counted as lost. Logs the first few individually, then only counts.
pub struct Settler {
    pub stats: Arc<Stats>,
    dead_letter: Option<DeadLetter>,
    logged: AtomicU64,
}

const LOGGED_INDIVIDUALLY: u64 = 20;

impl Settler {
    pub fn new(stats: Arc<Stats>, dead_letter: Option<DeadLetter>) -> Self {
        Settler {
            stats,
            dead_letter,
            logged: AtomicU64::new(0),
        }
    }

    pub fn has_dead_letter(&self) -> bool {
        self.dead_letter.is_some()
    }

    pub fn undelivered(&self, line_number: u64, message: &[u8], reason: &str) {
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
            Stats::add(&self.stats.lost, 1);
            "lost"
        };
        self.log(line_number, &format!("{reason}; {outcome}"));
    }

    /// A message handed back to a caller that cannot hand it on (its transaction was never
    /// committed): it is dead-lettered or lost after all.
    pub fn reclaim(&self, returned: Returned) {
        self.stats.returned.fetch_sub(1, Ordering::Relaxed);
        self.undelivered(returned.line_number, &returned.message, &returned.reason);
    }

    /// A line that was too long to be read whole: it cannot be dead-lettered.
    pub fn unreadable(&self, line_number: u64, reason: &str) {
        Stats::add(&self.stats.lost, 1);
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
    pub fn sync(&self) -> bool {
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
