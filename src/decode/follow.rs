//! `--follow`: after the first read, look again every `--poll-interval` and decode what is
//! new, until SIGINT or SIGTERM. What it keeps between looks is in memory: the files seen
//! (here), and in the decoder the fragments waiting for the rest of their message and the
//! recent ids.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::window::{self, Range, Timestamp};
use crate::shutdown::{Again, OnSignals, Shutdown};

/// How far back each later look lists: a day. Load balancers deliver a file minutes after
/// its interval ends; a file that lands later than this after its end time is not seen.
pub(super) const LOOKBACK_MICROS: i64 = 24 * 3600 * 1_000_000;

/// The inputs read so far, by name, with the end time their name carries (if any).
#[derive(Debug, Default)]
pub(super) struct Seen {
    names: HashMap<String, Option<i64>>,
}

impl Seen {
    /// True the first time `name` is offered.
    pub(super) fn insert(&mut self, name: &str) -> bool {
        if self.names.contains_key(name) {
            return false;
        }
        self.names
            .insert(name.to_string(), window::name_end_time(name));
        true
    }

    /// Whether `name` was offered before.
    pub(super) fn contains(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// Forgets the names that `listing` can no longer admit (their end time is before its
    /// start), so memory holds about a day of names, not every name ever read.
    pub(super) fn forget_outside(&mut self, listing: &Range) {
        self.names.retain(|name, end| match end {
            Some(_) => listing.admits_file(name),
            None => true,
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.names.len()
    }
}

/// The listing window of a later look: from a day ago (or `--since`, if later) on.
pub(super) fn later_listing(range: &Range, now: Timestamp) -> Range {
    let day_ago = now.minus_micros(LOOKBACK_MICROS);
    Range {
        since: Some(range.since.map_or(day_ago, |since| since.max(day_ago))),
        until: None,
    }
}

/// SIGINT or SIGTERM: stop after the file being read. A second one exits at once.
pub(super) fn stop_on_signals(runtime: &tokio::runtime::Runtime) -> std::io::Result<Arc<Shutdown>> {
    let shutdown = Arc::new(Shutdown::default());
    let _guard = runtime.enter();
    shutdown.watch_signals(OnSignals {
        ignore_interrupt: false,
        ignore_hangup: false,
        first: |_| "stopping after the file being read (a second signal exits at once)".into(),
        again: Again::Exit("second signal: exiting without the summary", 130),
    })?;
    Ok(shutdown)
}

/// Sleeps for `interval`, or less if a stop signal comes; true if it did.
pub(super) fn wait(
    runtime: &tokio::runtime::Runtime,
    stopped: &mut watch::Receiver<bool>,
    interval: Duration,
) -> bool {
    runtime.block_on(async {
        tokio::time::timeout(interval, stopped.wait_for(|stop| *stop))
            .await
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::window::parse_time;

    #[test]
    fn names_are_read_once_and_forgotten_once_out_of_the_window() {
        let mut seen = Seen::default();
        let old = "lb/2026/11/01/1_elasticloadbalancing_r_app.lb.1_20261101T1200Z_ip_x.log.gz";
        let new = "lb/2026/12/01/1_elasticloadbalancing_r_app.lb.1_20261201T1200Z_ip_x.log.gz";
        let untimed = "lb/manual-export.log";
        for name in [old, new, untimed] {
            assert!(seen.insert(name));
            assert!(!seen.insert(name));
        }
        let now = parse_time("2026-12-01T13:00:00Z", Timestamp(0)).expect("time");
        seen.forget_outside(&later_listing(&Range::default(), now));
        assert_eq!(seen.len(), 2, "only the month-old name is forgotten");
        assert!(!seen.insert(new) && !seen.insert(untimed));
    }
}
