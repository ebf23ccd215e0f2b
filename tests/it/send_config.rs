//! Bad usage and configuration: exit status 2 with one clear line, before any line is read.

use std::time::Duration;

use crate::support::{Reply, TestServer, run_with_input};

async fn rejected(args: &[&str], expected: &str) {
    let run = run_with_input(
        args,
        b"a line that must not be sent\n",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(run.code(), Some(2), "{args:?}: stderr: {}", run.stderr);
    let first_line = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first_line.contains(expected),
        "{args:?}: expected `{expected}` in: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_configuration_exits_2_before_reading() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let empty_pem = dir.path().join("empty.pem");
    std::fs::write(&empty_pem, "no certificates here\n").expect("write");
    let empty_pem = empty_pem.to_str().expect("utf-8");

    rejected(
        &["send", "ftp://example.com/"],
        "the scheme must be http or https",
    )
    .await;
    rejected(&["send", "example.com"], "is not a valid URL").await;
    rejected(
        &["send", "http://example.com/?tag=x"],
        "must not have a query string",
    )
    .await;
    rejected(
        &["send", &url, "--ca-cert", "/nonexistent/ca.pem"],
        "cannot read CA certificate file /nonexistent/ca.pem",
    )
    .await;
    rejected(
        &["send", &url, "--ca-cert", empty_pem],
        "no certificate found",
    )
    .await;
    rejected(&["send", &url, "--accept", "5xx"], "not a status list").await;
    rejected(
        &["send", &url, "--proxy", "ftp://x"],
        "not a valid proxy URL",
    )
    .await;
    // Listened on by the test until it ends, so the program cannot bind it.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = holder.local_addr().expect("address").to_string();
    rejected(
        &["send", &url, "--metrics-listen", &taken],
        "cannot listen on --metrics-listen",
    )
    .await;
    rejected(&["send", &url, "--concurrency", "0"], "--concurrency").await;
    rejected(&["send", &url, "--drain-timeout", "soon"], "not a duration").await;
    rejected(
        &["send", &url, "--max-url-bytes", "2"],
        "leaves no room for the message",
    )
    .await;
    rejected(
        &["send", &url, "--dry-run", "--confirm"],
        "cannot be used with",
    )
    .await;
    rejected(&["send", &url, "--ids", "uuid"], "invalid value 'uuid'").await;
    rejected(
        &["send", &url, "--dead-letter", "/nonexistent/dir/dead.log"],
        "cannot open dead-letter file",
    )
    .await;
    rejected(
        &["send", &url, "--log-level", "loud=="],
        "invalid --log-level",
    )
    .await;
    rejected(&["send"], "required").await;
    assert!(
        server.seen().is_empty(),
        "nothing may be sent with a bad configuration"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn our_own_errors_are_one_line() {
    let run = run_with_input(
        &["send", "ftp://example.com/"],
        b"",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(run.stderr.lines().count(), 1, "stderr: {}", run.stderr);
    assert!(
        run.stderr.starts_with("drifter-rsyslog: error: "),
        "stderr: {}",
        run.stderr
    );
}

/// Issue 21 item 12: a `--max-line-bytes` that one spool record cannot hold is refused at
/// start, with nothing created and nothing read. It was accepted: a line above 1 GiB was
/// acknowledged and then dropped as damaged, and one above `--spool-max-bytes` waited for an
/// empty spool, which never comes during an outage.
#[tokio::test(flavor = "multi_thread")]
async fn a_line_bound_the_spool_cannot_hold_is_refused_at_start() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("spool");
    let spool = spool.to_str().expect("utf-8");
    for (spool_max, line_max) in [("64K", "1M"), ("8G", "2G")] {
        rejected(
            &[
                "send",
                "--confirm",
                "--spool",
                spool,
                "--spool-max-bytes",
                spool_max,
                "--max-line-bytes",
                line_max,
                &url,
            ],
            "--max-line-bytes",
        )
        .await;
        assert!(!dir.path().join("spool").exists(), "nothing created");
    }
    assert!(server.seen().is_empty(), "nothing sent");
}
