//! Where retry is decided, and only here: how an answer is classified (accepted, worth
//! retrying, permanent), how long to wait before the next attempt, when to stop trying (the
//! drain deadline, a confirming caller's own deadline, a cancelled caller), and whether an
//! undelivered message goes back to rsyslog to be retried there. (How a failed commit is paced
//! for rsyslog's own replay is the protocol's, in `omprog`.)
//!
//! While the endpoint fails, the [`circuit`] lets one probe out at a time and holds every other
//! message until the endpoint answers again; a failure that is a request's own (408, 429, a
//! 5xx while others get through) has the request's own capped, jittered backoff. A permanent
//! answer ends its message at once. The outage and the recovery are logged once each.
//!
//! It is one module of over 400 lines (with its tests) on purpose: every rule about trying
//! again is here, so that none hides elsewhere; only the circuit's state machine has a file of
//! its own.

mod circuit;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use super::client::Client;
use super::endpoint::StatusSet;
use super::pipeline::Ack;
use super::stats::Stats;
use circuit::{Admission, Circuit, ProbeTime};

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Attempt {
    /// The load balancer answered with an accepted status: the request is in its access log.
    Accepted,
    /// Worth trying again later: connection errors, timeouts, 408, 429, other 5xx.
    Retry {
        reason: String,
        after: Option<Duration>,
        /// The failure says the endpoint is failing (no connection, no answer in time, a 5xx),
        /// not only this request (408, 429): it opens the circuit.
        outage: bool,
    },
    /// Trying again would get the same answer: other statuses (4xx, redirects).
    Permanent { reason: String },
}

/// Sorts a response status the way Vector's HTTP sinks do: accepted, retriable or permanent.
pub(super) fn classify(
    status: StatusCode,
    accept: &StatusSet,
    retry_after: Option<Duration>,
) -> Attempt {
    if accept.contains(status) {
        return Attempt::Accepted;
    }
    let reason = format!("HTTP {status}");
    let own = status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS;
    if own || status.is_server_error() {
        Attempt::Retry {
            reason,
            after: retry_after,
            outage: !own,
        }
    } else {
        Attempt::Permanent { reason }
    }
}

/// Capped exponential backoff with full jitter: the n-th retry waits a uniformly random time
/// between zero and `min(max, initial * 2^n)`, so many senders recovering from one outage
/// spread out instead of arriving together.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub(super) fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(1u32 << retry.min(31))
            .min(self.max);
        let jittered = ceiling.mul_f64(fastrand::f64());
        match retry_after {
            Some(hint) => jittered.max(hint.min(self.max)),
            None => jittered,
        }
    }
}

/// Why a message was not delivered.
#[derive(Debug)]
pub(super) enum Failure {
    /// The load balancer answered with a permanent status.
    Rejected(String),
    DrainPassed,
    /// A confirming caller's deadline passed; the latest retriable failure, if any.
    GaveUp(Option<String>),
    Cancelled,
}

impl Failure {
    pub(super) fn reason(&self) -> String {
        match self {
            Failure::Rejected(reason) => format!("rejected by the load balancer: {reason}"),
            Failure::DrainPassed => "not delivered before the drain deadline".into(),
            Failure::GaveUp(Some(last)) => format!("not delivered in time: {last}"),
            Failure::GaveUp(None) => "not delivered in time".into(),
            Failure::Cancelled => "cancelled".into(),
        }
    }
}

/// What becomes of a message that was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Back to its confirming caller (rsyslog), which keeps it and sends it again.
    HandBack,
    /// Into the dead-letter file if there is one, else counted lost; a confirming caller is
    /// told it is done.
    Settle,
}

/// Decides what becomes of an undelivered message. A confirming caller gets every message
/// back, except a rejected one when there is a dead-letter file: retrying a rejection cannot
/// help, so it is kept there and confirmed, rather than have rsyslog send it again forever.
pub(crate) fn after_failure(
    failure: &Failure,
    confirming: bool,
    has_dead_letter: bool,
) -> AfterFailure {
    match failure {
        _ if !confirming => AfterFailure::Settle,
        Failure::Rejected(_) if has_dead_letter => AfterFailure::Settle,
        _ => AfterFailure::HandBack,
    }
}

/// The latest retriable failure of a message's requests, for the report when it is given up.
#[derive(Default)]
pub(super) struct LastFailure(std::sync::Mutex<Option<String>>);

