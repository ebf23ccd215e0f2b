//! `decode --follow --metrics-listen ADDR`: `/metrics` and `/healthz`, served by
//! [`crate::metrics`] on the runtime `--follow` runs anyway. The decoder is single-threaded
//! and keeps its counts in plain fields, so after each look it publishes a snapshot, which the
//! collector reads at scrape time (the lag is computed then, against the clock).
//!
//! Per-sender series are kept only for the senders with an entry logged within
//! [`ACTIVE_FOR`], so the label set stays bounded however many senders come and go.

use std::fmt;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use super::decoder::Counts;
use super::window::{Clock, Timestamp};
use crate::metrics::{Lifecycle, counter, gauge, labelled_counter};
use crate::shutdown::Shutdown;

/// How long a sender keeps its series after its last entry.
pub(super) const ACTIVE_FOR_MICROS: i64 = 3600 * 1_000_000;
const ACTIVE_FOR: &str = "an hour";

/// What the decoder has done, as of its last look.
#[derive(Debug, Default, Clone)]
pub(super) struct Snapshot {
    pub counts: Counts,
    /// The log time of the newest entry read.
    pub newest_entry: Option<Timestamp>,
    /// Numbers confirmed missing, per sender active within [`ACTIVE_FOR_MICROS`].
    pub active_senders: Vec<(String, u64)>,
}

pub(super) type Published = Arc<Mutex<Snapshot>>;

/// Serves the metrics on `listener` from `runtime`; what is published goes out at the next
/// scrape.
pub(super) fn serve(
    listener: std::net::TcpListener,
    runtime: &tokio::runtime::Runtime,
    clock: Clock,
    shutdown: &Shutdown,
) -> Published {
    let published = Published::default();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(DecodeCollector {
        published: published.clone(),
        clock,
    }));
    let _guard = runtime.enter();
    crate::metrics::serve(listener, registry, Arc::new(Lifecycle::default()), shutdown);
    published
}

pub(super) fn publish(published: &Published, snapshot: Snapshot) {
    *published
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = snapshot;
}

struct DecodeCollector {
    published: Published,
    clock: Clock,
}

impl fmt::Debug for DecodeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DecodeCollector")
    }
}

impl Collector for DecodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let snapshot = self
            .published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let counts = &snapshot.counts;
        let e = &mut encoder;
        counter(
            e,
            "drifter_decode_messages",
            "Messages decoded and written.",
            counts.messages,
        )?;
        counter(
            e,
            "drifter_decode_lines",
            "Access-log lines read.",
            counts.lines,
        )?;
        labelled_counter(
            e,
            "drifter_decode_skipped",
            "Lines read that are no message of drifter's, by reason.",
            "reason",
            [
                ("other_client", counts.other),
                ("without_message", counts.without_message),
                ("malformed", counts.malformed),
            ]
            .map(|(reason, count)| (reason.to_string(), count)),
        )?;
        counter(
            e,
            "drifter_decode_duplicates",
            "Requests dropped because their message (or fragment) was already decoded.",
            counts.duplicates,
        )?;
        counter(
            e,
            "drifter_decode_forged",
            "Requests whose MAC did not verify with --verify-key.",
            counts.forged,
        )?;
        counter(
            e,
            "drifter_decode_incomplete_messages",
            "Messages some of whose fragments never arrived.",
            counts.incomplete,
        )?;
        counter(
            e,
            "drifter_decode_late_messages",
            "Messages written out of their order: they came after the reorder window had passed their place.",
            counts.late,
        )?;
        counter(
            e,
            "drifter_decode_missing_messages",
            "Sequence numbers confirmed missing (past --gap-grace).",
            counts.missing,
        )?;
        labelled_counter(
            e,
            "drifter_decode_sender_missing_messages",
            &format!(
                "Sequence numbers confirmed missing, per sender with an entry within {ACTIVE_FOR}."
            ),
            "sender",
            snapshot.active_senders.iter().cloned(),
        )?;
        counter(
            e,
            "drifter_decode_unreadable_inputs",
            "Paths or objects that could not be read.",
            counts.unreadable,
        )?;
        let seconds = |at: Timestamp| at.0 as f64 / 1e6;
        gauge(
            e,
            "drifter_decode_newest_entry_timestamp_seconds",
            "Log time of the newest access-log entry read (0: none yet).",
            snapshot.newest_entry.map_or(0.0, seconds),
        )?;
        gauge(
            e,
            "drifter_decode_lag_seconds",
            "How far the newest entry read is behind the clock (0: none yet).",
            snapshot
                .newest_entry
                .map_or(0.0, |newest| seconds(self.clock.now()) - seconds(newest)),
        )
    }
}
