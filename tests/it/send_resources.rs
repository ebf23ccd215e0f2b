//! Bounded memory under a stalled load balancer, and no work while idle. These read the
//! process's own counters from /proc; they bound quantities, not speed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::support;
use crate::support::{Reply, TestServer};
use tokio::io::AsyncWriteExt;

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
    let mut child = support::spawn(&["send", &url, "--request-timeout", "60s"]);
    let pid = child.id().expect("pid");
    let mut stdin = child.stdin.take().expect("stdin");

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

    // Wait until the writer is stuck: no progress for a whole second.
    let mut last = u64::MAX;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = written.load(Ordering::SeqCst);
        if now == last {
            break;
        }
        last = now;
    }
    let stuck_at = written.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        written.load(Ordering::SeqCst),
        stuck_at,
        "the reader kept reading"
    );
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

    child.start_kill().expect("kill");
    let _ = child.wait().await;
    writer.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_program_uses_no_cpu_and_sends_nothing() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let url = server.url();
    let mut child = support::spawn(&["send", &url]);
    let pid = child.id().expect("pid");
    let stdin = child.stdin.take().expect("stdin");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cpu_ticks(pid);
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
    let run = support::wait(child, Duration::from_secs(30)).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
}
