//! Bounded memory under a stalled load balancer, and no work while idle. These read the
//! process's own counters from /proc and its metrics; they bound quantities, not speed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::observe::Metrics;
use crate::support;
use crate::support::{Reply, TestServer, Watched};
use tokio::io::AsyncWriteExt;

/// How long a test waits for something it expects to happen.
const LIMIT: Duration = Duration::from_secs(60);

/// `--concurrency`'s default: the delivery workers, each holding one message.
const CONCURRENCY: f64 = 64.0;

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/{pid}/status"))
}

/// utime + stime in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after_name = &stat[stat.rfind(')').expect("command name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields[i].parse::<u64>().expect("tick count");
    ticks(11) + ticks(12)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_load_balancer_stops_the_reader_and_bounds_memory() {
    let server = TestServer::start(|_, _| Reply::Hang).await;
    let url = server.url();
    let mut child = support::spawn(&[
        "send",
        &url,
        "--request-timeout",
        "600s",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let pid = child.id().expect("pid");
    let mut stdin = child.stdin.take().expect("stdin");
    let sender = Watched::new(child);
    let metrics = Metrics::of(&sender).await;

    // A million lines of ~100 bytes: 100 MB that must not end up in memory.
    let line = format!("{}\n", "m".repeat(99));
    let chunk: Vec<u8> = line.repeat(640).into_bytes();
    let total = chunk.len() as u64 * (1_000_000 / 640);
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let writer = tokio::spawn(async move {
        for _ in 0..(1_000_000 / 640) {
            if stdin.write_all(&chunk).await.is_err() {
                return;
            }
            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    });

    // Stalled: the queue is full, and nothing leaves it while every request hangs. From here
    // on the reader may not read a line more: what it has read is what the queue and the
    // requests in flight hold (and the one line waiting for room), and stays so.
    let capacity = metrics.value("drifter_queue_messages_capacity").await;
    metrics
        .reaches("drifter_queue_messages", capacity, LIMIT)
        .await;
    let read = metrics.value("drifter_messages_read_total").await;
    assert!(
        read <= capacity + CONCURRENCY + 1.0,
        "read {read} messages into a queue of {capacity} and {CONCURRENCY} workers"
    );
    let stuck_at = written.load(Ordering::SeqCst);
    assert!(
        stuck_at < total / 10,
        "read {stuck_at} of {total} bytes before pushing back"
    );
    // 10,000 queued messages of 100 bytes plus buffers: a few MiB, far from the 100 MB offered.
    let rss_kib = proc_status_kib(pid, "VmRSS:");
    assert!(rss_kib < 64 * 1024, "RSS {rss_kib} KiB while stalled");
    assert!(
        server.seen().len() <= 64,
        "no more requests in flight than --concurrency"
    );

    assert_eq!(
        metrics.value("drifter_messages_read_total").await,
        read,
        "the reader kept reading"
    );

    let mut child = sender.child;
    child.start_kill().expect("kill");
    let _ = child.wait().await;
    writer.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_program_uses_no_cpu_and_sends_nothing() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let url = server.url();
    let mut child = support::spawn(&["send", &url, "--metrics-listen", "127.0.0.1:0"]);
    let pid = child.id().expect("pid");
    let stdin = child.stdin.take().expect("stdin");
    let sender = Watched::new(child);
    // Started up (ready, waiting for input), so start-up's own work is not counted.
    Metrics::of(&sender).await.ready(LIMIT).await;
    let before = cpu_ticks(pid);
    // The subject: three seconds of idling, in which the program must do nothing. This wait
    // is the measured interval, not a synchronisation; a slow machine can only make the
    // program use less of it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_ticks(pid) - before;
    // A busy loop would use ~300 ticks in 3 s; allow a couple for the scheduler's rounding.
    assert!(used <= 2, "{used} clock ticks of CPU while idle");
    assert!(
        server.seen().is_empty(),
        "sent {} requests with no input",
        server.seen().len()
    );
    drop(stdin);
    let run = sender.wait(Duration::from_secs(30)).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
}

/// No task outlives the run (issue 22): the load balancer answers the first request (its
/// connection then waits idle for the next) and never the others, a scrape connection never
/// sends its request, and after the drain deadline every connection task, the metrics
/// server's and the spool's are ended and joined, none left for the runtime to drop.
#[tokio::test(flavor = "multi_thread")]
async fn at_exit_no_task_is_left_running_though_peers_never_answer() {
    let server = TestServer::start(|number, _| match number {
        0 => Reply::Status(503),
        _ => Reply::Hang,
    })
    .await;
    let url = server.url();
    let spool = tempfile::tempdir().expect("spool dir");
    let spool_dir = spool.path().display().to_string();
    let mut child = support::spawn(&[
        "send",
        &url,
        "--request-timeout",
        "600s",
        "--drain-timeout",
        "1s",
        "--spool",
        &spool_dir,
        "--metrics-listen",
        "127.0.0.1:0",
        "--log-level",
        "info,drifter_rsyslog=debug",
    ]);
    let mut stdin = child.stdin.take().expect("stdin");
    let sender = Watched::new(child);
    let silent_scraper = tokio::net::TcpStream::connect(sender.metrics_address().await)
        .await
        .expect("connect to the metrics server");
    stdin
        .write_all(b"one\ntwo\nthree\n")
        .await
        .expect("write lines");
    let sent = support::eventually(LIMIT, || server.seen().len() == 3).await;
    assert!(sent, "not every line reached the server");
    drop(stdin);
    let run = sender.wait(LIMIT).await;
    assert_eq!(run.code(), Some(0), "left in the spool: {}", run.stderr);
    run.assert_logged("drain deadline of 1s passed");
    run.assert_logged(" 0 tasks left running at exit");
    drop(silent_scraper);
}
