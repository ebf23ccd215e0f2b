//! One shared view of the endpoint's health, so that an outage costs one probe at a time
//! instead of every message retrying on its own timer.
//!
//! - **Up:** requests go out freely (the check is one atomic load).
//! - **Down** (at start, until the first answer, and after a failure that says the endpoint is
//!   failing): one message at a time holds the probe; it alone has a timer, and it tries at
//!   the times the capped, jittered backoff gives. Every other message waits on the circuit.
//! - The first accepted (or permanently refused: the endpoint answers) request closes it and
//!   wakes every waiting message at once; the probe holder, too, goes at once.
//!
//! The outage is logged once when it is first seen, and the recovery once.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::Backoff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Up,
    Down {
        /// The token of the message holding the probe, if one does.
        prober: Option<u64>,
        /// Failed probes since the circuit opened: the backoff's exponent.
        failures: u32,
        next_probe_at: Instant,
        /// Whether the outage was logged (not yet at start: nothing failed then).
        reported: bool,
    },
}

pub(super) struct Circuit {
    /// Mirrors `state == Up`, for the fast path.
    up: AtomicBool,
    state: watch::Sender<Health>,
    backoff: Backoff,
    next_token: AtomicU64,
    /// For the log lines.
    endpoint: String,
}

/// The right to send the probe, given back when dropped (a probe that is cancelled or
/// settled while the endpoint is still down hands the probe on).
pub(super) struct ProbeRole<'a> {
    circuit: &'a Circuit,
    token: u64,
}

/// How a message may go out.
pub(super) enum Admission<'a> {
    /// The endpoint is up (or the drain's last call came): go.
    Go,
    /// The endpoint is down and this message probes it.
    Probe(ProbeRole<'a>),
}

/// What the probe holder's wait ended with.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ProbeTime {
    /// Time for the probe.
    Now,
    /// The circuit closed meanwhile (or the probe passed to another message): go as an
    /// ordinary request.
    Closed,
}

impl Circuit {
    /// Starts down, unreported: the first request probes, and the rest wait for its answer.
    pub(super) fn new(backoff: Backoff, endpoint: String) -> Self {
        Circuit {
            up: AtomicBool::new(false),
            state: watch::Sender::new(Health::Down {
                prober: None,
                failures: 0,
                next_probe_at: Instant::now(),
                reported: false,
            }),
            backoff,
            next_token: AtomicU64::new(0),
            endpoint,
        }
    }

    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Waits until this message may go: at once while up; while down, as the probe or when
    /// the circuit closes. `last_call` ends the wait (the drain's last attempt).
    pub(super) async fn admit(&self, last_call: impl Future<Output = ()>) -> Admission<'_> {
        tokio::pin!(last_call);
        let mut changes = self.state.subscribe();
        loop {
            let token = self.next_token.fetch_add(1, Ordering::Relaxed);
            let mut admission = None;
            // Not a change the waiters care about: they are not notified.
            self.state.send_if_modified(|health| {
                match health {
                    Health::Up => admission = Some(Admission::Go),
                    Health::Down { prober, .. } if prober.is_none() => {
                        *prober = Some(token);
                        admission = Some(Admission::Probe(ProbeRole {
                            circuit: self,
                            token,
                        }));
                    }
                    Health::Down { .. } => {}
                }
                false
            });
            if let Some(admission) = admission {
                return admission;
            }
            tokio::select! {
                // The sender lives as long as the circuit.
                _ = changes.changed() => {}
                () = &mut last_call => return Admission::Go,
            }
        }
    }

    /// Waits until the probe's time, or less if the circuit closes first or `last_call` comes.
    pub(super) async fn wait_to_probe(
        &self,
        role: &ProbeRole<'_>,
        last_call: impl Future<Output = ()>,
    ) -> ProbeTime {
        tokio::pin!(last_call);
        let mut changes = self.state.subscribe();
        loop {
            let next_probe_at = match *changes.borrow_and_update() {
                Health::Up => return ProbeTime::Closed,
                // The circuit closed and opened again meanwhile: the probe is someone else's.
                Health::Down { prober, .. } if prober != Some(role.token) => {
                    return ProbeTime::Closed;
                }
                Health::Down { next_probe_at, .. } => next_probe_at,
            };
            tokio::select! {
                () = tokio::time::sleep_until(next_probe_at) => return ProbeTime::Now,
                _ = changes.changed() => {}
                () = &mut last_call => return ProbeTime::Now,
            }
        }
    }

    /// The endpoint answered (an accepted or a permanent status): close the circuit.
    pub(super) fn answered(&self) {
        if self.is_up() {
            return;
        }
        self.state.send_if_modified(|health| {
            let Health::Down { reported, .. } = *health else {
                return false;
            };
            if reported {
                tracing::info!(endpoint = %self.endpoint, "delivery recovered");
            }
            *health = Health::Up;
            self.up.store(true, Ordering::Release);
            true
        });
    }

    /// A request failed in a way that says the endpoint is failing (or a probe failed at
    /// all): open the circuit if it was closed, or, for the probe holder, set the next probe.
    pub(super) fn failed(
        &self,
        reason: &str,
        retry_after: Option<Duration>,
        role: Option<&ProbeRole<'_>>,
    ) {
        self.state.send_if_modified(|health| match health {
            Health::Up => {
                tracing::warn!(endpoint = %self.endpoint, "delivery failing, retrying with backoff: {reason}");
                *health = Health::Down {
                    prober: None,
                    failures: 0,
                    next_probe_at: Instant::now() + self.backoff.delay(0, retry_after),
                    reported: true,
                };
                self.up.store(false, Ordering::Release);
                true
            }
            Health::Down {
                prober,
                failures,
                next_probe_at,
                reported,
            } => {
                if role.is_none_or(|role| *prober != Some(role.token)) {
                    return false;
                }
                if !*reported {
                    tracing::warn!(endpoint = %self.endpoint, "delivery failing, retrying with backoff: {reason}");
                    *reported = true;
                }
                *failures = failures.saturating_add(1);
                *next_probe_at = Instant::now() + self.backoff.delay(*failures, retry_after);
                // Only the probe holder waits for this, and it reads the state anew.
                false
            }
        });
    }
}

