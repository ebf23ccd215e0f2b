//! `--metrics-listen` of `send` and `mock-elb`: what /metrics says during and after a run
//! matches what happened (and the exit summary), the exposition passes `promtool check
//! metrics`, and /healthz and /readyz follow start-up, probe and drain, never the load
//! balancer's health.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::support;
use crate::support::{Missing, TestServer, Watched};

const LIMIT: Duration = Duration::from_secs(60);

/// The samples of a scrape, `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(addr: SocketAddr) -> (String, BTreeMap<String, f64>) {
    let (status, text) = support::http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    let parsed = samples(&text);
    (text, parsed)
}

/// `promtool check metrics` on a scrape.
pub(crate) fn promtool_accepts(text: &str) -> Result<(), Missing> {
    let Some(promtool) = support::on_path("promtool") else {
        return Err(Missing::because(
            "promtool is not on PATH",
            "apt-get install prometheus",
        ));
    };
    let mut child = support::clean_command(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start promtool");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool ran");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Whether `path` answers `status` before `limit` passes, asked every 50 ms.
async fn answers_within(addr: SocketAddr, path: &str, status: u16, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if support::http_get(addr, path).await.0 == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn counters_match_what_happened_and_the_summary() -> Result<(), Missing> {
    let server = TestServer::rejecting(b"bad").await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let dead = dir.path().join("dead.log");
    let mut child = Watched::new(support::spawn(&[
        "send",
        &url,
        "--metrics-listen",
        "127.0.0.1:0",
        "--dead-letter",
        dead.to_str().expect("utf-8"),
    ]));
    let addr = child.metrics_address().await;
    let (text, before) = scrape(addr).await;
    assert_eq!(before["drifter_messages_read_total"], 0.0);
    assert_eq!(before["drifter_requests_total{code=\"error\"}"], 0.0);
    assert_eq!(
        before["drifter_messages_lost_total{reason=\"drain_deadline\"}"],
        0.0
    );
    promtool_accepts(&text)?;

    let mut stdin = child.child.stdin.take().expect("stdin is piped");
    let (mut input, _) = support::numbered(100, "counted");
    input.extend_from_slice(b"bad one\nbad two\nbad three\n\n");
    stdin.write_all(&input).await.expect("write");
    assert!(support::eventually(LIMIT, || server.seen().len() >= 103).await);
    // The answers are in; their messages are settled a moment later.
    let mut scraped = scrape(addr).await;
    for _ in 0..200 {
        let settled = scraped.1.get("drifter_messages_delivered_total") == Some(&100.0)
            && scraped.1.get("drifter_messages_dead_lettered_total") == Some(&3.0);
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        scraped = scrape(addr).await;
    }
    let (text, during) = scraped;
    promtool_accepts(&text)?;
    for (series, expected) in [
        ("drifter_messages_read_total", 103.0),
        ("drifter_lines_skipped_total{reason=\"empty\"}", 1.0),
        ("drifter_messages_delivered_total", 100.0),
        ("drifter_messages_dead_lettered_total", 3.0),
        ("drifter_requests_total{code=\"503\"}", 100.0),
        ("drifter_requests_total{code=\"404\"}", 3.0),
        ("drifter_queue_messages", 0.0),
        ("drifter_requests_in_flight", 0.0),
        ("drifter_delivery_up", 1.0),
        (
            "drifter_request_duration_seconds_count{outcome=\"accepted\"}",
            100.0,
        ),
        (
            "drifter_request_duration_seconds_count{outcome=\"rejected\"}",
            3.0,
        ),
    ] {
        assert_eq!(during.get(series), Some(&expected), "{series}");
    }
    let target_bytes: usize = server.seen().iter().map(|s| s.target.len()).sum();
    assert_eq!(
        during["drifter_request_target_bytes_total"],
        target_bytes as f64
    );
    assert!(during["drifter_last_delivery_timestamp_seconds"] > 1e9);
    drop(stdin);
    let run = child.wait(LIMIT).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    run.assert_logged(
        "read 103 (+1 empty lines), delivered 100, retried 0, dead-lettered 3, lost 0",
    );
    Ok(())
}

async fn health_follows_start_up_and_drain_not_the_load_balancer() -> Result<(), Missing> {
    // Down until the probe was seen refused: --probe holds readiness until it is accepted.
    let (server, outage) = TestServer::down(502).await;
    let url = server.url();
    let mut child = Watched::new(support::spawn(&[
        "send",
        &url,
        "--probe",
        "--retry-initial",
        "50ms",
        "--retry-max",
        "200ms",
        "--drain-timeout",
        "3s",
        "--metrics-listen",
        "127.0.0.1:0",
    ]));
    let addr = child.metrics_address().await;
    assert_eq!(support::http_get(addr, "/healthz").await.0, 200);
    child.line_with("probe failed", LIMIT).await;
    assert!(support::eventually(LIMIT, || server.replied(502) >= 2).await);
    assert_eq!(
        support::http_get(addr, "/readyz").await.0,
        503,
        "not ready while the probe waits"
    );
    outage.end();
    assert!(
        answers_within(addr, "/readyz", 200, Duration::from_secs(15)).await,
        "ready once the probe was accepted"
    );

    // Now the load balancer goes away: health and readiness do not change.
    let mut stdin = child.child.stdin.take().expect("stdin is piped");
    stdin.write_all(b"one\n").await.expect("write");
    assert!(support::eventually(LIMIT, || !server.answered(503).is_empty()).await);
    outage.begin();
    stdin.write_all(b"two\n").await.expect("write");
    child.line_with("delivery failing", LIMIT).await;
    assert_eq!(support::http_get(addr, "/healthz").await.0, 200);
    assert_eq!(support::http_get(addr, "/readyz").await.0, 200);

    // End of input: draining until the deadline, then gone.
    drop(stdin);
    assert!(
        answers_within(addr, "/healthz", 503, Duration::from_secs(2)).await,
        "unhealthy while draining"
    );
    assert_eq!(support::http_get(addr, "/readyz").await.0, 503);
    let (_, scraped) = scrape(addr).await;
    assert_eq!(
        scraped.get("drifter_delivery_up"),
        Some(&0.0),
        "the outage shows in the metrics"
    );
    let run = child.wait(LIMIT).await;
    assert_eq!(run.code(), Some(1), "two was lost: {}", run.stderr);
    Ok(())
}

async fn the_stand_in_counts_what_it_answered_and_logged() -> Result<(), Missing> {
    let stand = support::Stand::start(&["--metrics-listen", "127.0.0.1:0"]).await;
    let addr = stand.metrics_address().await;
    assert_eq!(support::http_get(addr, "/readyz").await.0, 200);
    let (input, _) = support::numbered(50, "stand");
    let sent = support::run_with_input(&["send", &stand.url], &input, LIMIT).await;
    assert_eq!(sent.code(), Some(0), "send: {}", sent.stderr);
    // An answer goes out once its entry is handed to the log writer, which writes it soon
    // after.
    let mut scraped = BTreeMap::new();
    for _ in 0..100 {
        let (text, now) = scrape(addr).await;
        promtool_accepts(&text)?;
        scraped = now;
        if scraped.get("mock_elb_logged_entries_total") == Some(&50.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        scraped.get("mock_elb_requests_total{code=\"503\"}"),
        Some(&50.0)
    );
    assert_eq!(scraped.get("mock_elb_logged_entries_total"), Some(&50.0));
    stand.stop("TERM").await;
    Ok(())
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    crate::trials![
        counters_match_what_happened_and_the_summary,
        health_follows_start_up_and_drain_not_the_load_balancer,
        the_stand_in_counts_what_it_answered_and_logged,
    ]
}
