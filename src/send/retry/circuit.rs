//! One shared view of the endpoint's health, so that an outage costs one probe at a time
//! instead of every message retrying on its own timer, and no message can hold the others.
//!
//! - **Starting:** nothing answered yet. One message goes first and the rest wait for its
//!   answer, so a load balancer that is down at start-up sees one request, not a burst.
//! - **Up:** requests go out freely (the check is one atomic load).
//! - **Down** (after a failure that says the endpoint is failing): every message waits. One
//!   waiting worker holds the probe role and sends the neutral probe (`GET <path>`, never a
//!   message, so no message's own failure can keep the circuit open), spaced by a capped,
//!   jittered interval of its own ([`Backoff::probe_interval`]): delivery resumes within a few
//!   seconds of the endpoint's return however long the outage lasted.
//! - The first answer (accepted, or refused for good: the endpoint answers) closes it and wakes
//!   every waiting message at once.
//! - At the drain's last call the probe goes at once, and if it fails nothing else goes out:
//!   one attempt at the deadline, not one per waiting message.
//!
//! It also keeps the evidence for telling a request's own failure from an outage or a flaky
//! endpoint: how many answers and failures came, and how many failures since the latest answer
//! ([`Circuit::judge`]).
//!
//! The outage is logged once when it is first seen, and the recovery once.
//!
//! Over 400 lines with its tests (in paused time): the states and the probe's role are one
//! state machine.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::Backoff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Starting {
        /// The token of the message going first, if one is.
        first: Option<u64>,
    },
    Up,
    Down {
        /// The token of the worker holding the probe, if one does.
        prober: Option<u64>,
        /// Failed probes since the circuit opened: the probe interval's exponent.
        failures: u32,
        next_probe_at: Instant,
        /// The drain's last probe failed: nothing more goes out.
        stopped: bool,
    },
}

/// The endpoint's health as every worker sees it (Starting, Up, Down; see the module doc):
/// whether a request may go, who probes while it is down, and the counts of answers and
/// failures by which a request's own failure is told from an outage. Shared by all the
/// retrier's requests; its state is a watch channel (waiters wake on each change), its "up"
/// check one atomic load.
pub(super) struct Circuit {
    /// Mirrors `state == Up`, for the fast path.
    up: AtomicBool,
    state: watch::Sender<Health>,
    backoff: Backoff,
    next_token: AtomicU64,
    /// Answers so far (accepted or refused for good): the endpoint works.
    answers: AtomicU64,
    /// Retriable failures so far, of requests and of probes.
    failures: AtomicU64,
    /// Failures that say the endpoint is failing, since the latest answer.
    failing: AtomicU64,
    /// For the log lines.
    endpoint: String,
}

/// The right to go first or to probe, given back when dropped (a message that is cancelled or
/// settled while holding it hands it on to a waiting one).
pub(super) struct Role<'a> {
    circuit: &'a Circuit,
    token: u64,
}

/// How a message may go out.
pub(super) enum Admission<'a> {
    /// The endpoint is up: go.
    Go,
    /// Nothing has answered yet, and this message goes first.
    First(Role<'a>),
    /// The endpoint is down and this worker probes it (with the neutral request).
    Probe(Role<'a>),
    /// The drain's last probe failed: give up.
    Stopped,
}

/// What the probe holder's wait ended with.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ProbeTime {
    /// Time for the probe.
    Now,
    /// The circuit closed meanwhile (or the role passed on): no probe.
    Closed,
}

/// Where the endpoint's counts stood when a request was sent or last failed: what happened
/// since is the evidence for judging its next failure.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark {
    answers: u64,
    failures: u64,
}

/// Whose failure a retriable failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The endpoint answered others since the mark, more of them than failed, and nothing
    /// else failed since its latest answer: the failure is the request's alone, and counts
    /// towards `--max-attempts`.
    Own,
    /// As `Own`, but at least as many others failed: a flaky endpoint. The request's own
    /// backoff, and its count starts again, so a flaky endpoint never makes a message give up.
    Shared,
    /// Nothing says the endpoint works: an outage (if the failure says so).
    Endpoint,
}

impl Circuit {
    /// Starts with nothing answered: the first message goes, and the rest wait for its answer.
    pub(super) fn new(backoff: Backoff, endpoint: String) -> Self {
        Circuit {
            up: AtomicBool::new(false),
            state: watch::Sender::new(Health::Starting { first: None }),
            backoff,
            next_token: AtomicU64::new(0),
            answers: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            failing: AtomicU64::new(0),
            endpoint,
        }
    }

    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The counts now, to judge a later failure by what happened since.
    pub(super) fn mark(&self) -> Mark {
        Mark {
            answers: self.answers.load(Ordering::Acquire),
            failures: self.failures.load(Ordering::Acquire),
        }
    }

