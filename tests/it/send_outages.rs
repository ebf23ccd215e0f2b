//! Outages of the load balancer and the circuit: one probe at a time while it is down, every
//! waiting message out at once when it is back, nothing lost to a sleeping retry, and a
//! request's own backoff (`Retry-After`) where the failure is only that request's.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::support;
use crate::support::{Reply, TestServer, decoded_set, numbered, run_with_input};

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
        let port = support::unused_port().await;
        let url = format!("http://127.0.0.1:{port}/");
        let (input, expected) = numbered(20_000, &format!("late{round}"));
        let run = tokio::spawn(async move { run_with_input(&["send", &url], &input, LIMIT).await });
        let server = TestServer::start_late(port, Duration::from_secs(2)).await;
        let run = run.await.expect("join");
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

#[tokio::test(flavor = "multi_thread")]
async fn three_short_outages_while_lines_flow_lose_nothing() {
    let (server, down) = switchable_server().await;
    let url = server.url();
    let mut child = support::spawn(&["send", &url]);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let switching = tokio::spawn(async move {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            down.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
            down.store(false, Ordering::SeqCst);
        }
    });
    // 60 lines every 50 ms, for the 4.5 s the outages take and a little more.
    let (input, expected) = numbered(6_000, "flowing");
    let lines: Vec<&[u8]> = input.split_inclusive(|&b| b == b'\n').collect();
    for chunk in lines.chunks(60) {
        stdin.write_all(&chunk.concat()).await.expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    switching.await.expect("join");
    drop(stdin);
    let run = support::wait(child, LIMIT).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_each_once(&server, &expected);
    let resets = server
        .seen()
        .iter()
        .filter(|s| s.reply == Reply::Reset)
        .count();
    assert!(resets > 0, "the outages happened while lines were sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_after_end_of_input_is_waited_out_within_the_drain() {
    let (server, down) = switchable_server().await;
    let url = server.url();
    let mut child = support::spawn(&["send", &url, "--drain-timeout", "20s"]);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let (first, mut expected) = numbered(100, "before");
    stdin.write_all(&first).await.expect("write");
    assert!(support::eventually(LIMIT, || server.answered(503).len() == 100).await);
    // Down for 10 s from just before the last lines and end of input.
    down.store(true, Ordering::SeqCst);
    let (last, last_expected) = numbered(500, "after");
    expected.extend(last_expected);
    stdin.write_all(&last).await.expect("write");
    drop(stdin);
    tokio::time::sleep(Duration::from_secs(10)).await;
    down.store(false, Ordering::SeqCst);
    let run = support::wait(child, LIMIT).await;
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
    ]);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let (input, _) = numbered(1_000, "held");
    stdin.write_all(&input).await.expect("write");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let in_three_seconds = server.seen().len();
    drop(stdin);
    let run = support::wait(child, LIMIT).await;
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
