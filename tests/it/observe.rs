//! What a test can observe of a running `send` besides its stderr and the requests that
//! arrive: how much of its stdin it has read, and its own counters on `--metrics-listen`.
//! Tests wait on these instead of sleeping.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::support;

/// Bytes written to a pipe and not yet read by the other end (FIONREAD, which Linux answers on
/// either end of a pipe).
pub fn unread_in_pipe(pipe: &impl AsRawFd) -> usize {
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points at `unread`.
    let result = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut unread) };
    assert_eq!(result, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    usize::try_from(unread).expect("a count")
}

/// The `/metrics` and `/readyz` of a program started with `--metrics-listen 127.0.0.1:0`.
pub struct Metrics(pub SocketAddr);

impl Metrics {
    /// The address the program logged (`metrics on http://ADDR/metrics`).
    pub async fn of(watched: &support::Watched) -> Self {
        Metrics(watched.metrics_address().await)
    }

    /// The sum of the samples named `name` (any labels; a counter's name ends in `_total`).
    pub async fn value(&self, name: &str) -> f64 {
        let (status, text) = support::http_get(self.0, "/metrics").await;
        assert_eq!(status, 200, "/metrics: {text}");
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let rest = line.strip_prefix(name)?;
                let value = if rest.starts_with('{') {
                    rest.rsplit_once("} ")?.1
                } else {
                    rest.strip_prefix(' ')?
                };
                value.trim().parse::<f64>().ok()
            })
            .sum()
    }

    /// Waits up to `limit` for the sum of `name` to reach `at_least`.
    pub async fn reaches(&self, name: &str, at_least: f64, limit: Duration) {
        let reached =
            support::eventually_async(limit, || async { self.value(name).await >= at_least }).await;
        assert!(
            reached,
            "{name} is {} after {limit:?}, not yet {at_least}",
            self.value(name).await
        );
    }

    /// Waits up to `limit` for `/readyz` to answer 200: the program has started and reads.
    pub async fn ready(&self, limit: Duration) {
        let ready = support::eventually_async(limit, || async {
            support::http_get(self.0, "/readyz").await.0 == 200
        })
        .await;
        assert!(ready, "/readyz did not answer 200 within {limit:?}");
    }
}
