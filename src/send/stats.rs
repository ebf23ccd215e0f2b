//! Counters shared by the reader and the workers, and the summary lines built from them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    /// Handed back to rsyslog (confirm and transaction modes), which keeps and resends them.
    pub returned: AtomicU64,
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
    pub returned: u64,
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
            returned: AtomicU64::new(0),
        }
    }
}

impl Stats {
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            read: self.read.load(Ordering::Relaxed),
            empty: self.empty.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            returned: self.returned.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
        }
    }
}

impl Snapshot {
    pub(super) fn pending(&self) -> u64 {
        self.read
            .saturating_sub(self.delivered + self.dead_lettered + self.lost + self.returned)
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
            "read {} (+{} empty lines), delivered {}, retried {}, dead-lettered {}, lost {}, returned to rsyslog {}, pending {}; {:.2}s, {:.0} msg/s",
            self.read,
            self.empty,
            self.delivered,
            self.retries,
            self.dead_lettered,
            self.lost,
            self.returned,
            self.pending(),
            seconds,
            rate
        )
    }
}
