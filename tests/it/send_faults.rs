//! Faults on the way to the load balancer: retries, permanent rejections, timeouts, drains.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support;
use crate::support::{
    Reply, ReservedPort, TestServer, Watched, decoded_set, numbered, run_with_input,
};
use tokio::io::AsyncWriteExt;

/// How long a test waits for something it expects to happen.
const LIMIT: Duration = Duration::from_secs(60);

const FAST_RETRIES: [&str; 4] = ["--retry-initial", "10ms", "--retry-max", "100ms"];

fn args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["send", url];
    all.extend_from_slice(extra);
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn server_down_at_start_gets_everything_once_it_comes_up() {
    let port = ReservedPort::new();
    let url = port.url();
    let (input, expected) = numbered(100, "early");
    let mut extra = FAST_RETRIES.to_vec();
    extra.extend(["--drain-timeout", "60s"]);
    let mut child = support::spawn(&args(&url, &extra));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let sender = Watched::new(child);
    stdin.write_all(&input).await.expect("write");
    drop(stdin);
    // The load balancer comes up once the program has found it down.
    sender.line_with("delivery failing", LIMIT).await;
    let server = TestServer::start_at(port);
    let run = sender.wait(Duration::from_secs(90)).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let answered = server.answered(503);
    assert_eq!(answered.len(), 100, "each line exactly once");
    assert_eq!(decoded_set(&answered), expected);
    run.assert_logged("delivery failing");
    run.assert_logged("delivery recovered");
}

