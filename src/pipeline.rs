//! The bounded queue between the reader and the worker pool, the workers' retry loop, and how
//! every message is settled: delivered, dead-lettered or lost, never silently dropped.
//!
//! Memory is bounded twice: the channel holds at most `queue_messages` waiting jobs, and every
//! job holds permits of a byte semaphore (its length) from the moment it is queued until it is
//! settled. When either runs out, `submit` waits, the reader stops reading, and backpressure
//! reaches the producer (rsyslog's queue, or the pipe of a shell script).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::dead_letter::DeadLetter;
use crate::deliver::{Attempt, Backoff, Deliverer};
use crate::stats::Stats;
use crate::wire;

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
    pub message: Vec<u8>,
    _bytes: OwnedSemaphorePermit,
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
    pub fn start(config: PipelineConfig, deliverer: Arc<Deliverer>, settler: Arc<Settler>) -> Self {
        let (sender, receiver) = mpsc::channel(config.queue_messages.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let (abort_sender, abort_receiver) = watch::channel(false);
        let mut workers = JoinSet::new();
        for _ in 0..config.concurrency.max(1) {
            let worker = Worker {
                receiver: receiver.clone(),
                deliverer: deliverer.clone(),
                settler: settler.clone(),
                backoff: config.backoff,
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
    pub async fn submit(&self, line_number: u64, message: Vec<u8>) -> Result<(), Vec<u8>> {
        // A message larger than the whole budget takes all of it rather than waiting forever.
        let cost = u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.byte_budget_size);
        let Ok(permit) = self.byte_budget.clone().acquire_many_owned(cost).await else {
            return Err(message);
        };
        let job = Job {
            line_number,
            message,
            _bytes: permit,
        };
        self.sender
            .send(job)
            .await
            .map_err(|refused| refused.0.message)
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
    deliverer: Arc<Deliverer>,
    settler: Arc<Settler>,
    backoff: Backoff,
    abort: watch::Receiver<bool>,
}

impl Worker {
    async fn run(mut self) {
        loop {
            let next = self.receiver.lock().await.recv().await;
            let Some(job) = next else { return };
            let result = if *self.abort.borrow() {
                Err(DRAIN_PASSED.to_string())
            } else {
                let aborted = wait_for_abort(&mut self.abort);
                tokio::select! {
                    result = deliver(&self.deliverer, self.backoff, &self.settler.stats, &job) => result,
                    () = aborted => Err(DRAIN_PASSED.to_string()),
                }
            };
            match result {
                Ok(()) => Stats::add(&self.settler.stats.delivered, 1),
                Err(reason) => self
                    .settler
                    .undelivered(job.line_number, &job.message, &reason),
            }
        }
    }
}

const DRAIN_PASSED: &str = "not delivered before the drain deadline";

async fn wait_for_abort(abort: &mut watch::Receiver<bool>) {
    if abort.wait_for(|aborted| *aborted).await.is_err() {
        // The pipeline outlives its workers, so this is only reached at teardown.
        std::future::pending::<()>().await;
    }
}

/// Sends one message until the load balancer accepts it or rejects it for good.
async fn deliver(
    deliverer: &Deliverer,
    backoff: Backoff,
    stats: &Stats,
    job: &Job,
) -> Result<(), String> {
    let target = wire::encode_target(deliverer.endpoint().path(), &job.message);
    let mut retry = 0u32;
    loop {
        match deliverer.attempt(&target).await {
            Attempt::Accepted => return Ok(()),
            Attempt::Permanent { reason } => {
                return Err(format!("rejected by the load balancer: {reason}"));
            }
            Attempt::Retry { reason, after } => {
                let delay = backoff.delay(retry, after);
                tracing::debug!(
                    line = job.line_number,
                    retry,
                    ?delay,
                    "will retry: {reason}"
                );
                Stats::add(&stats.retries, 1);
                tokio::time::sleep(delay).await;
                retry = retry.saturating_add(1);
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
