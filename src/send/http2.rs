//! HTTP/2 connections to one endpoint, shared by the requests in flight: each carries as many
//! requests at once as the server's `SETTINGS_MAX_CONCURRENT_STREAMS` allows, and another is
//! opened only when every open one is full, so `--concurrency` requests use
//! `ceil(concurrency / limit)` connections.
//!
//! Which requests a connection did not process (a `GOAWAY`, a `REFUSED_STREAM`) is decided
//! here, from h2's errors as hyper passes them on.

use std::future::{Future, poll_fn};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper_util::rt::TokioTimer;
use tokio::time::Instant;

use super::proxy::Stream;
use crate::shutdown::Tasks;

type Sender = http2::SendRequest<Empty<Bytes>>;

/// Pings on a connection, idle or not, well within the load balancer's 60 s idle timeout; a
/// connection whose ping is not answered in time is closed.
const PING_INTERVAL: Duration = Duration::from_secs(20);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// An open connection: its requests' way in, and the server's stream limit as last seen.
pub(super) struct Opened {
    sender: Sender,
    limit: Arc<AtomicUsize>,
}

/// Opens HTTP/2 on a stream on which TLS negotiated `h2`; the connection's I/O runs in its
/// own task, which ends when the server closes the connection or every sender is dropped.
/// That task and hyper's own for each request are owned by `tasks`.
pub(super) async fn handshake(stream: Stream, tasks: &Tasks) -> Result<Opened, hyper::Error> {
    let (sender, driver) = http2::Builder::new(tasks.clone())
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .keep_alive_while_idle(true)
        .handshake(stream)
        .await?;
    // Before the server's SETTINGS arrive hyper allows 100 streams; the limit is read back
    // from the connection (only it knows the settings) each time it makes progress.
    let limit = Arc::new(AtomicUsize::new(driver.current_max_send_streams()));
    let seen = limit.clone();
    let mut driver = Box::pin(driver);
    tasks.spawn(async move {
        let ended = poll_fn(|cx| {
            let polled = driver.as_mut().poll(cx);
            seen.store(driver.current_max_send_streams(), Ordering::Relaxed);
            polled
        })
        .await;
        if let Err(e) = ended {
            tracing::debug!("HTTP/2 connection closed: {e}");
        }
    });
    Ok(Opened { sender, limit })
}

/// `--http`: which HTTP versions `send` speaks to an `https://` endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HttpVersion {
    /// HTTP/2 when the server offers it by ALPN, else HTTP/1.1.
    Auto,
    /// HTTP/1.1 only (no ALPN offered).
    #[value(name = "1.1")]
    Http1,
    /// HTTP/2 only: an endpoint that does not offer it is a configuration error.
    #[value(name = "2")]
    Http2,
}

/// The open connections, and one being opened at a time.
pub(super) struct Pool {
    lanes: Mutex<Vec<Arc<Lane>>>,
    /// A connection without a request for this long is closed rather than reused, as over
    /// HTTP/1.1: never race the load balancer's idle timeout.
    idle_timeout: Duration,
    /// Held while a connection is opened: the requests that arrive meanwhile wait for it
    /// rather than each opening its own.
    opening: tokio::sync::Mutex<()>,
}

struct Lane {
    sender: Sender,
    limit: Arc<AtomicUsize>,
    in_flight: AtomicUsize,
    /// The server said it will take no new request here (`GOAWAY`), or the connection failed.
    retired: AtomicBool,
    /// When its last request ended.
    idle_since: Mutex<Instant>,
}

/// A request's place on a connection, given back when dropped.
pub(super) struct Slot(Arc<Lane>);

impl Slot {
    pub(super) fn sender(&self) -> Sender {
        self.0.sender.clone()
    }

    /// The connection takes no more requests: the next ones go on another.
    pub(super) fn retire(&self) {
        self.0.retired.store(true, Ordering::Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            *self
                .0
                .idle_since
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
        }
    }
}

/// Why the server did not process a request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Unprocessed {
    /// The connection takes no more requests (`GOAWAY`, closing): another one is needed.
    ConnectionGone,
    /// This stream was refused (`REFUSED_STREAM`); the connection still serves.
    StreamRefused,
}

impl Pool {
    pub(super) fn new(idle_timeout: Duration) -> Self {
        Pool {
            lanes: Mutex::default(),
            idle_timeout,
            opening: tokio::sync::Mutex::default(),
        }
    }

    /// A place on an open connection with a stream to spare, or on a new one from `open`.
    pub(super) async fn slot<F, Fut, E>(&self, open: F) -> Result<Slot, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Opened, E>>,
    {
        if let Some(slot) = self.take() {
            return Ok(slot);
        }
        let _opening = self.opening.lock().await;
        if let Some(slot) = self.take() {
            return Ok(slot);
        }
        let opened = open().await?;
        let lane = Arc::new(Lane {
            sender: opened.sender,
            limit: opened.limit,
            in_flight: AtomicUsize::new(1),
            retired: AtomicBool::new(false),
            idle_since: Mutex::new(Instant::now()),
        });
        self.lock().push(lane.clone());
        Ok(Slot(lane))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Lane>>> {
        self.lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self) -> Option<Slot> {
        let mut lanes = self.lock();
        // Slots are only taken under this lock, so an idle lane stays idle while it is looked at.
        lanes.retain(|lane| {
            let idle_too_long = || {
                lane.in_flight.load(Ordering::Relaxed) == 0
                    && lane
                        .idle_since
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .elapsed()
                        >= self.idle_timeout
            };
            !lane.retired.load(Ordering::Relaxed) && !lane.sender.is_closed() && !idle_too_long()
        });
        lanes.iter().find_map(|lane| {
            let limit = lane.limit.load(Ordering::Relaxed).max(1);
            lane.in_flight
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < limit).then_some(n + 1)
                })
                .ok()
                .map(|_| Slot(lane.clone()))
        })
    }
}

/// Whether the server certainly did not process the request, so it may be sent again
/// without counting as a failure: hyper handed it back before it went out (`is_canceled`:
/// the connection was closing), the stream was refused (`REFUSED_STREAM`, RFC 9113 §8.7), or
/// a `GOAWAY` named it unprocessed, whatever its error code (§6.8).
///
/// h2 fails with the `GOAWAY`'s own error only the streams above the frame's last stream id,
/// and the requests started on that connection after it. Those at or below it, which the
/// server may have processed, either get their response or fail later with the connection's
/// close (an I/O error) or their own `RST_STREAM`: not unprocessed, so retried under the
/// usual rules and counted, as after a timeout. A test holds h2 to this
/// (`after_a_goaway_with_an_error_the_streams_it_may_have_processed_count_as_retries`).
pub(super) fn unprocessed(error: &hyper::Error) -> Option<Unprocessed> {
    if error.is_canceled() {
        return Some(Unprocessed::ConnectionGone);
    }
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return if h2.is_go_away() && h2.is_remote() {
                Some(Unprocessed::ConnectionGone)
            } else if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                Some(Unprocessed::StreamRefused)
            } else {
                None
            };
        }
        cause = error.source();
    }
    None
}
