//! Where retry is decided, and only here: how an answer is classified (accepted, worth
//! retrying, permanent), how long to wait before the next attempt, when to stop trying (the
//! drain deadline, a confirming caller's own deadline, a cancelled caller, `--max-attempts`),
//! and whether an undelivered message goes back to rsyslog to be retried there. (How a failed
//! commit is paced for rsyslog's own replay is the protocol's, in `omprog`.)
//!
//! While the endpoint fails, the [`circuit`] holds every message and a neutral probe (never a
//! message) tries it every few seconds; a failure that is a request's own (408, 429, a 5xx
//! while others get through) has the request's own capped, jittered backoff, and a bounded
//! number of them. A permanent answer ends its message at once. The outage and the recovery
//! are logged once each.
//!
//! The rules are here; the [`retrier`] applies them to every request, through a
//! [`Transport`](retrier::Transport) (the HTTP client, which knows nothing of retrying and
//! returns raw answers, classified here); the circuit's state machine has a file of its own.

mod circuit;
mod retrier;

use std::future::Future;
use std::time::Duration;

use http::StatusCode;
use tokio::sync::watch;
use tokio::time::Instant;

use super::client::Answer;
use super::endpoint::StatusSet;
use super::job::Ack;
pub(super) use retrier::{Retrier, RetryPolicy};

/// The longest interval between two probes of an open circuit: delivery resumes within about
/// this long of the endpoint's return, however long the outage lasted.
const PROBE_INTERVAL_MAX: Duration = Duration::from_secs(3);

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

/// Sorts what a request came to: a status as [`classify`] does; no answer is worth trying
/// again, and says the endpoint is failing, unless trying again cannot mend it (a proxy that
/// refused our credentials).
pub(super) fn classify_answer(answer: Answer, accept: &StatusSet) -> Attempt {
    match answer {
        Answer::Status {
            status,
            retry_after,
        } => classify(status, accept, retry_after),
        Answer::Failed(reason) => Attempt::Retry {
            reason,
            after: None,
            outage: true,
        },
        Answer::Refused(reason) => Attempt::Permanent { reason },
    }
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

    /// The wait before the next probe of an open circuit (or of `--probe`) after `failures`
    /// failed ones: doubling from `initial` like [`delay`](Self::delay), but capped at
    /// [`PROBE_INTERVAL_MAX`] (or `max`, if lower), and jittered over the upper half only, so
    /// probes neither come in bursts nor leave the endpoint's return unnoticed for long. A
    /// `Retry-After` is honoured up to the same cap.
    pub(super) fn probe_interval(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let cap = PROBE_INTERVAL_MAX.min(self.max);
        let ceiling = self
            .initial
            .saturating_mul(1u32 << failures.min(31))
            .min(cap);
        let jittered = ceiling.mul_f64(0.5 + fastrand::f64() / 2.0);
        match retry_after {
            Some(hint) => jittered.max(hint.min(cap)),
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
    /// It kept failing while the load balancer answered others (`--max-attempts`).
    Exhausted {
        attempts: u32,
        last: String,
    },
    Cancelled,
}

impl Failure {
    pub(super) fn reason(&self) -> String {
        match self {
            Failure::Rejected(reason) => format!("rejected by the load balancer: {reason}"),
            Failure::DrainPassed => "not delivered before the drain deadline".into(),
            Failure::GaveUp(Some(last)) => format!("not delivered in time: {last}"),
            Failure::GaveUp(None) => "not delivered in time".into(),
            Failure::Exhausted { attempts, last } => {
                format!("failed {attempts} times while the load balancer accepted others: {last}")
            }
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
/// back, except one rejected or given up after `--max-attempts` when there is a dead-letter
/// file: sending it again cannot help, so it is kept there and confirmed, rather than have
/// rsyslog send it again forever.
pub(crate) fn after_failure(
    failure: &Failure,
    confirming: bool,
    has_dead_letter: bool,
) -> AfterFailure {
    match failure {
        _ if !confirming => AfterFailure::Settle,
        Failure::Rejected(_) | Failure::Exhausted { .. } if has_dead_letter => AfterFailure::Settle,
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
        // The run's shutdown outlives the workers, so this is only reached at teardown.
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
    fn no_answer_is_retried_as_an_outage_unless_trying_again_cannot_mend_it() {
        let accept: StatusSet = "503".parse().expect("valid");
        let failed = classify_answer(Answer::Failed("connection refused".into()), &accept);
        assert_eq!(
            failed,
            Attempt::Retry {
                reason: "connection refused".into(),
                after: None,
                outage: true
            }
        );
        let refused = classify_answer(Answer::Refused("407".into()), &accept);
        assert_eq!(
            refused,
            Attempt::Permanent {
                reason: "407".into()
            }
        );
        let too_many = Answer::Status {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            classify_answer(too_many, &accept),
            Attempt::Retry {
                reason: "HTTP 429 Too Many Requests".into(),
                after: Some(Duration::from_secs(7)),
                outage: false
            }
        );
    }

    /// A delivery that never ends: only a limit ends `within_limits`.
    fn forever() -> impl Future<Output = Result<(), Failure>> {
        std::future::pending()
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_abort_ends_a_delivery() {
        let (abort, mut aborted) = watch::channel(false);
        let start = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            abort.send_replace(true);
            // Held until the end, so the abort is not mistaken for teardown.
            std::future::pending::<()>().await;
        });
        let result = within_limits(forever(), &mut aborted, None, &LastFailure::default()).await;
        assert!(matches!(result, Err(Failure::DrainPassed)), "{result:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_confirming_callers_deadline_gives_up_with_the_last_failure() {
        let (_abort, mut aborted) = watch::channel(false);
        let start = Instant::now();
        let (mut ack, _receiver) = Ack::new(Some(start + Duration::from_secs(30)));
        let last_failure = LastFailure::default();
        last_failure.set("HTTP 500".into());
        let result = within_limits(forever(), &mut aborted, Some(&mut ack), &last_failure).await;
        match result {
            Err(Failure::GaveUp(Some(last))) => assert_eq!(last, "HTTP 500"),
            other => panic!("{other:?}"),
        }
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_gone_cancels_and_a_delivery_that_ends_ends_it() {
        let (_abort, mut aborted) = watch::channel(false);
        let (mut ack, receiver) = Ack::new(None);
        drop(receiver);
        let last_failure = LastFailure::default();
        let result = within_limits(forever(), &mut aborted, Some(&mut ack), &last_failure).await;
        assert!(matches!(result, Err(Failure::Cancelled)), "{result:?}");
        let (mut ack, _receiver) = Ack::new(None);
        let delivered = async { Ok(()) };
        let result = within_limits(delivered, &mut aborted, Some(&mut ack), &last_failure).await;
        assert!(result.is_ok(), "{result:?}");
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