#[tokio::test(flavor = "multi_thread")]
async fn resets_and_server_errors_are_retried() {
    // Every target (each line's, and the circuit's probe) is reset, then answered 500, then
    // 429, and only then accepted. (Not a cycle over all requests, whatever they carry: that
    // hands the accepted turns to the probes, by phase, once the failures open the circuit.)
    let tries: std::sync::Mutex<std::collections::HashMap<Vec<u8>, u32>> = Default::default();
    let server = TestServer::start(move |_, target| {
        let mut tries = tries.lock().expect("lock");
        let tried = tries.entry(target.to_vec()).or_default();
        *tried += 1;
        match *tried {
            1 => Reply::Reset,
            2 => Reply::Status(500),
            3 => Reply::Status(429),
            _ => Reply::Status(503),
        }
    })
    .await;
    let (input, expected) = numbered(200, "flaky");
    let url = server.url();
    let run = run_with_input(&args(&url, &FAST_RETRIES), &input, Duration::from_secs(60)).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let answered = server.answered(503);
    assert_eq!(answered.len(), 200, "each line accepted exactly once");
    assert_eq!(decoded_set(&answered), expected);
    // Every request but the accepted ones was tried again.
    let seen = server.seen();
    let accepted = seen
        .iter()
        .filter(|s| s.reply == Reply::Status(503))
        .count();
    let retried = seen.len() - accepted;
    assert!(retried >= 600, "only {retried} retries");
    run.assert_logged(&format!("retried {retried}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_rejections_go_to_the_dead_letter_file() {
    let server = TestServer::rejecting(b"missing").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let dead = dir.path().join("dead.log");
    let dead_arg = dead.to_str().expect("utf-8 path");
    let input = b"first\nmissing \xff one\nsecond\n";
    let url = server.url();
    let run = run_with_input(
        &args(&url, &["--dead-letter", dead_arg]),
        input,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(
        std::fs::read(&dead).expect("dead letter"),
        b"missing \xff one\n"
    );
    assert_eq!(
        decoded_set(&server.answered(503)),
        [b"first".to_vec(), b"second".to_vec()].into()
    );
    assert_eq!(server.answered(404).len(), 1, "a 404 is not retried");
    run.assert_logged("HTTP 404");

    // Without a dead-letter file the same line is lost, counted, and the exit status says so.
    let run = run_with_input(
        &args(&url, &[]),
        b"missing again\n",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(run.code(), Some(1), "stderr: {}", run.stderr);
    run.assert_logged("1 messages were lost");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_never_answers_hits_the_request_timeout() {
    let server = TestServer::start(|_, _| Reply::Hang).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let dead = dir.path().join("dead.log");
    let url = server.url();
    let extra = [
        "--request-timeout",
        "300ms",
        "--drain-timeout",
        "2s",
        "--dead-letter",
        dead.to_str().expect("utf-8"),
    ];
    let (input, expected) = numbered(3, "stuck");
    let run = run_with_input(&args(&url, &extra), &input, Duration::from_secs(30)).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    run.assert_logged("no response within 300ms");
    let written: BTreeSet<Vec<u8>> = std::fs::read(&dead)
        .expect("dead letter")
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(written, expected);
    // While the server never answers, one probe goes out at a time: it is tried again after
    // each timeout, and at the drain's last call the probe, not every message, gets the last
    // attempt (issue 21 item 16).
    let seen = server.seen();
    let messages = seen
        .iter()
        .filter(|s| !support::is_probe(&s.target))
        .count();
    assert_eq!(messages, 1, "only the first message went: {seen:?}");
    assert!(seen.len() >= 2, "the probe followed the first timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_deadline_with_an_unreachable_server() {
    // Refused for the whole test.
    let nowhere = ReservedPort::new();
    let url = nowhere.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let dead = dir.path().join("dead.log");
    let (input, _) = numbered(5, "nowhere");

    let extra = [
        "--drain-timeout",
        "1s",
        "--dead-letter",
        dead.to_str().expect("utf-8"),
    ];
    let run = run_with_input(&args(&url, &extra), &input, Duration::from_secs(30)).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let written = std::fs::read(&dead).expect("dead letter");
    let mut lines: Vec<&[u8]> = written
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    let mut expected: Vec<&[u8]> = input
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    expected.sort();
    assert_eq!(
        lines, expected,
        "the dead-letter file replays exactly the undelivered lines"
    );
    run.assert_logged("dead-lettered 5");

    let run = run_with_input(
        &args(&url, &["--drain-timeout", "1s"]),
        &input,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(run.code(), Some(1), "stderr: {}", run.stderr);
    run.assert_logged("5 messages were lost");
    run.assert_logged("Connection refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_reading_and_drains_what_was_read() {
    // The first 3 requests fail, so at SIGTERM the 20 lines are waiting for a retry (on the
    // circuit, which has one probe out at a time).
    let server = TestServer::failing_first(3, 500).await;
    let url = server.url();
    let mut child = support::spawn(&args(
        &url,
        &["--retry-initial", "300ms", "--retry-max", "600ms"],
    ));
    let mut stdin = child.stdin.take().expect("stdin");
    let sender = Watched::new(child);
    let (input, expected) = numbered(20, "before");
    stdin.write_all(&input).await.expect("write");
    assert!(support::eventually(LIMIT, || server.seen().len() >= 3).await);
    support::signal(&sender.child, "TERM");
    // The program says when it has stopped reading.
    sender
        .line_with(
            "SIGTERM: reading stopped, delivering what was already read",
            LIMIT,
        )
        .await;
    // Written after SIGTERM was handled: must not be read or sent (the pipe may already be
    // closed).
    let _ = stdin.write_all(b"after the signal\n").await;
    let _ = stdin.flush().await;
    let run = sender.wait(Duration::from_secs(30)).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(decoded_set(&server.answered(503)), expected);
    assert!(!decoded_set(&server.answered(503)).contains(b"after the signal".as_slice()));
    drop(stdin);
}

#[tokio::test(flavor = "multi_thread")]
async fn over_long_lines_are_reported_and_the_stream_goes_on() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let mut input = b"short one\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 5000));
    input.extend_from_slice(b"\nshort two\n");
    let url = server.url();
    let run = run_with_input(
        &args(&url, &["--max-line-bytes", "100"]),
        &input,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        run.code(),
        Some(1),
        "an unreadable line is a lost message: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("line=2")
            && run.stderr.contains("5000 bytes, over --max-line-bytes 100"),
        "stderr: {}",
        run.stderr
    );
    assert_eq!(
        decoded_set(&server.answered(503)),
        [b"short one".to_vec(), b"short two".to_vec()].into()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_line_over_the_url_budget_is_split_never_truncated() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let dead = dir.path().join("dead.log");
    let long_line = "é".repeat(40); // 80 bytes, 240 once encoded
    let input = format!("fits\n{long_line}\nfits too\n");
    let url = server.url();
    let extra = [
        "--max-url-bytes",
        "200",
        "--dead-letter",
        dead.to_str().expect("utf-8"),
    ];
    let run = run_with_input(
        &args(&url, &extra),
        input.as_bytes(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(std::fs::read(&dead).expect("dead letter"), b"");
    let mut targets: Vec<String> = server
        .answered(503)
        .into_iter()
        .map(|t| String::from_utf8(t).expect("ASCII target"))
        .collect();
    targets.sort();
    assert!(targets.iter().all(|t| t.len() <= 200), "{targets:?}");
    assert_eq!(targets.len(), 4, "{targets:?}");
    assert_eq!(&targets[2..], ["/?fits", "/?fits%20too"]);
    // Capacity per fragment: 200 - len("/?&i=<12 hex>-1&f=1.2") = 175 bytes, so 58 bytes of
    // `é` pairs (29 of them) go in the first fragment, and the other 22 bytes in the second.
    let id = targets[0]
        .split("&i=")
        .nth(1)
        .and_then(|rest| rest.strip_suffix("&f=1.2"))
        .unwrap_or_else(|| panic!("first fragment: {}", targets[0]));
    assert!(
        id.len() == 14 && id.ends_with("-1") && id[..12].bytes().all(|b| b.is_ascii_hexdigit()),
        "made-up id {id}"
    );
    assert_eq!(
        targets[..2],
        [
            format!("/?{}&i={id}&f=1.2", "%C3%A9".repeat(29)),
            format!("/?{}&i={id}&f=2.2", "%C3%A9".repeat(11)),
        ]
    );
}
