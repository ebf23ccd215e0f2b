//! The bounded queue between the reader and the worker pool, and the workers: each takes a
//! message, sends its requests through the [`Retrier`], and hands the result to the
//! [`Settler`]. A message in fragments is one job: it is delivered when every fragment was
//! accepted.
//!
//! Memory is bounded twice: the channel holds at most `queue_messages` waiting jobs, and every
//! job holds permits of a byte semaphore (its length) from the moment it is queued until it is
//! settled. When either runs out, `submit` waits, the reader stops reading, and backpressure
//! reaches the producer (rsyslog's queue, or the pipe of a shell script).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Mutex, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::job::{Ack, Job, Ticket};
use super::outgoing::{Labeler, Outgoing};
use super::retry::{self, Failure, LastFailure, Retrier};
use super::settle::Settler;

#[derive(Debug, Clone, Copy)]
pub(super) struct PipelineConfig {
    pub concurrency: usize,
    pub queue_messages: usize,
    pub queue_bytes: u64,
}

/// The bounded queue between the session (and the spool's feeder) and `--concurrency`
/// workers, which deliver each [`Job`] through the shared [`Retrier`] and hand its result to
/// the [`Settler`]. It owns the workers: [`finish`](Self::finish) closes the queue and joins
/// them, so every job queued is settled before it returns. The run's abort (the drain
/// deadline, a second signal) tells them to stop retrying.
pub(super) struct Pipeline {
    /// Workers running; fewer than `concurrency` before the queue closes means some died.
    workers_running: Arc<AtomicUsize>,
    concurrency: usize,
    submitter: Submitter,
    workers: JoinSet<()>,
}

/// The queue's entrance. The queue closes once every submitter is dropped.
#[derive(Clone)]
pub(super) struct Submitter {
    sender: mpsc::Sender<Job>,
    byte_budget: Arc<Semaphore>,
    byte_budget_size: u32,
}

impl Pipeline {
    /// Starts `concurrency` workers sharing one receiver and one retrier (and its client);
    /// they settle what they hold as undelivered once `abort` is true.
    pub(super) fn start(
        config: PipelineConfig,
        retrier: Arc<Retrier>,
        labeler: Arc<Labeler>,
        settler: Arc<Settler>,
        abort: watch::Receiver<bool>,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(config.queue_messages.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let concurrency = config.concurrency.max(1);
        let mut workers = JoinSet::new();
        let workers_running = Arc::new(AtomicUsize::new(0));
        for _ in 0..concurrency {
            let worker = Worker {
                receiver: receiver.clone(),
                sending: Sending {
                    retrier: retrier.clone(),
                    labeler: labeler.clone(),
                    concurrency,
                },
                settler: settler.clone(),
                abort: abort.clone(),
            };
            let running = Running::count(&workers_running);
            workers.spawn(async move {
                // A worker that panics is counted out too, and /healthz says so.
                let _running = running;
                worker.run().await;
            });
        }
        let byte_budget_size = u32::try_from(config.queue_bytes).unwrap_or(u32::MAX).max(1);
        Pipeline {
            workers_running,
            concurrency,
            submitter: Submitter {
                sender,
                byte_budget: Arc::new(Semaphore::new(byte_budget_size as usize)),
                byte_budget_size,
            },
            workers,
        }
    }

    /// How many workers run, and how many should.
    pub(super) fn workers_running(&self) -> (Arc<AtomicUsize>, usize) {
        (self.workers_running.clone(), self.concurrency)
    }

    /// The byte budget (its free permits are the bytes not queued) and its size.
    pub(super) fn byte_budget(&self) -> (Arc<Semaphore>, u64) {
        let submitter = &self.submitter;
        (
            submitter.byte_budget.clone(),
            u64::from(submitter.byte_budget_size),
        )
    }

    /// Queues a message, waiting while the queue is full. Gives the message back if the
    /// workers are gone, so the caller can still settle it.
    pub(super) async fn submit(
        &self,
        line_number: u64,
        outgoing: Outgoing,
        ack: Option<Ack>,
    ) -> Result<(), Outgoing> {
        self.submitter.queue(line_number, outgoing, ack, None).await
    }

    /// Another entrance to the queue, for the spool's feeder.
    pub(super) fn submitter(&self) -> Submitter {
        self.submitter.clone()
    }
}

impl Submitter {
    /// Queues a message taken from the spool; it is marked done there once settled.
    pub(super) async fn submit_spooled(
        &self,
        line_number: u64,
        outgoing: Outgoing,
        ticket: Ticket,
    ) -> Result<(), Outgoing> {
        self.queue(line_number, outgoing, None, Some(ticket)).await
    }

