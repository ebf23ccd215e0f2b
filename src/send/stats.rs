//! Counters shared by the reader, the workers and the client, the summary lines built from
//! them, and what `/metrics` reads at scrape time.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::metrics::StatusCounts;

/// Why a message was lost (not delivered and not dead-lettered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    /// Longer than `--max-line-bytes`: never read whole, so it cannot be dead-lettered.
    TooLong,
    /// A permanent answer from the load balancer.
    Rejected,
    /// Still undelivered at the drain deadline.
    DrainDeadline,
    /// Its transaction was never committed, and it was not delivered by the end.
    Uncommitted,
    /// The delivery workers were gone, or the message was cancelled.
    Stopped,
    /// It kept failing while the load balancer accepted others (`--max-attempts`).
    MaxAttempts,
    /// Its spool record was damaged (disk corruption, a crash mid-write): it could not be
    /// read back.
    Corrupt,
}

impl Loss {
    pub(crate) const ALL: [Loss; 7] = [
        Loss::TooLong,
        Loss::Rejected,
        Loss::DrainDeadline,
        Loss::Uncommitted,
        Loss::Stopped,
        Loss::MaxAttempts,
        Loss::Corrupt,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Loss::TooLong => "too_long",
            Loss::Rejected => "rejected",
            Loss::DrainDeadline => "drain_deadline",
            Loss::Uncommitted => "uncommitted",
            Loss::Stopped => "stopped",
            Loss::MaxAttempts => "max_attempts",
            Loss::Corrupt => "corrupt",
        }
    }
}

/// How a request failed without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestError {
    Connect,
    Tls,
    Timeout,
    Proxy,
    Io,
}

impl RequestError {
    pub(crate) const ALL: [RequestError; 5] = [
        RequestError::Connect,
        RequestError::Tls,
        RequestError::Timeout,
        RequestError::Proxy,
        RequestError::Io,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            RequestError::Connect => "connect",
            RequestError::Tls => "tls",
            RequestError::Timeout => "timeout",
            RequestError::Proxy => "proxy",
            RequestError::Io => "io",
        }
    }
}

/// What one request came to, for the duration histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Accepted,
    Retried,
    Rejected,
    /// No answer: no connection, a reset, a timeout.
    Error,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 4] = [
        Outcome::Accepted,
        Outcome::Retried,
        Outcome::Rejected,
        Outcome::Error,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Retried => "retried",
            Outcome::Rejected => "rejected",
            Outcome::Error => "error",
        }
    }
}

/// Request durations, in seconds: 1 ms to about 16 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Counters of the HTTP requests themselves (a message may take several).
#[derive(Debug)]
pub(crate) struct Requests {
    pub(crate) statuses: StatusCounts,
    errors: [AtomicU64; RequestError::ALL.len()],
    pub(crate) target_bytes: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    /// Milliseconds since the Unix epoch of the last accepted request; 0 before the first.
    last_delivery_ms: AtomicU64,
    /// By [`Outcome`].
    durations: [Histogram; Outcome::ALL.len()],
}

impl Default for Requests {
    fn default() -> Self {
        Requests {
            statuses: StatusCounts::default(),
            errors: Default::default(),
            target_bytes: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            last_delivery_ms: AtomicU64::new(0),
            durations: Outcome::ALL.map(|_| duration_histogram()),
        }
    }
}

impl Requests {
    pub(crate) fn failed(&self, error: RequestError) {
        self.errors[error as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn observe(&self, outcome: Outcome, duration: Duration) {
        self.durations[outcome as usize].observe(duration.as_secs_f64());
    }

    pub(crate) fn durations(&self, outcome: Outcome) -> &Histogram {
        &self.durations[outcome as usize]
    }

    pub(crate) fn delivered_now(&self) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        self.last_delivery_ms.store(now, Ordering::Relaxed);
    }

    pub(crate) fn errors(&self, error: RequestError) -> u64 {
        self.errors[error as usize].load(Ordering::Relaxed)
    }

    /// Seconds since the Unix epoch of the last accepted request, if any.
    pub(crate) fn last_delivery(&self) -> Option<f64> {
        match self.last_delivery_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(ms as f64 / 1000.0),
        }
    }
}

