//! rsyslog's omprog feedback protocol, driven over pipes byte for byte.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support;
use crate::support::{Reply, TestServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

struct Omprog {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Omprog {
    /// `send URL FLAGS`, with FLAGS split on spaces.
    fn send(url: &str, flags: &str) -> Self {
        let mut args = vec!["send", url];
        args.extend(flags.split_whitespace());
        Self::start(&args)
    }

    fn start(args: &[&str]) -> Self {
        let mut child = support::spawn(args);
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        Omprog {
            child,
            stdin,
            stdout,
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).await.expect("write to stdin");
        stdin.flush().await.expect("flush stdin");
    }

    /// The next reply line, dots included, without its LF.
    async fn reply(&mut self) -> String {
        let mut line = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            self.stdout.read_until(b'\n', &mut line),
        )
        .await
        .expect("no reply within 30 s")
        .expect("read stdout");
        assert_eq!(
            line.pop(),
            Some(b'\n'),
            "reply not terminated: {:?}",
            String::from_utf8_lossy(&line)
        );
        String::from_utf8(line).expect("replies are UTF-8")
    }

    async fn finish(mut self) -> support::Run {
        drop(self.stdin.take());
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut self.stdout, &mut rest)
            .await
            .expect("read stdout");
        let run = support::wait(self.child, Duration::from_secs(30)).await;
        assert!(
            rest.is_empty(),
            "unexpected output after the last reply: {:?}",
            String::from_utf8_lossy(&rest)
        );
        run
    }
}

