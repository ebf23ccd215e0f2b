//! Outages of the load balancer and the circuit: one probe at a time while it is down, every
//! waiting message out at once when it is back, nothing lost to a sleeping retry, a request's
//! own backoff (`Retry-After`) where the failure is only that request's, a message that always
//! fails given up without holding the others, and one attempt at the drain deadline.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::observe::Metrics;
use crate::support;
use crate::support::{
    Reply, ReservedPort, TestServer, Watched, decode, decoded_set, is_probe, numbered,
    run_with_input,
};

const LIMIT: Duration = Duration::from_secs(120);

/// Every line accepted exactly once (a reset request was never answered, so never logged).
fn assert_each_once(server: &TestServer, expected: &BTreeSet<Vec<u8>>) {
    let answered = server.answered(503);
    assert_eq!(answered.len(), expected.len(), "each line accepted once");
    assert!(decoded_set(&answered) == *expected, "the lines sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_starts_late_gets_every_line_with_the_default_drain() {
    for round in 0..3 {
        let port = ReservedPort::new();
        let url = port.url();
        let (input, expected) = numbered(20_000, &format!("late{round}"));
        // A queue of 1,000 (not the default 10,000): what is queued at end of input must go
        // out within the default 8 s drain even on a loaded machine running a debug build.
        let args = [
            "send",
            &url,
            "--queue-messages",
            "1000",
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        let mut child = support::spawn(&args);
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let sender = Watched::new(child);
        let writer = tokio::spawn(async move {
            stdin.write_all(&input).await.expect("write");
        });
        // The load balancer comes up once the program has been refused four times (a first
        // try and three retries) and its queue is full of lines read while it was down.
        let metrics = Metrics::of(&sender).await;
        metrics
            .reaches(
                r#"drifter_request_errors_total{kind="connect"}"#,
                4.0,
                LIMIT,
            )
            .await;
        let capacity = metrics.value("drifter_queue_messages_capacity").await;
        metrics
            .reaches("drifter_queue_messages", capacity, LIMIT)
            .await;
        let server = TestServer::start_at(port);
        writer.await.expect("join writer");
        let run = sender.wait(LIMIT).await;
        assert_eq!(run.code(), Some(0), "round {round}: {}", run.stderr);
        assert_each_once(&server, &expected);
        run.assert_logged("delivery failing");
        run.assert_logged("delivery recovered");
    }
}

/// A server that resets every request while `down` is set.
async fn switchable_server() -> (TestServer, Arc<AtomicBool>) {
    let down = Arc::new(AtomicBool::new(false));
    let is_down = down.clone();
    let server = TestServer::start(move |_, _| {
        if is_down.load(Ordering::SeqCst) {
            Reply::Reset
        } else {
            Reply::Status(503)
        }
    })
    .await;
    (server, down)
}

/// Whether some request target was reset at least `times` times since the server's request
/// number `since`: the program tried it again while the server was down.
fn a_target_reset(server: &TestServer, since: usize, times: usize) -> bool {
    let mut counts: std::collections::HashMap<Vec<u8>, usize> = Default::default();
    for seen in server.seen().into_iter().skip(since) {
        if seen.reply == Reply::Reset {
            *counts.entry(seen.target).or_default() += 1;
        }
    }
    counts.values().any(|&n| n >= times)
}

/// Writes the next chunk of input; how many lines it held.
async fn write_next(
    stdin: &mut tokio::process::ChildStdin,
    chunks: &mut impl Iterator<Item = Vec<u8>>,
) -> usize {
    let chunk = chunks.next().expect("input left");
    stdin.write_all(&chunk).await.expect("write");
    chunk.iter().filter(|&&b| b == b'\n').count()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_short_outages_while_lines_flow_lose_nothing() {
    let (server, down) = switchable_server().await;
    let url = server.url();
    let mut child = support::spawn(&["send", &url]);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let (input, expected) = numbered(6_000, "flowing");
    let lines: Vec<&[u8]> = input.split_inclusive(|&b| b == b'\n').collect();
    let mut chunks = lines.chunks(60).map(<[&[u8]]>::concat);
    let mut written = 0;
    for outage in 0..3 {
        // Lines flow: a chunk is written and delivered.
        written += write_next(&mut stdin, &mut chunks).await;
        let delivered = support::eventually(LIMIT, || server.answered(503).len() >= written).await;
        assert!(
            delivered,
            "before outage {outage}: {written} lines delivered"
        );
        // Down while more lines come. It ends once the program has felt it (a request reset,
        // then tried again and reset again) and a further chunk was written into it.
        let since = server.seen().len();
        down.store(true, Ordering::SeqCst);
        written += write_next(&mut stdin, &mut chunks).await;
        let retried = support::eventually(LIMIT, || a_target_reset(&server, since, 2)).await;
        assert!(
            retried,
            "outage {outage}: no request was tried again during it"
        );
        written += write_next(&mut stdin, &mut chunks).await;
        down.store(false, Ordering::SeqCst);
        // What was written during the outage goes out once it is over.
        let recovered = support::eventually(LIMIT, || server.answered(503).len() >= written).await;
        assert!(
            recovered,
            "after outage {outage}: {written} lines delivered"
        );
    }
    // And the rest flows on.
    for chunk in chunks {
        stdin.write_all(&chunk).await.expect("write");
    }
    drop(stdin);
    let run = support::wait(child, LIMIT).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_each_once(&server, &expected);
    run.assert_logged("delivery failing");
    run.assert_logged("delivery recovered");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_after_end_of_input_is_waited_out_within_the_drain() {
    let (server, down) = switchable_server().await;
    let url = server.url();
    let mut child = support::spawn(&[
        "send",
        &url,
        "--drain-timeout",
        "20s",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let sender = Watched::new(child);
    let metrics = Metrics::of(&sender).await;
    let (first, mut expected) = numbered(100, "before");
    stdin.write_all(&first).await.expect("write");
    assert!(support::eventually(LIMIT, || server.answered(503).len() == 100).await);
    // Down from just before the last lines and end of input, until the program has read them
    // all and tried the probe five times during the drain (its backoff grown to seconds).
    let since = server.seen().len();
    down.store(true, Ordering::SeqCst);
    let (last, last_expected) = numbered(500, "after");
    expected.extend(last_expected);
    stdin.write_all(&last).await.expect("write");
    drop(stdin);
    metrics
        .reaches("drifter_messages_read_total", 600.0, LIMIT)
        .await;
    let retried = support::eventually(LIMIT, || a_target_reset(&server, since, 5)).await;
    assert!(
        retried,
        "the probe was not tried five times: {:?}",
        server.seen().len()
    );
    down.store(false, Ordering::SeqCst);
    let run = sender.wait(LIMIT).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_each_once(&server, &expected);
    run.assert_logged("delivery recovered");
}

#[tokio::test(flavor = "multi_thread")]
async fn while_the_server_fails_only_a_few_probes_go_out() {
    // 500 is not accepted, as with an ALB fixed-response of 503 and `--accept 503`: from the
    // first request on, the endpoint looks down.
    let server = TestServer::start(|_, _| Reply::Status(500)).await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let dead = dir.path().join("dead.log");
    let mut child = support::spawn(&[
        "send",
        &url,
        "--accept",
        "503",
        "--drain-timeout",
        "1s",
        "--dead-letter",
        dead.to_str().expect("utf-8"),
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let sender = Watched::new(child);
    let metrics = Metrics::of(&sender).await;
    let (input, _) = numbered(1_000, "held");
    stdin.write_all(&input).await.expect("write");
    // All 1000 are read and waiting, and the first request has failed.
    metrics
        .reaches("drifter_messages_read_total", 1000.0, LIMIT)
        .await;
    assert!(support::eventually(LIMIT, || !server.seen().is_empty()).await);
    // The subject is the program's own backoff: how many requests it lets out in the 3 s from
    // the first one. This wait is that window, not a synchronisation; a slow machine can only
    // make the count smaller, and the first request is in it.
    let first = server.seen()[0].at;
    let window = Duration::from_secs(3);
    tokio::time::sleep_until((first + window).into()).await;
    let in_three_seconds = server
        .seen()
        .iter()
        .filter(|s| s.at.duration_since(first) <= window)
        .count();
    drop(stdin);
    let run = sender.wait(LIMIT).await;
    assert_eq!(
        run.code(),
        Some(0),
        "dead-lettered, not lost: {}",
        run.stderr
    );
    assert!(
        (1..=20).contains(&in_three_seconds),
        "{in_three_seconds} requests in 3 s: the circuit lets only probes out"
    );
    run.assert_logged("dead-lettered 1000");
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_of_a_429_is_honoured() {
    let server = TestServer::start(|n, _| {
        if n == 3 {
            Reply::RetryAfter(429, 2)
        } else {
            Reply::Status(503)
        }
    })
    .await;
    let url = server.url();
    let (input, expected) = numbered(10, "limited");
    let run = run_with_input(&["send", &url], &input, LIMIT).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_each_once(&server, &expected);
    let seen = server.seen();
    let limited = seen
        .iter()
        .find(|s| s.reply == Reply::RetryAfter(429, 2))
        .expect("one request got 429");
    let again = seen
        .iter()
        .find(|s| s.target == limited.target && s.reply == Reply::Status(503))
        .expect("retried");
    assert!(
        again.at.duration_since(limited.at) >= Duration::from_secs(2),
        "retried after {:?}, before Retry-After's 2 s",
        again.at.duration_since(limited.at)
    );
    let others_done = seen
        .iter()
        .filter(|s| s.target != limited.target)
        .all(|s| s.at < again.at);
    assert!(
        others_done,
        "the other messages did not wait for its Retry-After"
    );
}

/// Answers 500 to the message `poison`, forever, as a proxy or WAF might to one message, and
/// 503 (accepted) to everything else.
async fn poisoned_server() -> TestServer {
    TestServer::start(|_, target| {
        if decode(target) == b"poison" {
            Reply::Status(500)
        } else {
            Reply::Status(503)
        }
    })
    .await
}

/// How long the others may take to arrive, the poisoned message failing all along: a bound for
/// a loaded machine, not a speed; before the fix they never arrived while input was open.
const OTHERS_LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_message_answered_500_forever_holds_no_one_and_is_dead_lettered() {
    // Issue 21 item 3: that message held the circuit's one probe, and every other message
    // waited behind it until the drain; spooled, it was sent first again by the next start.
    let server = poisoned_server().await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("spool");
    let dead = dir.path().join("dead.log");
    // The bound is given in the environment, which a build without it ignores: the test then
    // fails on the behaviour, not on an unknown flag.
    let mut child = support::spawn_with_env(
        &[
            "send",
            &url,
            "--spool",
            spool.to_str().expect("utf-8"),
            "--dead-letter",
            dead.to_str().expect("utf-8"),
            "--retry-max",
            "1s",
        ],
        &[("DRIFTER_MAX_ATTEMPTS", "3")],
    );
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let sender = Watched::new(child);
    let (others, expected) = numbered(20, "other");
    stdin.write_all(b"poison\n").await.expect("write");
    stdin.write_all(&others).await.expect("write");
    // Input stays open, so no drain: only the circuit and the bound decide.
    let delivered = support::eventually(OTHERS_LIMIT, || {
        decoded_set(&server.answered(503)) == expected
    })
    .await;
    assert!(
        delivered,
        "the others did not get through beside the failing one: {} of {}",
        server.answered(503).len(),
        expected.len()
    );
    let given_up = support::eventually(LIMIT, || {
        std::fs::read(&dead).is_ok_and(|kept| kept == b"poison\n")
    })
    .await;
    assert!(given_up, "the failing message was not dead-lettered");
    drop(stdin);
    let run = sender.wait(LIMIT).await;
    assert_eq!(
        run.code(),
        Some(0),
        "dead-lettered, not lost: {}",
        run.stderr
    );
    run.assert_logged("failed 3 times while the load balancer accepted others");
    run.assert_logged("dead-lettered 1,");
    assert_each_once(&server, &expected);
    let attempts = server
        .seen()
        .iter()
        .filter(|seen| decode(&seen.target) == b"poison")
        .count();
    // Its own failures count only when others were answered since its last one; alone, every
    // other failure is one (the probe that closes the circuit is the answer).
    assert!((3..=6).contains(&attempts), "{attempts} attempts");
    assert_eq!(
        support::spooled(&spool).await,
        0,
        "done in the spool, so the next start does not send it first again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_dead_letter_file_a_message_failing_forever_is_counted_lost_by_reason() {
    // Issue 21 item 3: given up after --max-attempts, it is lost and says why: in the
    // summary, in the metrics and in the exit status.
    let server = poisoned_server().await;
    let url = server.url();
    let mut child = support::spawn_with_env(
        &[
            "send",
            &url,
            "--retry-max",
            "1s",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[("DRIFTER_MAX_ATTEMPTS", "2")],
    );
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let sender = Watched::new(child);
    let metrics = Metrics::of(&sender).await;
    stdin.write_all(b"poison\nother\n").await.expect("write");
    // Input stays open: given up by the bound, not by the drain.
    metrics
        .reaches(
            r#"drifter_messages_lost_total{reason="max_attempts"}"#,
            1.0,
            OTHERS_LIMIT,
        )
        .await;
    drop(stdin);
    let run = sender.wait(LIMIT).await;
    assert_eq!(run.code(), Some(1), "a loss: {}", run.stderr);
    run.assert_logged("lost 1 (max_attempts 1)");
    assert_eq!(
        decoded_set(&server.answered(503)),
        BTreeSet::from([b"other".to_vec()])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_drain_deadline_a_failing_endpoint_gets_one_attempt_not_one_per_message() {
    // Issue 21 item 16: 200 lines against a server answering 500 with --drain-timeout 3s made
    // 204 requests, every waiting message getting its own last attempt at the deadline.
    let server = TestServer::start(|_, _| Reply::Status(500)).await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let dead = dir.path().join("dead.log");
    let (input, expected) = numbered(200, "doomed");
    let args = [
        "send",
        &url,
        "--drain-timeout",
        "3s",
        "--dead-letter",
        dead.to_str().expect("utf-8"),
    ];
    let run = run_with_input(&args, &input, LIMIT).await;
    assert_eq!(run.code(), Some(0), "dead-lettered: {}", run.stderr);
    run.assert_logged("dead-lettered 200,");
    let kept = std::fs::read(&dead).expect("dead letters");
    let kept: BTreeSet<Vec<u8>> = kept
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    assert!(kept == expected, "every line dead-lettered");
    // Byte for byte: the probe is the bare path, every other target carries one of the
    // lines, and no line went twice.
    let seen = server.seen();
    let mut by_target: HashMap<&[u8], usize> = HashMap::new();
    for request in &seen {
        *by_target.entry(&request.target).or_default() += 1;
    }
    for (target, count) in by_target {
        if is_probe(target) {
            assert_eq!(target, b"/", "the probe is the bare path");
        } else {
            assert!(expected.contains(&decode(target)), "{target:?} is a line");
            assert_eq!(count, 1, "{:?} went {count} times", decode(target));
        }
    }
    // The program's own schedule bounds this: the first message, probes spaced from 100 ms up
    // to 3 s, and one at the last call; a slow machine can only make the count smaller.
    assert!(seen.len() <= 20, "{} requests", seen.len());
}