/// Every message read ends up in exactly one of delivered, dead-lettered or lost.
#[derive(Debug)]
pub(super) struct Stats {
    started: Instant,
    pub read: AtomicU64,
    pub empty: AtomicU64,
    pub delivered: AtomicU64,
    pub retries: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub lost: AtomicU64,
    lost_by: [AtomicU64; Loss::ALL.len()],
    /// Handed back to rsyslog (confirm and transaction modes), which keeps and resends them;
    /// less those taken back when their transaction was never committed.
    pub returned: AtomicU64,
    /// Every hand-back, never decreased.
    pub returned_total: AtomicU64,
    /// With --spool: messages found in the spool at start (left by an earlier run).
    pub recovered: AtomicU64,
    /// With --spool: messages still in the spool at exit, for the next run.
    pub left_in_spool: AtomicU64,
    pub requests: Requests,
}

/// A consistent-enough copy of the counters for printing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Snapshot {
    pub read: u64,
    pub empty: u64,
    pub delivered: u64,
    pub retries: u64,
    pub dead_lettered: u64,
    pub lost: u64,
    /// By [`Loss`].
    pub lost_by: [u64; Loss::ALL.len()],
    pub returned: u64,
    pub recovered: u64,
    pub left_in_spool: u64,
    pub elapsed: Duration,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            read: AtomicU64::new(0),
            empty: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            lost_by: Default::default(),
            returned: AtomicU64::new(0),
            returned_total: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            left_in_spool: AtomicU64::new(0),
            requests: Requests::default(),
        }
    }
}

impl Stats {
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn lose(&self, loss: Loss) {
        self.lose_many(loss, 1);
    }

    pub(super) fn lose_many(&self, loss: Loss, count: u64) {
        Stats::add(&self.lost, count);
        Stats::add(&self.lost_by[loss as usize], count);
    }

    pub(super) fn lost_by(&self, loss: Loss) -> u64 {
        self.lost_by[loss as usize].load(Ordering::Relaxed)
    }

    pub(super) fn hand_back(&self) {
        Stats::add(&self.returned, 1);
        Stats::add(&self.returned_total, 1);
    }

    /// Process start, for `process_start_time_seconds`.
    pub(super) fn started_at(&self) -> f64 {
        let since_start = self.started.elapsed();
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |since| {
                (since.saturating_sub(since_start)).as_secs_f64()
            })
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            read: self.read.load(Ordering::Relaxed),
            empty: self.empty.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            lost_by: Loss::ALL.map(|loss| self.lost_by(loss)),
            returned: self.returned.load(Ordering::Relaxed),
            recovered: self.recovered.load(Ordering::Relaxed),
            left_in_spool: self.left_in_spool.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
        }
    }
}

impl Snapshot {
    /// Messages read (or recovered from the spool) whose fate is not known yet.
    pub(super) fn pending(&self) -> u64 {
        (self.read + self.recovered).saturating_sub(
            self.delivered + self.dead_lettered + self.lost + self.returned + self.left_in_spool,
        )
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            self.delivered as f64 / seconds
        } else {
            0.0
        };
        write!(
            f,
            "read {} (+{} empty lines), delivered {}, retried {}, dead-lettered {}, lost {}",
            self.read, self.empty, self.delivered, self.retries, self.dead_lettered, self.lost,
        )?;
        if self.lost > 0 {
            // Why, so the summary alone tells what to fix.
            let reasons: Vec<String> = Loss::ALL
                .iter()
                .zip(self.lost_by)
                .filter(|&(_, count)| count > 0)
                .map(|(loss, count)| format!("{} {count}", loss.label()))
                .collect();
            write!(f, " ({})", reasons.join(", "))?;
        }
        write!(
            f,
            ", returned to rsyslog {}, pending {}; {:.2}s, {:.0} msg/s",
            self.returned,
            self.pending(),
            seconds,
            rate
        )?;
        if self.recovered > 0 {
            write!(f, "; {} recovered from the spool", self.recovered)?;
        }
        if self.left_in_spool > 0 {
            write!(f, "; {} left in the spool", self.left_in_spool)?;
        }
        Ok(())
    }
}

/// `--stats-interval`: the summary so far, every `interval`.
pub(super) async fn report_periodically(stats: Arc<Stats>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        tracing::info!("stats: {}", stats.snapshot());
    }
}