impl Drop for ProbeRole<'_> {
    fn drop(&mut self) {
        let token = self.token;
        self.circuit.state.send_if_modified(|health| match health {
            Health::Down { prober, .. } if *prober == Some(token) => {
                *prober = None;
                // A waiting message takes the probe over.
                true
            }
            _ => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circuit() -> Circuit {
        let backoff = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
        };
        Circuit::new(backoff, "http://test/".into())
    }

    fn never() -> std::future::Pending<()> {
        std::future::pending()
    }

    /// Whether `admit` would return at once, and with a probe.
    fn admit_now(circuit: &Circuit) -> Option<bool> {
        let admitted = futures_util::FutureExt::now_or_never(circuit.admit(never()))?;
        Some(matches!(admitted, Admission::Probe(_)))
    }

    #[tokio::test]
    async fn one_probe_at_a_time_until_the_endpoint_answers() {
        let circuit = circuit();
        let Admission::Probe(role) = circuit.admit(never()).await else {
            panic!("the first request probes");
        };
        assert_eq!(admit_now(&circuit), None, "the others wait");
        circuit.failed("HTTP 502", None, Some(&role));
        assert_eq!(admit_now(&circuit), None, "still one probe");
        assert_eq!(circuit.wait_to_probe(&role, never()).await, ProbeTime::Now);
        circuit.answered();
        assert!(circuit.is_up());
        assert_eq!(admit_now(&circuit), Some(false), "everyone goes");
        assert_eq!(
            circuit.wait_to_probe(&role, never()).await,
            ProbeTime::Closed
        );
    }

    #[tokio::test]
    async fn a_dropped_probe_is_taken_over_and_a_failure_reopens() {
        let circuit = circuit();
        let first = circuit.admit(never()).await;
        assert_eq!(admit_now(&circuit), None);
        drop(first);
        assert_eq!(admit_now(&circuit), Some(true), "the next message probes");
        circuit.answered();
        circuit.failed("connection refused", None, None);
        assert!(!circuit.is_up(), "an outage failure opens it");
        assert_eq!(admit_now(&circuit), Some(true));
    }
}