fn decoded(server: &TestServer, status: u16) -> BTreeSet<Vec<u8>> {
    server
        .answered(status)
        .iter()
        .map(|t| support::decode(t))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn confirm_mode_answers_ok_once_accepted() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let url = server.url();
    let mut omprog = Omprog::send(&url, "--confirm");
    assert_eq!(omprog.reply().await, "OK", "ready");
    omprog.write(b"first message\n").await;
    assert_eq!(omprog.reply().await, "OK");
    assert_eq!(
        decoded(&server, 503),
        set(&["first message"]),
        "OK only after the load balancer accepted it"
    );
    omprog.write(b"\n").await;
    assert_eq!(omprog.reply().await, "OK", "an empty line is answered too");
    omprog.write(b"second\r\n").await;
    assert_eq!(omprog.reply().await, "OK");
    let run = omprog.finish().await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(decoded(&server, 503), set(&["first message", "second"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn confirm_mode_keeps_alive_then_hands_the_message_back() {
    let server = TestServer::start(|_, _| Reply::Hang).await;
    let url = server.url();
    let mut omprog = Omprog::send(
        &url,
        "--confirm --request-timeout 300ms --message-timeout 2500ms --keepalive-interval 400ms",
    );
    assert_eq!(omprog.reply().await, "OK");
    omprog.write(b"stuck\n").await;
    let reply = omprog.reply().await;
    let dots = reply.len() - reply.trim_start_matches('.').len();
    assert!(
        dots >= 4,
        "keep-alive dots expected while waiting: {reply:?}"
    );
    let error = reply.trim_start_matches('.');
    assert!(
        error.starts_with("error: not delivered in time: no response within 300ms"),
        "{reply:?}"
    );
    assert!(!error.contains('\n') && error.len() < 4096);
    let run = omprog.finish().await;
    // rsyslog keeps the message: it is neither lost nor dead-lettered here.
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    run.assert_logged("returned to rsyslog 1");
}

#[tokio::test(flavor = "multi_thread")]
async fn transactions_defer_then_commit_the_whole_batch() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let url = server.url();
    let mut omprog = Omprog::send(&url, "--transactions");
    assert_eq!(omprog.reply().await, "OK");
    // rsyslog writes a mark and its LF separately.
    omprog.write(b"BEGIN TRANSACTION").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    omprog.write(b"\n").await;
    assert_eq!(omprog.reply().await, "OK");
    let messages: Vec<String> = (0..50).map(|i| format!("batch message {i}")).collect();
    for message in &messages {
        omprog.write(format!("{message}\n").as_bytes()).await;
        assert_eq!(omprog.reply().await, "DEFER_COMMIT");
    }
    omprog.write(b"COMMIT TRANSACTION").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    omprog.write(b"\n").await;
    assert_eq!(omprog.reply().await, "OK");
    let expected: BTreeSet<Vec<u8>> = messages.iter().map(|m| m.as_bytes().to_vec()).collect();
    assert_eq!(
        decoded(&server, 503),
        expected,
        "OK to the commit only after every message was accepted"
    );
    let run = omprog.finish().await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_begin_mark_keeps_the_open_batch() {
    // The first two requests fail, so the first messages are still pending at the second begin.
    let server = TestServer::failing_first(2, 500).await;
    let url = server.url();
    let mut omprog = Omprog::send(
        &url,
        "--transactions --begin-mark BEGIN --commit-mark COMMIT --retry-initial 200ms",
    );
    assert_eq!(omprog.reply().await, "OK");
    for (line, expected) in [
        ("BEGIN", "OK"),
        ("one", "DEFER_COMMIT"),
        ("two", "DEFER_COMMIT"),
        ("BEGIN", "OK"),
        ("three", "DEFER_COMMIT"),
        ("COMMIT", "OK"),
    ] {
        omprog.write(format!("{line}\n").as_bytes()).await;
        assert_eq!(omprog.reply().await, expected, "reply to {line}");
    }
    assert_eq!(decoded(&server, 503), set(&["one", "two", "three"]));
    let run = omprog.finish().await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_during_an_outage_keeps_retrying_with_dots() {
    let server = TestServer::failing_for(Duration::from_millis(2000), 502).await;
    let url = server.url();
    let mut omprog = Omprog::send(
        &url,
        "--transactions --keepalive-interval 300ms --retry-initial 50ms --retry-max 200ms",
    );
    assert_eq!(omprog.reply().await, "OK");
    for line in ["BEGIN TRANSACTION", "a", "b", "c"] {
        omprog.write(format!("{line}\n").as_bytes()).await;
        omprog.reply().await;
    }
    omprog.write(b"COMMIT TRANSACTION\n").await;
    let reply = omprog.reply().await;
    assert!(
        reply.starts_with("..") && reply.ends_with("OK") && reply.trim_start_matches('.') == "OK",
        "{reply:?}"
    );
    assert_eq!(decoded(&server, 503), set(&["a", "b", "c"]));
    let run = omprog.finish().await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_past_its_deadline_is_answered_with_an_error() {
    let port = support::unused_port().await;
    let url = format!("http://127.0.0.1:{port}/");
    let mut omprog = Omprog::send(
        &url,
        "--transactions --commit-timeout 1500ms --keepalive-interval 400ms",
    );
    assert_eq!(omprog.reply().await, "OK");
    for line in ["BEGIN TRANSACTION", "x", "y"] {
        omprog.write(format!("{line}\n").as_bytes()).await;
        omprog.reply().await;
    }
    let asked = Instant::now();
    omprog.write(b"COMMIT TRANSACTION\n").await;
    let reply = omprog.reply().await;
    assert!(
        asked.elapsed() >= Duration::from_millis(1400),
        "the error is paced by the commit deadline"
    );
    assert!(
        reply
            .trim_start_matches('.')
            .starts_with("error: 2 of 2 messages not delivered"),
        "{reply:?}"
    );
    // rsyslog sends the batch again: the next transaction works as usual.
    for (line, expected) in [("BEGIN TRANSACTION", "OK"), ("COMMIT TRANSACTION", "OK")] {
        omprog.write(format!("{line}\n").as_bytes()).await;
        assert_eq!(omprog.reply().await, expected);
    }
    let run = omprog.finish().await;
    assert_eq!(
        run.code(),
        Some(0),
        "handed back to rsyslog, not lost: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn eof_inside_a_transaction_delivers_or_dead_letters_its_messages() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let url = server.url();
    let mut omprog = Omprog::send(&url, "--transactions");
    assert_eq!(omprog.reply().await, "OK");
    for line in [
        "BEGIN TRANSACTION",
        "never committed 1",
        "never committed 2",
    ] {
        omprog.write(format!("{line}\n").as_bytes()).await;
        omprog.reply().await;
    }
    let run = omprog.finish().await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(
        decoded(&server, 503),
        set(&["never committed 1", "never committed 2"])
    );

    // Unreachable: they end in the dead-letter file, since rsyslog 8.2302 would not resend them.
    let port = support::unused_port().await;
    let url = format!("http://127.0.0.1:{port}/");
    let dir = tempfile::tempdir().expect("temp dir");
    let dead = dir.path().join("dead.log");
    let args = [
        "send",
        &url,
        "--transactions",
        "--drain-timeout",
        "1s",
        "--dead-letter",
        dead.to_str().expect("utf-8"),
    ];
    let mut omprog = Omprog::start(&args);
    assert_eq!(omprog.reply().await, "OK");
    for line in ["BEGIN TRANSACTION", "kept 1", "kept 2"] {
        omprog.write(format!("{line}\n").as_bytes()).await;
        omprog.reply().await;
    }
    let run = omprog.finish().await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let mut kept: Vec<String> = std::fs::read_to_string(&dead)
        .expect("dead letter")
        .lines()
        .map(String::from)
        .collect();
    kept.sort();
    assert_eq!(kept, ["kept 1", "kept 2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_and_sigint_do_not_stop_the_program_under_rsyslog() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let url = server.url();
    let mut omprog = Omprog::send(&url, "--confirm");
    assert_eq!(omprog.reply().await, "OK");
    support::signal(&omprog.child, "HUP");
    support::signal(&omprog.child, "INT");
    tokio::time::sleep(Duration::from_millis(300)).await;
    omprog.write(b"still here\n").await;
    assert_eq!(omprog.reply().await, "OK");
    let run = omprog.finish().await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("SIGHUP ignored") && run.stderr.contains("SIGINT ignored"),
        "stderr: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_holds_the_first_ok_until_the_load_balancer_accepts() {
    let server = TestServer::failing_for(Duration::from_millis(1500), 502).await;
    let url = server.url();
    let mut omprog = Omprog::send(
        &url,
        "--confirm --probe --retry-initial 50ms --retry-max 200ms --keepalive-interval 200ms",
    );
    let ready = omprog.reply().await;
    assert!(
        ready.starts_with("..") && ready.trim_start_matches('.') == "OK",
        "dots while probing, then OK: {ready:?}"
    );
    let seen = server.seen();
    assert!(seen.len() >= 2, "the probe was retried: {seen:?}");
    assert!(
        seen.iter().all(|s| s.target == b"/"),
        "the probe is the bare path, never a message: {seen:?}"
    );
    assert_eq!(seen.last().map(|s| s.reply), Some(Reply::Status(503)));
    omprog.write(b"after the probe\n").await;
    assert_eq!(omprog.reply().await, "OK");
    let run = omprog.finish().await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let messages: Vec<Vec<u8>> = server
        .answered(503)
        .iter()
        .filter(|target| target.as_slice() != b"/")
        .map(|target| support::decode(target))
        .collect();
    assert_eq!(messages, [b"after the probe".to_vec()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_answered_404_is_a_configuration_error() {
    let server = TestServer::start(|_, _| Reply::Status(404)).await;
    let url = server.url();
    let mut omprog = Omprog::send(&url, "--confirm --probe");
    let reply = omprog.reply().await;
    assert!(
        reply.starts_with("error: probe of ") && reply.ends_with("HTTP 404 Not Found"),
        "never OK for a wrong URL: {reply:?}"
    );
    let run = omprog.finish().await;
    assert_eq!(run.code(), Some(2), "stderr: {}", run.stderr);
    run.assert_logged("drifter-rsyslog: error: probe of ");
}

#[tokio::test(flavor = "multi_thread")]
async fn end_of_input_during_a_probe_ends_quietly() {
    let port = support::unused_port().await;
    let url = format!("http://127.0.0.1:{port}/");
    let omprog = Omprog::send(&url, "--confirm --probe");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let begun = Instant::now();
    let run = omprog.finish().await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert!(
        begun.elapsed() < Duration::from_secs(5),
        "rsyslog's closeTimeout is 5 s"
    );
    run.assert_logged("probe failed");
}
