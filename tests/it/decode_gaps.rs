//! Gap reports a person can trust: `decode` counts a sequence number as missing only once
//! nothing can still bring it. A node's file that lands late under `--follow`, a window that
//! cuts through a sender's numbers, and a sender restarted with its spool give no gap; a real
//! loss is reported, once its grace has passed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use drifter_rsyslog::access_log::{self, Balancer, Format, Request};
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::{self, ReservedPort, Stand, Watched};

const LIMIT: Duration = Duration::from_secs(60);
const SENDER: &str = "5e9d3a1b0c7f";

fn utc(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).expect("time")
}

/// An ALB log file of node `node_ip` for the interval ending at `end`, named and placed as AWS
/// does, holding message `m<n>` numbered `n` by [`SENDER`] for each `(n, logged at)`.
pub fn alb_file(root: &Path, node_ip: &str, end: &str, entries: &[(u64, &str)]) -> PathBuf {
    alb_file_of(root, "123456789012", node_ip, end, entries)
}

/// [`alb_file`], of a load balancer in `account`.
pub fn alb_file_of(
    root: &Path,
    account: &str,
    node_ip: &str,
    end: &str,
    entries: &[(u64, &str)],
) -> PathBuf {
    let end = utc(end);
    let day = end
        .format(format_description!("[year]/[month]/[day]"))
        .expect("format");
    let stamp = end
        .format(format_description!("[year][month][day]T[hour][minute]Z"))
        .expect("format");
    let balancer = Balancer {
        name: "lb".into(),
        id: "0123456789abcdef".into(),
        account: account.into(),
        region: "us-east-1".into(),
        node_ip: node_ip.into(),
    };
    let dir = root.join(format!(
        "AWSLogs/{account}/elasticloadbalancing/us-east-1/{day}"
    ));
    std::fs::create_dir_all(&dir).expect("create dirs");
    let mut lines = Vec::new();
    for &(number, at) in entries {
        let request = Request {
            time: utc(at),
            client: ([10, 1, 2, 3], 40000).into(),
            method: "GET".into(),
            url: format!("http://lb.example:80/?m{number}&q={SENDER}.{number}").into_bytes(),
            version: "HTTP/1.1".into(),
            user_agent: Some(b"drifter-rsyslog/0.1.0".to_vec()),
            status: 204,
            received_bytes: 0,
            sent_bytes: 0,
            tls: None,
            unreadable: false,
        };
        access_log::write_entry(Format::Alb, &balancer, &request, &mut lines);
    }
    let name = format!(
        "{account}_elasticloadbalancing_us-east-1_app.lb.0123456789abcdef_{stamp}_{node_ip}_x.log"
    );
    // Written beside, then renamed: `--follow` never sees half a file.
    let path = dir.join(name);
    let partial = dir.join(".partial");
    std::fs::write(&partial, lines).expect("write log");
    std::fs::rename(&partial, &path).expect("rename log");
    path
}

/// `decode --follow` over `dir` with `extra`, its stdout lines and its stderr. The reorder
/// window is a second, so each line is written as soon as the pinned clock allows.
fn follow(
    dir: &Path,
    extra: &[&str],
) -> (
    Watched,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let dir = dir.display().to_string();
    let mut args = vec![
        "decode",
        "--follow",
        "--poll-interval",
        "100ms",
        "--reorder-window",
        "1s",
    ];
    args.extend_from_slice(extra);
    args.push(&dir);
    let mut child = support::spawn(&args);
    let stdout = child.stdout.take().expect("stdout is piped");
    (Watched::new(child), BufReader::new(stdout).lines())
}

