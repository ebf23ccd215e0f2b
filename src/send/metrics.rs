//! `send`'s metrics: read from the counters it keeps anyway ([`Stats`], the queue's byte
//! budget, the circuit) at scrape time, through one collector: nothing is counted twice, and
//! every series but the per-status ones exists from the start at 0.
//!
//! Health does not follow the load balancer: a restart does not fix a remote outage, and a
//! failing sidecar probe takes the whole pod out of its Service. An outage shows in
//! `drifter_delivery_up` and the counters, for alerting.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;

use super::retry::Retrier;
use super::spooling::Spooler;
use super::stats::{Loss, Outcome, RequestError, Stats};
use super::tail::FileMetrics;
use crate::metrics::{counter, gauge, labelled_counter};

/// What the collector reads at scrape time.
pub(super) struct Sources {
    pub stats: Arc<Stats>,
    pub retrier: Arc<Retrier>,
    /// The queue's byte budget: its free permits are the bytes not queued.
    pub queue_bytes: Arc<Semaphore>,
    pub queue_bytes_capacity: u64,
    pub queue_messages_capacity: u64,
    pub spooler: Option<Arc<Spooler>>,
    /// `--file`'s per-file counts.
    pub files: Option<Arc<FileMetrics>>,
}

/// The registry `/metrics` encodes for `send`.
pub(super) fn registry(sources: Sources) -> Registry {
    let mut registry = Registry::default();
    if let Some(files) = &sources.files {
        registry.register_collector(files.collector());
    }
    registry.register_collector(Box::new(SendCollector(sources)));
    registry
}

struct SendCollector(Sources);

impl fmt::Debug for SendCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendCollector")
    }
}

impl Collector for SendCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let sources = &self.0;
        let stats = &sources.stats;
        let snapshot = stats.snapshot();
        let requests = &stats.requests;
        let e = &mut encoder;
        counter(
            e,
            "drifter_messages_read",
            "Messages read from stdin.",
            snapshot.read,
        )?;
        labelled_counter(
            e,
            "drifter_lines_skipped",
            "Lines read that carry no message.",
            "reason",
            [("empty".to_string(), snapshot.empty)],
        )?;
        counter(
            e,
            "drifter_messages_delivered",
            "Messages the load balancer accepted.",
            snapshot.delivered,
        )?;
        counter(
            e,
            "drifter_messages_dead_lettered",
            "Messages written to the dead-letter file.",
            snapshot.dead_lettered,
        )?;
        labelled_counter(
            e,
            "drifter_messages_lost",
            "Messages neither delivered nor dead-lettered.",
            "reason",
            Loss::ALL.map(|loss| (loss.label().to_string(), stats.lost_by(loss))),
        )?;
        counter(
            e,
            "drifter_messages_returned",
            "Messages handed back to rsyslog, which sends them again.",
            stats.returned_total.load(Ordering::Relaxed),
        )?;
        let errors: u64 = RequestError::ALL.iter().map(|&k| requests.errors(k)).sum();
        labelled_counter(
            e,
            "drifter_requests",
            "HTTP requests by response status, or error when none came.",
            "code",
            requests
                .statuses
                .seen()
                .chain([("error".to_string(), errors)]),
        )?;
        labelled_counter(
            e,
            "drifter_request_errors",
            "HTTP requests that got no response, by kind.",
            "kind",
            RequestError::ALL.map(|kind| (kind.label().to_string(), requests.errors(kind))),
        )?;
        counter(
            e,
            "drifter_request_retries",
            "Requests tried again after a retriable failure.",
            snapshot.retries,
        )?;
        counter(
            e,
            "drifter_request_target_bytes",
            "Bytes of request targets (path and query) sent.",
            requests.target_bytes.load(Ordering::Relaxed),
        )?;
        gauge(
            e,
            "drifter_queue_messages",
            "Messages read and not yet settled.",
            snapshot.pending() as i64,
        )?;
        gauge(
            e,
            "drifter_queue_messages_capacity",
            "--queue-messages.",
            sources.queue_messages_capacity as i64,
        )?;
        let free = sources.queue_bytes.available_permits() as u64;
        gauge(
            e,
            "drifter_queue_bytes",
            "Bytes of messages queued or in flight.",
            sources.queue_bytes_capacity.saturating_sub(free) as i64,
        )?;
        gauge(
            e,
            "drifter_queue_bytes_capacity",
            "--queue-bytes.",
            sources.queue_bytes_capacity as i64,
        )?;
        if let Some(spooler) = &sources.spooler {
            gauge(
                e,
                "drifter_spool_messages",
                "Messages in the spool (own and adopted) not yet delivered.",
                spooler.pending() as i64,
            )?;
            gauge(
                e,
                "drifter_spool_bytes",
                "Bytes of the spool's files.",
                spooler.bytes() as i64,
            )?;
            gauge(
                e,
                "drifter_spool_bytes_capacity",
                "--spool-max-bytes.",
                spooler.capacity() as i64,
            )?;
            counter(
                e,
                "drifter_spool_corrupt_records",
                "Spool records skipped because they failed their checksum.",
                spooler.corrupt(),
            )?;
            counter(
                e,
                "drifter_spool_maintenance_errors",
                "Errors of the spool's maintenance (sync, state store, deletes); it goes on.",
                spooler.maintenance_errors(),
            )?;
        }
        gauge(
            e,
            "drifter_requests_in_flight",
            "HTTP requests under way.",
            requests.in_flight.load(Ordering::Relaxed) as i64,
        )?;
        gauge(
            e,
            "drifter_delivery_up",
            "1 while the load balancer accepts requests, 0 while the circuit is open.",
            i64::from(sources.retrier.delivery_up()),
        )?;
        gauge(
            e,
            "drifter_last_delivery_timestamp_seconds",
            "When the load balancer last accepted a request (0: never).",
            requests.last_delivery().unwrap_or(0.0),
        )?;
        let mut build = e.encode_descriptor(
            "drifter_build_info",
            "The version of drifter-rsyslog.",
            None,
            MetricType::Gauge,
        )?;
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        ConstGauge::new(1i64).encode(build.encode_family(&version)?)?;
        gauge(
            e,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch.",
            stats.started_at(),
        )?;
        let mut durations = e.encode_descriptor(
            "drifter_request_duration_seconds",
            "HTTP request durations, by outcome.",
            None,
            MetricType::Histogram,
        )?;
        for outcome in Outcome::ALL {
            let labels = [("outcome", outcome.label())];
            requests
                .durations(outcome)
                .encode(durations.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