impl LastFailure {
    fn set(&self, reason: String) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(reason);
    }

    fn take(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

/// Attempts against one endpoint: every request of every worker goes through here.
pub(super) struct Retrier {
    client: Client,
    /// Requests in flight across all workers: the fragments of one long message share it
    /// with everything else, so `--concurrency` holds however messages are cut.
    requests: Semaphore,
    backoff: Backoff,
    circuit: Circuit,
    /// When the drain gives each message its last attempt; `None` until the drain starts.
    last_call: watch::Sender<Option<Instant>>,
    stats: Arc<Stats>,
}

impl Retrier {
    pub(super) fn new(
        client: Client,
        concurrency: usize,
        backoff: Backoff,
        stats: Arc<Stats>,
    ) -> Self {
        let circuit = Circuit::new(backoff, client.endpoint().to_string());
        Retrier {
            client,
            requests: Semaphore::new(concurrency.max(1)),
            backoff,
            circuit,
            last_call: watch::Sender::new(None),
            stats,
        }
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the circuit is closed: the load balancer accepts requests.
    pub(super) fn delivery_up(&self) -> bool {
        self.circuit.is_up()
    }

    /// The drain ends at `deadline`: no wait runs past it, and every waiting message gets a
    /// last attempt early enough to be answered (one request timeout, or a quarter of the
    /// drain if that is shorter) before it.
    pub(super) fn drain_until(&self, deadline: Instant, drain_timeout: Duration) {
        let margin = self.client.request_timeout().min(drain_timeout / 4);
        self.last_call.send_replace(Some(deadline - margin));
    }

    fn past_last_call(&self) -> bool {
        self.last_call
            .borrow()
            .is_some_and(|last_call| Instant::now() >= last_call)
    }

    /// Resolves at the drain's last call (never before the drain starts).
    fn last_call(&self) -> impl Future<Output = ()> + use<> {
        let mut last_call = self.last_call.subscribe();
        async move {
            let Ok(at) = last_call.wait_for(Option::is_some).await.map(|at| *at) else {
                return std::future::pending().await;
            };
            if let Some(at) = at {
                tokio::time::sleep_until(at).await;
            }
        }
    }

    /// Sleeps `delay`, or less if the drain's last call comes first.
    async fn sleep(&self, delay: Duration) {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.last_call() => {}
        }
    }

    /// One request, retried until accepted or rejected for good. While the circuit is open,
    /// the request waits on it (or, as the probe, tries at the circuit's times); a failure of
    /// its own (408, 429, or a 5xx while others get through) has its own backoff, with
    /// `Retry-After` honoured. The latest retriable failure is kept for the report if the
    /// caller gives up.
    pub(super) async fn until_accepted(
        &self,
        line_number: u64,
        target: String,
        last_failure: &LastFailure,
    ) -> Result<(), Failure> {
        let target = Client::request_target(target).map_err(Failure::Rejected)?;
        let mut retry = 0u32;
        let mut probe = None;
        loop {
            // The common case, the circuit closed, costs one atomic load.
            if probe.is_none()
                && !self.circuit.is_up()
                && let Admission::Probe(role) = self.circuit.admit(self.last_call()).await
            {
                probe = Some(role);
            }
            if let Some(role) = &probe
                && self.circuit.wait_to_probe(role, self.last_call()).await == ProbeTime::Closed
            {
                probe = None;
            }
            let attempt = {
                let Ok(_slot) = self.requests.acquire().await else {
                    return Err(Failure::Cancelled);
                };
                self.client.attempt(&target).await
            };
            let (reason, after, outage) = match attempt {
                Attempt::Accepted => {
                    self.circuit.answered();
                    return Ok(());
                }
                Attempt::Permanent { reason } => {
                    self.circuit.answered();
                    return Err(Failure::Rejected(reason));
                }
                Attempt::Retry {
                    reason,
                    after,
                    outage,
                } => (reason, after, outage),
            };
            if outage || probe.is_some() {
                self.circuit.failed(&reason, after, probe.as_ref());
            }
            last_failure.set(reason);
            if self.past_last_call() {
                // That was the last attempt.
                return Err(Failure::DrainPassed);
            }
            Stats::add(&self.stats.retries, 1);
            if probe.is_some() {
                // The circuit says when the probe goes next.
                continue;
            }
            let delay = self.backoff.delay(retry, after);
            tracing::debug!(line = line_number, retry, ?delay, "will retry");
            self.sleep(delay).await;
            retry = retry.saturating_add(1);
        }
    }

    /// `--probe`: sends `GET <path>` (no query string, so it is never decoded as a message)
    /// until the load balancer answers with an accepted status. Connection errors and
    /// retriable statuses are retried with `backoff` for as long as the caller waits; a
    /// permanent answer (404, 403, a redirect) means the URL is wrong and is returned at once.
    pub(super) async fn probe(&self) -> Result<(), String> {
        let target = Client::request_target(self.client.endpoint().path().to_string())?;
        let mut retry = 0;
        loop {
            match self.client.attempt(&target).await {
                Attempt::Accepted => {
                    self.circuit.answered();
                    return Ok(());
                }
                Attempt::Permanent { reason } => {
                    return Err(format!(
                        "probe of {} failed: {reason}",
                        self.client.endpoint()
                    ));
                }
                Attempt::Retry { reason, after, .. } => {
                    if retry == 0 {
                        tracing::warn!(endpoint = %self.client.endpoint(), "probe failed, retrying until the load balancer answers: {reason}");
                    }
                    tokio::time::sleep(self.backoff.delay(retry, after)).await;
                    retry = retry.saturating_add(1);
                }
            }
        }
    }
}

/// Runs `delivery` until it settles, or until the first limit on trying passes: the drain
/// deadline (`abort`), the caller's own deadline (`give_up_at`), or the caller going away.
pub(super) async fn within_limits(
    delivery: impl Future<Output = Result<(), Failure>>,
    abort: &mut watch::Receiver<bool>,
    ack: Option<&mut Ack>,
    last_failure: &LastFailure,
) -> Result<(), Failure> {
    let give_up_at = ack.as_ref().and_then(|ack| ack.give_up_at);
    enum Ended {
        Done(Result<(), Failure>),
        Aborted,
        GaveUp,
        Cancelled,
    }
    let ended = tokio::select! {
        result = delivery => Ended::Done(result),
        () = wait_for_abort(abort) => Ended::Aborted,
        () = sleep_until_or_never(give_up_at) => Ended::GaveUp,
        () = closed_or_never(ack) => Ended::Cancelled,
    };
    match ended {
        Ended::Done(result) => result,
        Ended::Aborted => Err(Failure::DrainPassed),
        Ended::GaveUp => Err(Failure::GaveUp(last_failure.take())),
        Ended::Cancelled => Err(Failure::Cancelled),
    }
}

async fn wait_for_abort(abort: &mut watch::Receiver<bool>) {
    if abort.wait_for(|aborted| *aborted).await.is_err() {
        // The pipeline outlives its workers, so this is only reached at teardown.
        std::future::pending::<()>().await;
    }
}

async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn closed_or_never(ack: Option<&mut Ack>) {
    match ack {
        Some(ack) => ack.reply.closed().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_rejection_with_a_dead_letter_file_is_not_handed_back() {
        let rejected = Failure::Rejected("HTTP 404".into());
        let drained = Failure::DrainPassed;
        assert_eq!(after_failure(&rejected, true, true), AfterFailure::Settle);
        assert_eq!(
            after_failure(&rejected, true, false),
            AfterFailure::HandBack
        );
        assert_eq!(after_failure(&drained, true, true), AfterFailure::HandBack);
        for failure in [&rejected, &drained] {
            assert_eq!(after_failure(failure, false, true), AfterFailure::Settle);
        }
    }

    #[test]
    fn classification() {
        let accept: StatusSet = "503".parse().expect("valid");
        let class = |code: u16| {
            classify(
                StatusCode::from_u16(code).expect("valid code"),
                &accept,
                None,
            )
        };
        assert_eq!(class(503), Attempt::Accepted);
        for code in [408, 429, 500, 502, 504] {
            assert!(matches!(class(code), Attempt::Retry { .. }), "{code}");
        }
        for code in [200, 301, 400, 403, 404, 414] {
            assert!(matches!(class(code), Attempt::Permanent { .. }), "{code}");
        }
    }

    #[test]
    fn backoff_is_capped_and_honours_retry_after() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for retry in 0..64 {
            let ceiling = Duration::from_millis(100 << retry.min(5)).min(Duration::from_secs(2));
            assert!(backoff.delay(retry, None) <= ceiling);
        }
        assert!(backoff.delay(0, Some(Duration::from_secs(1))) >= Duration::from_secs(1));
        assert!(backoff.delay(0, Some(Duration::from_secs(600))) <= Duration::from_secs(2));
    }
}
