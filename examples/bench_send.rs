//! Throughput and CPU cost of `drifter-rsyslog send` end to end, against wrk and a raw HTTP
//! client on the same server, in the same run.
//!
//!     apt-get install nginx-light wrk
//!     cargo build --release && cargo run --release --example bench_send -- [LINES] [ROUNDS]
//!
//! It starts a private nginx (one worker, answering 503 and writing its access log, as a
//! load balancer would) and, alternating for ROUNDS rounds, measures:
//! (a) wrk with 64 keep-alive connections for 3 s, on one message's request target: what a
//!     minimal C client gets from this server on this machine;
//! (b) a tight hyper client loop sending the same requests as (c), pre-encoded, with the same
//!     concurrency (64) and keep-alive, in its own process: today's baseline;
//! (c) the real binary sending LINES lines of ~200 bytes from a file on stdin at its default
//!     settings, with its CPU time (user + system) per message and its peak RSS;
//! (d) the same with `--spool` (a new spool directory each round, default sync policy).
//! Ratios to (a) and (b), and of (d) to (c), of the same round are what to compare: the
//! machine is shared.

mod support;

use std::time::Duration;

use support::CONCURRENCY;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if support::run_as_raw_client_if_asked().await? {
        return Ok(());
    }
    let (lines, rounds) = support::count_and_rounds(200_000, 5)?;
    let binary = support::binary()?;
    let nginx = support::Nginx::start()?;
    let url = nginx.url.clone();

    let dir = tempfile::tempdir()?;
    let support::Workload {
        input_path,
        input_bytes,
        targets,
    } = support::workload(dir.path(), lines)?;
    let targets_path = dir.path().join("targets");
    std::fs::write(&targets_path, targets.join("\n") + "\n")?;
    let wrk_url = format!("{}{}", url.trim_end_matches('/'), targets[0]);

    println!(
        "{lines} lines of ~{} bytes, concurrency {CONCURRENCY}, {rounds} rounds, nginx answering 503 on {url}",
        input_bytes / lines.max(1)
    );
    let mut measured = Vec::new();
    for round in 1..=rounds {
        let (wrk, wrk_cpu) = support::wrk(&wrk_url, CONCURRENCY, 3).await?;
        let raw = support::raw_client_rate(&url, &targets_path).await?;
        let run = support::run_binary(&binary, &["send", &url, "--log-level", "warn"], &input_path)
            .await?;
        let rate = lines as f64 / run.elapsed.as_secs_f64();
        let spool = dir.path().join(format!("spool-{round}"));
        let spool = spool.display().to_string();
        let spooled = support::run_binary(
            &binary,
            &["send", &url, "--log-level", "warn", "--spool", &spool],
            &input_path,
        )
        .await?;
        let spooled_rate = lines as f64 / spooled.elapsed.as_secs_f64();
        let per_message = |cpu: Duration| micros(cpu) / lines.max(1) as f64;
        let this = Round {
            to_wrk: rate / wrk,
            to_raw: rate / raw,
            cpu: per_message(run.cpu.0 + run.cpu.1),
            user: per_message(run.cpu.0),
            wrk_cpu: micros(wrk_cpu),
            peak_rss_mib: run.peak_rss_kib as f64 / 1024.0,
            spool_to_send: spooled_rate / rate,
            spool_cpu: per_message(spooled.cpu.0 + spooled.cpu.1),
            spool_rss_mib: spooled.peak_rss_kib as f64 / 1024.0,
        };
        println!(
            "round {round}: wrk {wrk:>7.0} req/s ({:>4.1} µs CPU/req)   raw client {raw:>7.0} req/s   send {rate:>7.0} msg/s ({:>4.1} µs CPU/msg, {:.1} of it user; peak RSS {:.1} MiB)   send/wrk {:.2}   send/raw {:.2}",
            this.wrk_cpu, this.cpu, this.user, this.peak_rss_mib, this.to_wrk, this.to_raw,
        );
        println!(
            "         send --spool {spooled_rate:>7.0} msg/s ({:>4.1} µs CPU/msg; peak RSS {:.1} MiB)   spool/send {:.2}",
            this.spool_cpu, this.spool_rss_mib, this.spool_to_send,
        );
        measured.push(this);
    }
    let median = |field: fn(&Round) -> f64| {
        let mut values: Vec<f64> = measured.iter().map(field).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let peak = measured.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max);
    println!(
        "median of {rounds} rounds: send/wrk {:.2}, send/raw client {:.2}; CPU {:.1} µs/msg, {:.1} of it user (wrk {:.1} µs/req); peak RSS {peak:.1} MiB",
        median(|r| r.to_wrk),
        median(|r| r.to_raw),
        median(|r| r.cpu),
        median(|r| r.user),
        median(|r| r.wrk_cpu),
    );
    let spool_peak = measured.iter().map(|r| r.spool_rss_mib).fold(0.0, f64::max);
    println!(
        "send --spool: {:.2} of send's rate; CPU {:.1} µs/msg; peak RSS {spool_peak:.1} MiB",
        median(|r| r.spool_to_send),
        median(|r| r.spool_cpu),
    );
    Ok(())
}

/// One round's figures; CPU times in µs.
struct Round {
    to_wrk: f64,
    to_raw: f64,
    cpu: f64,
    user: f64,
    wrk_cpu: f64,
    peak_rss_mib: f64,
    spool_to_send: f64,
    spool_cpu: f64,
    spool_rss_mib: f64,
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
