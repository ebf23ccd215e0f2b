//! The retrier against a scripted endpoint on paused tokio time: every wait is exact, and an
//! hour of outage takes milliseconds.

use std::sync::Mutex;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::super::PROBE_INTERVAL_MAX;
use super::*;

/// What the scripted endpoint answers: to a target, at a (virtual) time.
type Script = Box<dyn Fn(&str, Instant) -> Answer + Send + Sync>;

/// An endpoint that answers by script after a fixed latency, and records every request.
struct Scripted {
    script: Script,
    sent: Mutex<Vec<(Instant, String)>>,
}

const LATENCY: Duration = Duration::from_millis(5);
const PROBE: &str = "/";

impl Transport for Scripted {
    fn send(&self, target: &PathAndQuery) -> impl Future<Output = Answer> + Send {
        let target = target.as_str().to_string();
        async move {
            tokio::time::sleep(LATENCY).await;
            let now = Instant::now();
            let answer = (self.script)(&target, now);
            self.sent
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push((now, target));
            answer
        }
    }
}

impl Scripted {
    fn sent(&self) -> Vec<(Instant, String)> {
        self.sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// A failure that says the endpoint is failing (no answer, or a 5xx, as the reason says).
fn failing(reason: &str) -> Answer {
    Answer::Failed(reason.into())
}

/// An answer with `code`; the retrier accepts 503.
fn status(code: u16) -> Answer {
    Answer::Status {
        status: http::StatusCode::from_u16(code).expect("a valid status"),
        retry_after: None,
    }
}

fn accepted() -> Answer {
    status(503)
}

/// An endpoint refusing connections until `back_at`, then accepting.
fn down_until(back_at: Instant) -> Script {
    Box::new(move |_, now| {
        if now < back_at {
            failing("connection refused")
        } else {
            accepted()
        }
    })
}

/// A retrier with the default backoff (200 ms to 30 s), 64 requests at once.
fn retrier(max_attempts: u32, script: Script) -> Retrier<Scripted> {
    let endpoint: Endpoint = "http://lb.test/".parse().expect("a valid URL");
    let policy = RetryPolicy {
        backoff: Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        },
        max_attempts,
    };
    let transport = Scripted {
        script,
        sent: Mutex::default(),
    };
    let stats = Arc::new(Stats::default());
    Retrier::with_transport(
        transport,
        "503".parse().expect("a valid status list"),
        &endpoint,
        Duration::from_secs(10),
        64,
        policy,
        stats,
    )
}

/// Delivers `/?<name>` after `start`: when it ended, and how.
async fn deliver(
    retrier: &Retrier<Scripted>,
    name: String,
    start: Duration,
) -> (String, Instant, Instant, Result<(), Failure>) {
    tokio::time::sleep(start).await;
    let began = Instant::now();
    let result = retrier
        .until_accepted(0, format!("/?{name}"), &LastFailure::default())
        .await;
    (name, began, Instant::now(), result)
}

#[tokio::test(start_paused = true)]
async fn a_message_that_keeps_failing_holds_no_one_and_is_given_up() {
    // Issue 21 item 3: a message that the endpoint always answers with a retriable 5xx no
    // longer holds the circuit's probe; the others go at once, and it is given up after
    // --max-attempts failures of its own.
    let retrier = retrier(
        5,
        Box::new(|target, _| match target {
            "/?poison" => failing("HTTP 500"),
            _ => accepted(),
        }),
    );
    let mut deliveries = FuturesUnordered::new();
    deliveries.push(deliver(&retrier, "poison".into(), Duration::ZERO));
    for n in 0..100u64 {
        // Behind it, a message every 100 ms for 10 s.
        let start = Duration::from_millis(1 + 100 * n);
        deliveries.push(deliver(&retrier, format!("m{n}"), start));
    }
    let mut poison = None;
    while let Some((name, began, ended, result)) = deliveries.next().await {
        if name == "poison" {
            poison = Some(result);
            continue;
        }
        assert!(result.is_ok(), "{name}: {result:?}");
        // Only the ones that came while the first failure had the circuit open waited,
        // for one probe.
        let waited = ended - began;
        assert!(
            waited <= Duration::from_millis(250),
            "{name} waited {waited:?}"
        );
    }
    match poison {
        Some(Err(Failure::Exhausted { attempts: 5, last })) => assert_eq!(last, "HTTP 500"),
        other => panic!("the poisoned message: {other:?}"),
    }
    let sent = retrier.transport.sent();
    for n in 0..100 {
        let target = format!("/?m{n}");
        let times = sent.iter().filter(|(_, t)| *t == target).count();
        assert_eq!(times, 1, "{target} went once");
    }
    let probes = sent.iter().filter(|(_, t)| t == PROBE).count();
    assert!(probes <= 2, "{probes} probes: the circuit stays closed");
}

#[tokio::test(start_paused = true)]
async fn a_message_failing_alone_is_given_up_too() {
    // Issue 21 item 3: with no other traffic, the probes that close the circuit are the
    // answers that show the failures are the message's own.
    let retrier = retrier(
        3,
        Box::new(|target, _| {
            if target == PROBE {
                accepted()
            } else {
                failing("HTTP 502")
            }
        }),
    );
    let (_, _, _, result) = deliver(&retrier, "alone".into(), Duration::ZERO).await;
    assert!(
        matches!(result, Err(Failure::Exhausted { attempts: 3, .. })),
        "{result:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_flaky_endpoint_never_makes_a_message_give_up() {
    // Issue 21 item 3: the bound is for a message failing while the others get through, not
    // for one failing as often as everything else (three of every four requests here, at
    // random).
    for seed in 0..10 {
        flaky_endpoint_round(seed).await;
    }
}

async fn flaky_endpoint_round(seed: u64) {
    fastrand::seed(seed);
    let retrier = retrier(
        10,
        Box::new(move |_, _| match fastrand::u8(0..4) {
            0 => failing("connection reset"),
            1 => failing("HTTP 500"),
            2 => status(429),
            _ => accepted(),
        }),
    );
    let mut deliveries: FuturesUnordered<_> = (0..200)
        .map(|n| deliver(&retrier, format!("m{n}"), Duration::from_millis(n)))
        .collect();
    while let Some((name, _, _, result)) = deliveries.next().await {
        assert!(result.is_ok(), "seed {seed}, {name}: {result:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn delivery_resumes_within_five_seconds_of_the_endpoints_return() {
    // Issue 21 item 15: after a long outage, the probe interval is the circuit's own (at
    // most PROBE_INTERVAL_MAX), not the message backoff grown to --retry-max.
    for round in 0..10u64 {
        fastrand::seed(round);
        let back_at = Instant::now() + Duration::from_secs(3600 + 37 * round);
        let retrier = retrier(10, down_until(back_at));
        let mut deliveries: FuturesUnordered<_> = (0..20)
            .map(|n| deliver(&retrier, format!("m{n}"), Duration::from_millis(n)))
            .collect();
        while let Some((name, _, ended, result)) = deliveries.next().await {
            assert!(result.is_ok(), "{name}: {result:?}");
            let after = ended - back_at;
            assert!(
                after <= Duration::from_secs(5),
                "round {round}: {name} delivered {after:?} after the return"
            );
        }
        let messages = retrier.transport.sent();
        let before = messages
            .iter()
            .filter(|(at, target)| *at < back_at && target != PROBE)
            .count();
        assert_eq!(before, 1, "during the outage, only the first message went");
    }
}

#[tokio::test(start_paused = true)]
async fn at_the_drain_deadline_a_failing_endpoint_gets_one_attempt() {
    // Issue 21 item 16: 200 messages waiting on an open circuit at the drain's last call
    // cost one probe, not 200 requests.
    let retrier = retrier(10, Box::new(|_, _| failing("HTTP 500")));
    let mut deliveries: FuturesUnordered<_> = (0..200)
        .map(|n| deliver(&retrier, format!("m{n}"), Duration::ZERO))
        .collect();
    let drain = Duration::from_secs(3);
    let deadline = Instant::now() + Duration::from_secs(2) + drain;
    let last_call = deadline - drain / 4;
    let draining = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        retrier.drain_until(deadline, drain);
    };
    let ((), ended) = tokio::join!(draining, async {
        let mut ended = Vec::new();
        while let Some((name, _, at, result)) = deliveries.next().await {
            assert!(
                matches!(result, Err(Failure::DrainPassed)),
                "{name}: {result:?}"
            );
            ended.push(at);
        }
        ended
    });
    assert!(
        ended.iter().all(|&at| at >= last_call && at < deadline),
        "settled between the last call and the deadline"
    );
    let sent = retrier.transport.sent();
    let at_the_end = sent.iter().filter(|(at, _)| *at >= last_call).count();
    assert_eq!(at_the_end, 1, "one attempt at the last call: {sent:?}");
    let messages = sent.iter().filter(|(_, target)| target != PROBE).count();
    assert_eq!(messages, 1, "only the first message ever went");
}

#[tokio::test(start_paused = true)]
async fn probes_are_spaced_by_their_own_capped_interval() {
    // Issue 21 item 15: however long the outage, no two probes are more than the cap apart
    // (plus the request itself).
    let retrier = retrier(10, Box::new(|_, _| failing("connection refused")));
    let waiting = deliver(&retrier, "m".into(), Duration::ZERO);
    let _ = tokio::time::timeout(Duration::from_secs(600), waiting).await;
    let probes: Vec<Instant> = retrier
        .transport
        .sent()
        .into_iter()
        .filter(|(_, target)| target == PROBE)
        .map(|(at, _)| at)
        .collect();
    assert!(probes.len() >= 600 / 3, "{} probes", probes.len());
    for pair in probes.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap <= PROBE_INTERVAL_MAX + LATENCY,
            "{gap:?} between probes"
        );
        assert!(gap >= Duration::from_millis(100), "{gap:?}: no bursts");
    }
}

#[test]
fn probe_intervals_are_capped_and_jittered_over_the_upper_half() {
    let backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(30),
    };
    for failures in 0..64 {
        let ceiling = Duration::from_millis(200 << failures.min(5)).min(PROBE_INTERVAL_MAX);
        let interval = backoff.probe_interval(failures, None);
        assert!(
            interval <= ceiling && interval >= ceiling / 2,
            "{interval:?}"
        );
    }
    let hinted = backoff.probe_interval(0, Some(Duration::from_secs(60)));
    assert_eq!(hinted, PROBE_INTERVAL_MAX, "Retry-After up to the cap");
    let short = Backoff {
        max: Duration::from_secs(1),
        ..backoff
    };
    assert!(short.probe_interval(10, None) <= Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn the_startup_probe_waits_for_an_accepted_answer_and_stops_at_a_permanent_one() {
    // `--probe`: failures are retried at the probe interval until the endpoint accepts.
    let back_at = Instant::now() + Duration::from_secs(20);
    let returning = retrier(10, down_until(back_at));
    assert_eq!(returning.probe().await, Ok(()));
    let sent = returning.transport.sent();
    assert!(sent.iter().all(|(_, target)| target == PROBE), "{sent:?}");
    let last = sent.last().map(|(at, _)| *at).expect("probes were sent");
    assert!(last - back_at <= PROBE_INTERVAL_MAX + LATENCY, "{last:?}");
    // A 404 means the URL is wrong: said at once, not retried.
    let wrong = retrier(10, Box::new(|_, _| status(404)));
    let refused = wrong.probe().await.expect_err("a 404 is permanent");
    assert!(refused.contains("HTTP 404"), "{refused}");
    assert_eq!(wrong.transport.sent().len(), 1);
}
