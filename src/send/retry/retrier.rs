//! Attempts against one endpoint: every request of every worker goes through the [`Retrier`].
//! It waits on the circuit (probing it, when its turn comes, with the neutral request), sends
//! through a [`Transport`], and decides from the answer whether, when and how often to try
//! again, and when to stop: the drain's last call, or `--max-attempts`.

use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use super::circuit::{Admission, Circuit, ProbeTime, Role, Verdict};
use super::{Attempt, Backoff, Failure, LastFailure, classify_answer};
use crate::send::client::{Answer, Client};
use crate::send::endpoint::{Endpoint, StatusSet};
use crate::send::stats::{Outcome, Stats};

/// Sends one request and reports its raw answer, and nothing more: what the answer means and
/// every decision about trying again are the [`Retrier`]'s. The HTTP client in production; a
/// scripted endpoint on paused time in the tests.
pub(in crate::send) trait Transport: Send + Sync {
    fn send(&self, target: &PathAndQuery) -> impl Future<Output = Answer> + Send;
}

impl Transport for Client {
    fn send(&self, target: &PathAndQuery) -> impl Future<Output = Answer> + Send {
        Client::send(self, target)
    }
}

/// How a request's own failures are retried.
#[derive(Debug, Clone, Copy)]
pub(in crate::send) struct RetryPolicy {
    pub backoff: Backoff,
    /// `--max-attempts`: a request that fails this many times while the endpoint answers
    /// others is given up, so that no message is retried forever.
    pub max_attempts: u32,
}

pub(in crate::send) struct Retrier<T = Client> {
    transport: T,
    /// `GET <path>`, no query string: the circuit's and `--probe`'s neutral request, which no
    /// decoder takes for a message.
    probe_target: PathAndQuery,
    /// For the log lines.
    endpoint: String,
    /// `--accept`: the statuses that mean "delivered".
    accept: StatusSet,
    request_timeout: Duration,
    /// Requests in flight across all workers: the fragments of one long message share it
    /// with everything else, so `--concurrency` holds however messages are cut.
    requests: Semaphore,
    policy: RetryPolicy,
    circuit: Circuit,
    /// When the drain gives each message its last attempt; `None` until the drain starts.
    last_call: watch::Sender<Option<Instant>>,
    stats: Arc<Stats>,
}

impl Retrier<Client> {
    pub(in crate::send) fn new(
        client: Client,
        accept: StatusSet,
        concurrency: usize,
        policy: RetryPolicy,
        stats: Arc<Stats>,
    ) -> Self {
        let endpoint = client.endpoint().clone();
        let request_timeout = client.request_timeout();
        Retrier::with_transport(
            client,
            accept,
            &endpoint,
            request_timeout,
            concurrency,
            policy,
            stats,
        )
    }

    pub(in crate::send) fn client(&self) -> &Client {
        &self.transport
    }
}

#[cfg(test)]
impl Retrier<Client> {
    /// A retrier with a real client to `url`, for the tests of the layers above: 503
    /// accepted, 4 requests at once, retries from 200 ms to 1 s, 3 attempts of a request's own.
    pub(in crate::send) fn for_tests(url: &str, stats: Arc<Stats>) -> Arc<Self> {
        let options = crate::send::client::ClientOptions {
            concurrency: 4,
            proxy: Some("none"),
            trust: crate::send::tls::Trust::Webpki,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            ca_cert: None,
            insecure: false,
            http: crate::send::HttpVersion::Auto,
        };
        let endpoint = url.parse().expect("a valid URL");
        let client = Client::new(endpoint, &options, stats.clone()).expect("a client");
        let policy = RetryPolicy {
            backoff: Backoff {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(1),
            },
            max_attempts: 3,
        };
        let accept = "503".parse().expect("a valid status list");
        Arc::new(Retrier::new(client, accept, 4, policy, stats))
    }
}

impl<T: Transport> Retrier<T> {
    pub(in crate::send) fn with_transport(
        transport: T,
        accept: StatusSet,
        endpoint: &Endpoint,
        request_timeout: Duration,
        concurrency: usize,
        policy: RetryPolicy,
        stats: Arc<Stats>,
    ) -> Self {
        // A parsed URL's path is always a valid request target; "/" is only a fallback.
        let probe_target = Client::request_target(endpoint.path().to_string())
            .unwrap_or_else(|_| PathAndQuery::from_static("/"));
        Retrier {
            transport,
            probe_target,
            endpoint: endpoint.to_string(),
            accept,
            request_timeout,
            requests: Semaphore::new(concurrency.max(1)),
            policy,
            circuit: Circuit::new(policy.backoff, endpoint.to_string()),
            last_call: watch::Sender::new(None),
            stats,
        }
    }

    /// Whether the circuit is closed: the load balancer accepts requests.
    pub(in crate::send) fn delivery_up(&self) -> bool {
        self.circuit.is_up()
    }

    /// The drain ends at `deadline`: no wait runs past it, and every waiting message gets a
    /// last chance early enough to be answered (one request timeout, or a quarter of the drain
    /// if that is shorter) before it. While the circuit is open, that chance is one probe.
    pub(in crate::send) fn drain_until(&self, deadline: Instant, drain_timeout: Duration) {
        let margin = self.request_timeout.min(drain_timeout / 4);
        self.last_call.send_replace(Some(deadline - margin));
    }

    fn past_last_call(&self) -> bool {
        self.last_call
            .borrow()
            .is_some_and(|last_call| Instant::now() >= last_call)
    }