    async fn queue(
        &self,
        line_number: u64,
        outgoing: Outgoing,
        ack: Option<Ack>,
        ticket: Option<Ticket>,
    ) -> Result<(), Outgoing> {
        // A message larger than the whole budget takes all of it rather than waiting forever.
        let cost = u32::try_from(outgoing.line.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.byte_budget_size);
        let Ok(permit) = self.byte_budget.clone().acquire_many_owned(cost).await else {
            return Err(outgoing);
        };
        let job = Job::new(line_number, outgoing, ack, ticket, permit);
        self.sender
            .send(job)
            .await
            .map_err(|refused| refused.0.outgoing)
    }
}

impl Pipeline {
    /// Closes the queue and waits until the workers have settled every job in it.
    pub(super) async fn finish(self) {
        let Pipeline {
            submitter,
            mut workers,
            ..
        } = self;
        drop(submitter);
        while let Some(result) = workers.join_next().await {
            if let Err(e) = result {
                tracing::error!("a delivery worker failed: {e}");
            }
        }
    }
}

/// Counts a running worker until dropped, when the worker ends or unwinds.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn count(running: &Arc<AtomicUsize>) -> Self {
        running.fetch_add(1, Ordering::AcqRel);
        Running(running.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Worker {
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
    sending: Sending,
    settler: Arc<Settler>,
    abort: watch::Receiver<bool>,
}

/// What a worker needs to get one message through.
struct Sending {
    retrier: Arc<Retrier>,
    labeler: Arc<Labeler>,
    concurrency: usize,
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
                let last_failure = LastFailure::default();
                let delivery = self.sending.deliver(&job, &last_failure);
                retry::within_limits(delivery, &mut self.abort, ack.as_mut(), &last_failure).await
            };
            self.settler.settle(job, ack, result, &self.sending.labeler);
        }
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
                .retrier
                .until_accepted(job.line_number, target, last_failure)
                .await;
        }
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < self.concurrency {
                let Some(target) = targets.next() else { break };
                in_flight.push(
                    self.retrier
                        .until_accepted(job.line_number, target, last_failure),
                );
            }
            match in_flight.next().await {
                None => return Ok(()),
                Some(Ok(())) => {}
                Some(Err(failure)) => return Err(failure),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::send::stats::{Loss, Stats};
    use crate::wire::TargetFormat;

    /// A pipeline whose client points at a port nothing listens on (bound, then released):
    /// no test here gets as far as a request.
    fn pipeline(
        abort: watch::Receiver<bool>,
        queue_bytes: u64,
    ) -> (Pipeline, Arc<Labeler>, Arc<Stats>) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a port")
            .port();
        let stats = Arc::new(Stats::default());
        let retrier = Retrier::for_tests(&format!("http://127.0.0.1:{port}/"), stats.clone());
        let format = TargetFormat::new("/", 8192, None);
        let labeler = Arc::new(Labeler::new(format, None, false, 1 << 20, None).expect("fits"));
        let settler = Arc::new(Settler::new(stats.clone(), None));
        let config = PipelineConfig {
            concurrency: 2,
            queue_messages: 4,
            queue_bytes,
        };
        let pipeline = Pipeline::start(config, retrier, labeler.clone(), settler, abort);
        (pipeline, labeler, stats)
    }

    #[tokio::test]
    async fn after_the_abort_every_queued_message_is_settled_undelivered() {
        let (_abort, aborted) = watch::channel(true);
        let (pipeline, labeler, stats) = pipeline(aborted, 1 << 20);
        for n in 1..=3 {
            let outgoing = labeler.prepare(n, b"late".to_vec()).expect("a message");
            assert!(pipeline.submit(n, outgoing, None).await.is_ok());
        }
        pipeline.finish().await;
        assert_eq!(stats.lost_by(Loss::DrainDeadline), 3);
        assert_eq!(stats.requests.statuses.seen().count(), 0);
    }

    #[tokio::test]
    async fn a_message_larger_than_the_byte_budget_takes_all_of_it() {
        let (_abort, aborted) = watch::channel(true);
        let (pipeline, labeler, _) = pipeline(aborted, 16);
        let (budget, size) = pipeline.byte_budget();
        assert_eq!(size, 16);
        let outgoing = labeler.prepare(1, vec![b'x'; 100]).expect("a message");
        assert!(pipeline.submit(1, outgoing, None).await.is_ok());
        pipeline.finish().await;
        // Settled, so its permits are back.
        assert_eq!(budget.available_permits(), 16);
    }
}