async fn next_lines(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    count: usize,
) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..count {
        let line = tokio::time::timeout(LIMIT, lines.next_line())
            .await
            .expect("a line within the limit")
            .expect("read stdout")
            .expect("decode is still running");
        got.push(line);
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_a_nodes_file_landing_after_the_next_intervals_is_no_gap() {
    let tree = tempfile::tempdir().expect("temp dir");
    // Node A's files of two intervals; node B's file of the first lands after both.
    alb_file(
        tree.path(),
        "10.0.0.1",
        "2026-12-01T12:05:00Z",
        &[(1, "2026-12-01T12:01:00Z"), (2, "2026-12-01T12:02:00Z")],
    );
    alb_file(
        tree.path(),
        "10.0.0.1",
        "2026-12-01T12:10:00Z",
        &[(5, "2026-12-01T12:06:00Z"), (6, "2026-12-01T12:07:00Z")],
    );
    // "Now" is when node B's file is late; the clock runs on from there, far from the 10
    // minutes of ALB's grace past the entries around the gap.
    let (watched, mut lines) = follow(tree.path(), &["--now", "2026-12-01T12:11:00Z"]);
    assert_eq!(next_lines(&mut lines, 4).await, ["m1", "m2", "m5", "m6"]);
    alb_file(
        tree.path(),
        "10.0.0.2",
        "2026-12-01T12:05:00Z",
        &[(3, "2026-12-01T12:03:00Z"), (4, "2026-12-01T12:04:00Z")],
    );
    assert_eq!(next_lines(&mut lines, 2).await, ["m3", "m4"]);
    support::signal(&watched.child, "TERM");
    let run = watched.wait(LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert!(
        !run.stderr.contains("missing ("),
        "no gap reported: {}",
        run.stderr
    );
    run.assert_logged("decoded 6 messages");
    run.assert_logged("0 missing by sequence number; 2 late (written out of order)");
    assert!(!run.stderr.contains("not counted"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_reports_a_real_loss_once_its_grace_has_passed_and_counts_it_in_its_metrics() {
    let tree = tempfile::tempdir().expect("temp dir");
    // Number 3's entry was lost: the file holds 1, 2, 4.
    alb_file(
        tree.path(),
        "10.0.0.1",
        "2026-12-01T12:05:00Z",
        &[
            (1, "2026-12-01T12:01:00Z"),
            (2, "2026-12-01T12:02:00Z"),
            (4, "2026-12-01T12:04:00Z"),
        ],
    );
    // The clock starts at the last entry; a grace of 2 seconds passes while decode follows.
    let (watched, mut lines) = follow(
        tree.path(),
        &[
            "--now",
            "2026-12-01T12:04:00Z",
            "--gap-grace",
            "2s",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let metrics = watched.metrics_address().await;
    assert_eq!(next_lines(&mut lines, 3).await, ["m1", "m2", "m4"]);
    let reported = watched.line_with("sequence numbers 3 missing", LIMIT).await;
    assert!(
        reported.contains(&format!(
            "sender {SENDER}: sequence numbers 3 missing (1 messages)"
        )),
        "{reported}"
    );
    // Published after each look: the scrape after the report shows it, per sender too.
    let counted = support::eventually_async(LIMIT, || async {
        let (status, text) = support::http_get(metrics, "/metrics").await;
        status == 200 && text.contains("drifter_decode_missing_messages_total 1\n")
    })
    .await;
    // Counters only grow: a later scrape shows it too.
    let (_, scraped) = support::http_get(metrics, "/metrics").await;
    assert!(counted, "{scraped}");
    for expected in [
        format!("drifter_decode_sender_missing_messages_total{{sender=\"{SENDER}\"}} 1\n"),
        "drifter_decode_messages_total 3\n".to_string(),
        "drifter_decode_late_messages_total 0\n".to_string(),
        "drifter_decode_newest_entry_timestamp_seconds 1796126640.0\n".to_string(),
    ] {
        assert!(scraped.contains(&expected), "{expected} in {scraped}");
    }
    assert_eq!(support::http_get(metrics, "/healthz").await.0, 200);
    support::signal(&watched.child, "TERM");
    let run = watched.wait(LIMIT).await;
    assert_eq!(run.code(), Some(1), "a loss: {}", run.stderr);
    run.assert_logged("1 missing by sequence number");
    assert_eq!(
        run.stderr.matches("sequence numbers 3").count(),
        1,
        "reported once: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_stopped_within_the_grace_does_not_count_the_gap() {
    let tree = tempfile::tempdir().expect("temp dir");
    alb_file(
        tree.path(),
        "10.0.0.1",
        "2026-12-01T12:05:00Z",
        &[(1, "2026-12-01T12:01:00Z"), (3, "2026-12-01T12:04:00Z")],
    );
    let (watched, mut lines) = follow(tree.path(), &["--now", "2026-12-01T12:05:00Z"]);
    assert_eq!(next_lines(&mut lines, 2).await, ["m1", "m3"]);
    support::signal(&watched.child, "TERM");
    let run = watched.wait(LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    run.assert_logged("0 missing by sequence number");
    run.assert_logged(
        "not counted as missing: 1 sequence numbers in gaps still within --gap-grace",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn since_and_until_cutting_through_a_senders_numbers_report_no_gap() {
    let tree = tempfile::tempdir().expect("temp dir");
    // Numbers logged out of order around both edges of 12:00-13:00: 2 just before --since
    // and 9 just at --until, each between numbers logged inside the window.
    alb_file(
        tree.path(),
        "10.0.0.1",
        "2026-12-01T12:05:00Z",
        &[
            (1, "2026-12-01T12:00:01Z"),
            (2, "2026-12-01T11:59:59Z"),
            (3, "2026-12-01T12:00:02Z"),
            (4, "2026-12-01T12:01:00Z"),
            (5, "2026-12-01T12:02:00Z"),
        ],
    );
    alb_file(
        tree.path(),
        "10.0.0.1",
        "2026-12-01T13:00:00Z",
        &[
            (6, "2026-12-01T12:58:00Z"),
            (7, "2026-12-01T12:59:57Z"),
            (8, "2026-12-01T12:59:59Z"),
        ],
    );
    alb_file(
        tree.path(),
        "10.0.0.1",
        "2026-12-01T13:05:00Z",
        &[(9, "2026-12-01T13:00:00Z"), (10, "2026-12-01T12:59:58Z")],
    );
    let dir = tree.path().display().to_string();
    let args = [
        "decode",
        "--since",
        "2026-12-01T12:00:00Z",
        "--until",
        "2026-12-01T13:00:00Z",
        &dir,
    ];
    let run = support::run_with_input(&args, b"", LIMIT).await;
    assert_eq!(run.code(), Some(0), "no loss: {}", run.stderr);
    let decoded = String::from_utf8_lossy(&run.stdout).into_owned();
    assert_eq!(
        decoded.lines().collect::<Vec<_>>(),
        ["m1", "m3", "m4", "m5", "m6", "m7", "m8", "m10"]
    );
    run.assert_logged("0 missing by sequence number");
    run.assert_logged("not counted as missing: 2 sequence numbers in gaps within --edge-slack");
    // Without slack, the cut is taken for a loss: what the slack is for.
    let mut strict = args.to_vec();
    strict.splice(1..1, ["--edge-slack", "0s"]);
    let run = support::run_with_input(&strict, b"", LIMIT).await;
    assert_eq!(run.code(), Some(1), "{}", run.stderr);
    run.assert_logged("2 messages missing, sequence numbers 2, 9");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sender_restarted_with_its_spool_continues_its_numbers_without_a_gap() {
    let spool_dir = tempfile::tempdir().expect("temp dir");
    let spool = spool_dir.path().display().to_string();
    // The first process spools three messages while the load balancer is unreachable, and is
    // killed; the second replays them, then sends three more.
    let closed = ReservedPort::new();
    let closed_url = closed.url();
    let mut first = support::spawn(&["send", "--spool", &spool, "--sequence", &closed_url]);
    let mut stdin = first.stdin.take().expect("stdin is piped");
    stdin.write_all(b"a1\na2\na3\n").await.expect("write input");
    let held = support::eventually_async(LIMIT, || async {
        support::spooled(spool_dir.path()).await >= 3
    })
    .await;
    assert!(held, "the spool holds the first three");
    first.start_kill().expect("SIGKILL");
    let _ = first.wait().await;
    drop(stdin);
    let stand = Stand::start(&["--format", "alb"]).await;
    let args = ["send", "--spool", &spool, "--sequence", &stand.url];
    let sent = support::run_with_input(&args, b"b1\nb2\nb3\n", LIMIT).await;
    assert_eq!(sent.code(), Some(0), "{}", sent.stderr);
    sent.assert_logged("3 recovered from the spool");
    let logs = stand.stop("TERM").await;
    let dir = logs.path().display().to_string();
    let run = support::run_with_input(&["decode", "--json", &dir], b"", LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    run.assert_logged("decoded 6 messages");
    run.assert_logged("0 missing by sequence number");
    let numbered: std::collections::BTreeSet<(String, u64)> = run
        .stdout
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let row: serde_json::Value = serde_json::from_slice(line).expect("JSON");
            (
                row["sender"].as_str().unwrap_or_default().to_string(),
                row["sequence"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    let senders: std::collections::BTreeSet<&String> = numbered.iter().map(|(s, _)| s).collect();
    assert_eq!(
        senders.len(),
        1,
        "one sender across the restart: {numbered:?}"
    );
    let numbers: Vec<u64> = numbered.iter().map(|(_, n)| *n).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
}