    /// Resolves at the drain's last call (never before the drain starts).
    fn last_call(&self) -> impl Future<Output = ()> + use<T> {
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

    /// One request within `--concurrency`.
    async fn send(&self, target: &PathAndQuery) -> Result<Attempt, Failure> {
        let Ok(_slot) = self.requests.acquire().await else {
            return Err(Failure::Cancelled);
        };
        Ok(self.attempt(target).await)
    }

    /// One request through the transport, its answer classified and timed.
    async fn attempt(&self, target: &PathAndQuery) -> Attempt {
        let requests = &self.stats.requests;
        let started = std::time::Instant::now();
        let answer = self.transport.send(target).await;
        let answered = matches!(answer, Answer::Status { .. });
        let attempt = classify_answer(answer, &self.accept);
        let outcome = match &attempt {
            _ if !answered => Outcome::Error,
            Attempt::Accepted => {
                requests.delivered_now();
                Outcome::Accepted
            }
            Attempt::Retry { .. } => Outcome::Retried,
            Attempt::Permanent { .. } => Outcome::Rejected,
        };
        requests.observe(outcome, started.elapsed());
        attempt
    }

    /// One request, retried until accepted or rejected for good. While the circuit is open,
    /// the request waits on it (or probes it for everyone). A failure that is not the
    /// endpoint's (408, 429, or a 5xx while others get through, see [`Circuit::judge`]) has
    /// the request's own backoff, with `Retry-After` honoured, and after `--max-attempts`
    /// failures that are its alone the request is given up. The latest retriable failure is
    /// kept for the report if the caller gives up.
    pub(in crate::send) async fn until_accepted(
        &self,
        line_number: u64,
        target: String,
        last_failure: &LastFailure,
    ) -> Result<(), Failure> {
        let target = Client::request_target(target).map_err(Failure::Rejected)?;
        let mut retry = 0u32;
        let mut own_failures = 0u32;
        // The circuit's counts when this request was first sent or last failed.
        let mut mark = None;
        loop {
            let first = self.admitted().await?;
            let since = *mark.get_or_insert_with(|| self.circuit.mark());
            let (reason, after, outage) = match self.send(&target).await? {
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
            let verdict = self.circuit.judge(outage, since);
            mark = Some(self.circuit.mark());
            let last_call = self.past_last_call();
            if first.is_some() || (outage && verdict == Verdict::Endpoint) {
                self.circuit
                    .failed(&reason, after, first.as_ref(), last_call);
            }
            drop(first);
            if last_call {
                // That was the last attempt.
                last_failure.set(reason);
                return Err(Failure::DrainPassed);
            }
            match verdict {
                Verdict::Own => {
                    own_failures = own_failures.saturating_add(1);
                    if own_failures >= self.policy.max_attempts {
                        return Err(Failure::Exhausted {
                            attempts: own_failures,
                            last: reason,
                        });
                    }
                }
                // Others failed as often: the endpoint is flaky, and this message is no worse
                // off than the rest, so its count starts again.
                Verdict::Shared => own_failures = 0,
                Verdict::Endpoint => {}
            }
            last_failure.set(reason);
            Stats::add(&self.stats.retries, 1);
            let delay = self.policy.backoff.delay(retry, after);
            tracing::debug!(line = line_number, retry, ?delay, "will retry");
            self.sleep(delay).await;
            retry = retry.saturating_add(1);
        }
    }

    /// Waits until the circuit lets a request go; with the role when it goes first. While the
    /// circuit is open, this worker may be the one that probes it for everyone.
    async fn admitted(&self) -> Result<Option<Role<'_>>, Failure> {
        loop {
            // The common case, the circuit closed, costs one atomic load.
            if self.circuit.is_up() {
                return Ok(None);
            }
            match self.circuit.admit().await {
                Admission::Go => return Ok(None),
                Admission::First(role) => return Ok(Some(role)),
                Admission::Stopped => return Err(Failure::DrainPassed),
                Admission::Probe(role) => self.probe_circuit(&role).await?,
            }
        }
    }

    /// Probes the open circuit at its times until it closes, the role passes on, or the
    /// drain's last probe failed.
    async fn probe_circuit(&self, role: &Role<'_>) -> Result<(), Failure> {
        while self.circuit.wait_to_probe(role, self.last_call()).await == ProbeTime::Now {
            match self.send(&self.probe_target).await? {
                // A permanent answer too: the endpoint answers, so messages may try.
                Attempt::Accepted | Attempt::Permanent { .. } => self.circuit.answered(),
                Attempt::Retry { reason, after, .. } => {
                    let last_call = self.past_last_call();
                    self.circuit.failed(&reason, after, Some(role), last_call);
                    // The probe is tried again (unless it was the last call's), as the
                    // retries counter says during an outage.
                    if !last_call {
                        Stats::add(&self.stats.retries, 1);
                    }
                }
            }
        }
        Ok(())
    }

    /// `--probe`: sends the neutral request until the load balancer answers with an accepted
    /// status. Connection errors and retriable statuses are retried at the circuit's probe
    /// interval for as long as the caller waits; a permanent answer (404, 403, a redirect)
    /// means the URL is wrong and is returned at once.
    pub(in crate::send) async fn probe(&self) -> Result<(), String> {
        let mut failures = 0;
        loop {
            match self.attempt(&self.probe_target).await {
                Attempt::Accepted => {
                    self.circuit.answered();
                    return Ok(());
                }
                Attempt::Permanent { reason } => {
                    return Err(format!("probe of {} failed: {reason}", self.endpoint));
                }
                Attempt::Retry { reason, after, .. } => {
                    if failures == 0 {
                        tracing::warn!(endpoint = %self.endpoint, "probe failed, retrying until the load balancer answers: {reason}");
                    }
                    let interval = self.policy.backoff.probe_interval(failures, after);
                    tokio::time::sleep(interval).await;
                    failures = failures.saturating_add(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