    /// Judges a retriable failure of a request by what happened since its `mark` (taken when
    /// it was sent, or when it last failed). Not the endpoint's when others were answered
    /// since and, for a failure that says the endpoint is failing (`outage`), it is the first
    /// such failure since the latest answer: one message that keeps failing while the rest get
    /// through leaves the circuit closed, while an outage, which fails every request, is seen
    /// at its second failure. Own, rather than shared, when the answers outnumber the other
    /// failures.
    pub(super) fn judge(&self, outage: bool, mark: Mark) -> Verdict {
        let failing_before = if outage {
            self.failing.fetch_add(1, Ordering::AcqRel)
        } else {
            0
        };
        let failed = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_sub(mark.failures);
        let answered = self
            .answers
            .load(Ordering::Acquire)
            .saturating_sub(mark.answers);
        if failing_before > 0 || answered == 0 {
            Verdict::Endpoint
        } else if answered > failed {
            Verdict::Own
        } else {
            Verdict::Shared
        }
    }

    /// Waits until this message may go: at once while up; else to go first, to probe, when
    /// the circuit closes, or when the drain's last probe has failed.
    pub(super) async fn admit(&self) -> Admission<'_> {
        // Subscribed before looking, so a change in between is not missed.
        let mut changes = self.state.subscribe();
        loop {
            let token = self.next_token.fetch_add(1, Ordering::Relaxed);
            let mut admission = None;
            // Taking a role is not a change the waiters care about: they are not notified.
            self.state.send_if_modified(|health| {
                let role = || Role {
                    circuit: self,
                    token,
                };
                admission = match health {
                    Health::Up => Some(Admission::Go),
                    Health::Starting { first } if first.is_none() => {
                        *first = Some(token);
                        Some(Admission::First(role()))
                    }
                    Health::Down { stopped: true, .. } => Some(Admission::Stopped),
                    Health::Down { prober, .. } if prober.is_none() => {
                        *prober = Some(token);
                        Some(Admission::Probe(role()))
                    }
                    Health::Starting { .. } | Health::Down { .. } => None,
                };
                false
            });
            if let Some(admission) = admission {
                return admission;
            }
            if changes.changed().await.is_err() {
                // The sender lives as long as the circuit: only reached at teardown.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until the probe's time, or less if the circuit closes first or `last_call` comes.
    pub(super) async fn wait_to_probe(
        &self,
        role: &Role<'_>,
        last_call: impl Future<Output = ()>,
    ) -> ProbeTime {
        tokio::pin!(last_call);
        let mut changes = self.state.subscribe();
        loop {
            let next_probe_at = match *changes.borrow_and_update() {
                Health::Down {
                    prober,
                    next_probe_at,
                    stopped: false,
                    ..
                } if prober == Some(role.token) => next_probe_at,
                _ => return ProbeTime::Closed,
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
        self.answers.fetch_add(1, Ordering::AcqRel);
        self.failing.store(0, Ordering::Release);
        if self.is_up() {
            return;
        }
        self.state.send_if_modified(|health| {
            match health {
                Health::Up => return false,
                Health::Down { .. } => {
                    tracing::info!(endpoint = %self.endpoint, "delivery recovered");
                }
                Health::Starting { .. } => {}
            }
            *health = Health::Up;
            self.up.store(true, Ordering::Release);
            true
        });
    }

    /// A request failed in a way that says the endpoint is failing, or the first request or a
    /// probe failed at all (`role`): open the circuit if it was not open, or, for the probe
    /// holder, set the next probe. Past the drain's `last_call`, nothing more goes out.
    pub(super) fn failed(
        &self,
        reason: &str,
        retry_after: Option<Duration>,
        role: Option<&Role<'_>>,
        last_call: bool,
    ) {
        let holds = |holder: Option<u64>| role.is_some_and(|role| holder == Some(role.token));
        self.state.send_if_modified(|health| match health {
            Health::Starting { first } if role.is_some() && !holds(*first) => false,
            Health::Up | Health::Starting { .. } => {
                tracing::warn!(endpoint = %self.endpoint, "delivery failing, probing until the load balancer answers: {reason}");
                *health = Health::Down {
                    prober: None,
                    failures: 0,
                    next_probe_at: Instant::now() + self.backoff.probe_interval(0, retry_after),
                    stopped: last_call,
                };
                self.up.store(false, Ordering::Release);
                true
            }
            Health::Down {
                prober,
                failures,
                next_probe_at,
                stopped,
            } => {
                if !holds(*prober) {
                    return false;
                }
                // A failed probe is evidence against the endpoint, as a request's failure is.
                self.failures.fetch_add(1, Ordering::AcqRel);
                *failures = failures.saturating_add(1);
                *next_probe_at = Instant::now() + self.backoff.probe_interval(*failures, retry_after);
                // Only the probe holder waits for the next probe, and it reads the state anew;
                // the others need waking only to give up.
                *stopped = last_call;
                last_call
            }
        });
    }
}

impl Drop for Role<'_> {
    fn drop(&mut self) {
        let token = self.token;
        self.circuit.state.send_if_modified(|health| match health {
            Health::Starting { first } if *first == Some(token) => {
                *first = None;
                // A waiting message goes first instead.
                true
            }
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

    #[derive(Debug, PartialEq, Eq)]
    enum Admitted {
        Go,
        First,
        Probe,
        Stopped,
    }

    /// What `admit` would return at once, if anything.
    fn admit_now(circuit: &Circuit) -> Option<Admitted> {
        let admitted = futures_util::FutureExt::now_or_never(circuit.admit())?;
        Some(match admitted {
            Admission::Go => Admitted::Go,
            Admission::First(_) => Admitted::First,
            Admission::Probe(_) => Admitted::Probe,
            Admission::Stopped => Admitted::Stopped,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn one_goes_first_then_one_probe_at_a_time_until_the_endpoint_answers() {
        let circuit = circuit();
        let Admission::First(first) = circuit.admit().await else {
            panic!("the first request goes first");
        };
        assert_eq!(admit_now(&circuit), None, "the others wait for its answer");
        circuit.failed("HTTP 502", None, Some(&first), false);
        drop(first);
        let Admission::Probe(role) = circuit.admit().await else {
            panic!("down: a waiting worker probes");
        };
        assert_eq!(admit_now(&circuit), None, "the others wait");
        circuit.failed("HTTP 502", None, Some(&role), false);
        assert_eq!(admit_now(&circuit), None, "still one probe");
        assert_eq!(circuit.wait_to_probe(&role, never()).await, ProbeTime::Now);
        circuit.answered();
        assert!(circuit.is_up());
        assert_eq!(admit_now(&circuit), Some(Admitted::Go), "everyone goes");
        assert_eq!(
            circuit.wait_to_probe(&role, never()).await,
            ProbeTime::Closed
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_role_is_taken_over_and_a_failure_reopens() {
        let circuit = circuit();
        let first = circuit.admit().await;
        assert_eq!(admit_now(&circuit), None);
        drop(first);
        assert_eq!(
            admit_now(&circuit),
            Some(Admitted::First),
            "the next goes first"
        );
        circuit.answered();
        circuit.failed("connection refused", None, None, false);
        assert!(!circuit.is_up(), "an outage failure opens it");
        let probe = circuit.admit().await;
        assert_eq!(admit_now(&circuit), None);
        drop(probe);
        assert_eq!(admit_now(&circuit), Some(Admitted::Probe));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_at_the_last_call_stops_everyone() {
        // Issue 21 item 16: one attempt at the drain deadline, not one per waiting message.
        let circuit = circuit();
        circuit.failed("HTTP 500", None, None, false);
        let Admission::Probe(role) = circuit.admit().await else {
            panic!("a waiting worker probes");
        };
        let waiting = circuit.admit();
        tokio::pin!(waiting);
        assert!(futures_util::poll!(&mut waiting).is_pending());
        let last_call = async {};
        assert_eq!(
            circuit.wait_to_probe(&role, last_call).await,
            ProbeTime::Now
        );
        circuit.failed("HTTP 500", None, Some(&role), true);
        assert!(matches!(waiting.await, Admission::Stopped));
        assert_eq!(admit_now(&circuit), Some(Admitted::Stopped));
        assert_eq!(
            circuit.wait_to_probe(&role, never()).await,
            ProbeTime::Closed,
            "no second probe"
        );
    }

    #[test]
    fn a_failure_is_a_requests_own_only_while_others_are_answered() {
        // Issue 21 item 3: one message failing while the rest get through is its own failure.
        let circuit = circuit();
        let mark = circuit.mark();
        assert_eq!(
            circuit.judge(true, mark),
            Verdict::Endpoint,
            "no answer yet"
        );
        let mark = circuit.mark();
        circuit.answered();
        assert_eq!(circuit.judge(true, mark), Verdict::Own, "others answered");
        assert_eq!(
            circuit.judge(true, mark),
            Verdict::Endpoint,
            "a second failure in a row is an outage"
        );
        assert_eq!(
            circuit.judge(false, mark),
            Verdict::Shared,
            "a 429 while others were answered, as many as failed"
        );
        let mark = circuit.mark();
        assert_eq!(circuit.judge(false, mark), Verdict::Endpoint, "none since");
        let mark = circuit.mark();
        circuit.answered();
        assert_eq!(
            circuit.judge(true, mark),
            Verdict::Own,
            "an answer resets the run"
        );
    }

    #[test]
    fn on_a_flaky_endpoint_no_failure_is_a_requests_own() {
        // Issue 21 item 3: only a message failing while the others mostly get through is
        // counted towards --max-attempts; one failing as often as the rest is not.
        let circuit = circuit();
        let mark = circuit.mark();
        // Two of every three requests fail.
        for _ in 0..3 {
            circuit.answered();
            circuit.judge(true, circuit.mark());
            circuit.judge(true, circuit.mark());
        }
        circuit.answered();
        assert_eq!(circuit.judge(true, mark), Verdict::Shared);
    }
}
