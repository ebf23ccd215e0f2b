//! rsyslog's omprog feedback protocol, driven over pipes byte for byte.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::observe;
use crate::support;
use crate::support::{Reply, ReservedPort, TestServer, Watched};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout};

/// How long a test waits for something it expects to happen.
const LIMIT: Duration = Duration::from_secs(30);

struct Omprog {
    watched: Watched,
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
            watched: Watched::new(child),
            stdin,
            stdout,
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).await.expect("write to stdin");
        stdin.flush().await.expect("flush stdin");
    }

    /// Writes `bytes` and waits until the program has read them all out of the pipe, so that
    /// whatever is written next reaches it in another read, as rsyslog's separate writes do.
    async fn write_and_see_it_read(&mut self, bytes: &[u8]) {
        self.write(bytes).await;
        let stdin = self.stdin.as_ref().expect("stdin open");
        let read = support::eventually(LIMIT, || observe::unread_in_pipe(stdin) == 0).await;
        assert!(
            read,
            "the program did not read {:?}",
            String::from_utf8_lossy(bytes)
        );
    }

    /// The next `count` bytes of stdout (the start of a reply: keep-alive dots).
    async fn read_exactly(&mut self, count: usize) -> String {
        let mut bytes = vec![0; count];
        tokio::time::timeout(LIMIT, self.stdout.read_exact(&mut bytes))
            .await
            .expect("no output within the limit")
            .expect("read stdout");
        String::from_utf8(bytes).expect("replies are UTF-8")
    }

    /// The next reply line, dots included, without its LF.
    async fn reply(&mut self) -> String {
        let mut line = Vec::new();
        tokio::time::timeout(LIMIT, self.stdout.read_until(b'\n', &mut line))
            .await
            .expect("no reply within the limit")
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
        self.stdout
            .read_to_end(&mut rest)
            .await
            .expect("read stdout");
        let run = self.watched.wait(LIMIT).await;
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
    // rsyslog writes a mark and its LF separately: the program reads them in two reads.
    omprog.write_and_see_it_read(b"BEGIN TRANSACTION").await;
    omprog.write(b"\n").await;
    assert_eq!(omprog.reply().await, "OK");
    let messages: Vec<String> = (0..50).map(|i| format!("batch message {i}")).collect();
    for message in &messages {
        omprog.write(format!("{message}\n").as_bytes()).await;
        assert_eq!(omprog.reply().await, "DEFER_COMMIT");
    }
    omprog.write_and_see_it_read(b"COMMIT TRANSACTION").await;
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
    let (server, outage) = TestServer::down(502).await;
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
    // The outage lasts until the commit has been kept alive with two dots and the messages
    // have been retried (more 502s than their first attempts).
    let dots = omprog.read_exactly(2).await;
    assert_eq!(dots, "..", "keep-alive dots while the commit waits");
    let retried = support::eventually(LIMIT, || server.replied(502) > 3).await;
    assert!(retried, "retried during the outage: {:?}", server.seen());
    outage.end();
    let rest = omprog.reply().await;
    assert_eq!(rest.trim_start_matches('.'), "OK", "{dots}{rest:?}");
    assert_eq!(decoded(&server, 503), set(&["a", "b", "c"]));
    let run = omprog.finish().await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_past_its_deadline_is_answered_with_an_error() {
    // Refused for the whole test.
    let nowhere = ReservedPort::new();
    let url = nowhere.url();
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
    // The program's own deadline is the subject: the error comes no sooner than it (a lower
    // bound, which a slow machine cannot break).
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
    let nowhere = ReservedPort::new();
    let url = nowhere.url();
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
    // Each signal was handled (logged) before the next step, so the message below is read by
    // a program that has already had both.
    support::signal(&omprog.watched.child, "HUP");
    omprog.watched.line_with("SIGHUP ignored", LIMIT).await;
    support::signal(&omprog.watched.child, "INT");
    omprog.watched.line_with("SIGINT ignored", LIMIT).await;
    omprog.write(b"still here\n").await;
    assert_eq!(omprog.reply().await, "OK");
    let run = omprog.finish().await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(decoded(&server, 503), set(&["still here"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_holds_the_first_ok_until_the_load_balancer_accepts() {
    let (server, outage) = TestServer::down(502).await;
    let url = server.url();
    let mut omprog = Omprog::send(
        &url,
        "--confirm --probe --retry-initial 50ms --retry-max 200ms --keepalive-interval 200ms",
    );
    // The outage lasts until the probe was retried and rsyslog was kept waiting with dots.
    let dots = omprog.read_exactly(2).await;
    assert_eq!(dots, "..", "dots while probing");
    let retried = support::eventually(LIMIT, || server.replied(502) >= 2).await;
    assert!(retried, "the probe was retried: {:?}", server.seen());
    outage.end();
    let ready = omprog.reply().await;
    assert_eq!(
        ready.trim_start_matches('.'),
        "OK",
        "dots while probing, then OK: {dots}{ready:?}"
    );
    let seen = server.seen();
    assert!(seen.len() >= 3, "the probe was retried: {seen:?}");
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
    // Refused for the whole test; the probe's next try is a minute away once it has failed.
    let nowhere = ReservedPort::new();
    let url = nowhere.url();
    let omprog = Omprog::send(
        &url,
        "--confirm --probe --retry-initial 60s --retry-max 60s",
    );
    omprog.watched.line_with("probe failed", LIMIT).await;
    let begun = Instant::now();
    let run = omprog.finish().await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    run.assert_logged("stopped before the probe succeeded; nothing was read");
    // The subject: end of input cuts the minute-long wait for the next probe short, well
    // within rsyslog's closeTimeout of 5 s (after which rsyslog would kill the program).
    assert!(
        begun.elapsed() < Duration::from_secs(5),
        "ended {:?} after end of input; rsyslog's closeTimeout is 5 s",
        begun.elapsed()
    );
}
