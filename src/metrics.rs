//! `--metrics-listen` for both `send` and `mock-elb`: `/metrics` in Prometheus text format
//! (or OpenMetrics when asked), `/healthz` and `/readyz`, served by hyper on a listener bound
//! before anything else happens. Each command brings its own `prometheus-client` collector,
//! which reads the counters the command keeps anyway at scrape time.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::shutdown::{Shutdown, Tasks};

/// Lowest and highest status code counted by code.
const FIRST_STATUS: u16 = 100;
const LAST_STATUS: u16 = 599;

/// Responses counted by status code, for a `{code}` label: one atomic per code, so that
/// counting costs no lookup.
#[derive(Debug)]
pub(crate) struct StatusCounts(Vec<AtomicU64>);

impl Default for StatusCounts {
    fn default() -> Self {
        StatusCounts(
            (FIRST_STATUS..=LAST_STATUS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        )
    }
}

impl StatusCounts {
    pub(crate) fn count(&self, status: u16) {
        if let Some(counter) = status
            .checked_sub(FIRST_STATUS)
            .and_then(|i| self.0.get(usize::from(i)))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The codes seen so far, with their counts, as label values.
    pub(crate) fn seen(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        (FIRST_STATUS..=LAST_STATUS)
            .zip(&self.0)
            .map(|(code, counter)| (code, counter.load(Ordering::Relaxed)))
            .filter(|&(_, count)| count > 0)
            .map(|(code, count)| (code.to_string(), count))
    }
}

/// Where the process is in its life, for `/healthz` and `/readyz`.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    /// Started up (after `--probe` when it is given).
    ready: AtomicBool,
    /// Reading has stopped; what was read is being delivered.
    draining: AtomicBool,
    /// Tasks that must all be running (`send`'s delivery workers): how many run, of how many.
    tasks: std::sync::OnceLock<(Arc<AtomicUsize>, usize)>,
}

impl Lifecycle {
    pub(crate) fn started(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub(crate) fn draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Unhealthy once fewer than `expected` of the tasks counted by `running` run.
    pub(crate) fn watch_tasks(&self, running: Arc<AtomicUsize>, expected: usize) {
        let _ = self.tasks.set((running, expected));
    }

    fn healthy(&self) -> bool {
        let tasks_run = self
            .tasks
            .get()
            .is_none_or(|(running, expected)| running.load(Ordering::Acquire) >= *expected);
        tasks_run && !self.draining.load(Ordering::Acquire)
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.healthy()
    }
}

/// Serves the three paths on `listener` until the run is done.
pub(crate) fn serve(
    listener: std::net::TcpListener,
    registry: Registry,
    lifecycle: Arc<Lifecycle>,
    shutdown: &Shutdown,
) {
    let registry = Arc::new(registry);
    // A scrape still open when the run is done is cut off, as the process's exit would.
    let connections = Tasks::default();
    shutdown.close_at_join(&connections);
    shutdown.spawn(async move {
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(listener))
        {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!("cannot serve metrics: {e}");
                return;
            }
        };
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (registry, lifecycle) = (registry.clone(), lifecycle.clone());
            connections.spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    // Prometheus asks for OpenMetrics; other readers (promtool, curl) get the
                    // classic text format.
                    let wants_openmetrics = request
                        .headers()
                        .get_all(header::ACCEPT)
                        .iter()
                        .any(|v| v.to_str().is_ok_and(|v| v.contains("openmetrics")));
                    let response = answer(
                        request.uri().path(),
                        wants_openmetrics,
                        &registry,
                        &lifecycle,
                    );
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// Binds `--metrics-listen` before anything else happens, so a bad address is a
/// configuration error.
pub(crate) fn bind(address: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)
        .map_err(|e| anyhow::anyhow!("cannot listen on --metrics-listen {address}: {e}"))?;
    // With port 0 this is the only place the port is told (tests, ad-hoc runs).
    if let Ok(bound) = listener.local_addr() {
        tracing::info!("metrics on http://{bound}/metrics");
    }
    Ok(listener)
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn answer(
    path: &str,
    wants_openmetrics: bool,
    registry: &Registry,
    lifecycle: &Lifecycle,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, registry) {
                Ok(()) if wants_openmetrics => (StatusCode::OK, OPENMETRICS, text),
                Ok(()) => (StatusCode::OK, PROMETHEUS_TEXT, prometheus_text(&text)),
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "cannot encode the metrics\n".into(),
                ),
            }
        }
        "/healthz" => health(lifecycle.healthy(), "draining"),
        "/readyz" if !lifecycle.healthy() => health(false, "draining"),
        "/readyz" => health(lifecycle.ready(), "starting"),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// OpenMetrics text as the classic Prometheus text format (0.0.4): a counter family is named
/// there by its `_total` samples, and there is no `# EOF`.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let header = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match header {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                text.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
            }
            None => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text
}

fn health(ok: bool, why_not: &str) -> (StatusCode, &'static str, String) {
    if ok {
        (StatusCode::OK, "text/plain", "ok\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!("{why_not}\n"),
        )
    }
}

pub(crate) fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

pub(crate) fn gauge<V>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: V,
) -> fmt::Result
where
    ConstGauge<V>: EncodeMetric,
{
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

/// A counter with one label, one series per `(label value, count)`.
pub(crate) fn labelled_counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &'static str,
    series: impl IntoIterator<Item = (String, u64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in series {
        let labels = [(label, value)];
        ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}
