//! Throughput of `drifter-rsyslog send` end to end, against the ceiling of a raw HTTP client.
//!
//!     cargo build --release && cargo run --release --example bench_send -- [LINES] [ROUNDS]
//!
//! In one run it starts the local load-balancer stand-in (answering 503) and, alternating for
//! ROUNDS rounds, measures (a) the real binary sending LINES lines of ~200 bytes from a file on
//! stdin at its default settings, and (b) a tight hyper client loop sending the same requests,
//! pre-encoded, with the same concurrency (64) and keep-alive, run as a separate process like
//! the binary: the most any sender can do against this server on this machine. It prints the best of each, their ratio, and the
//! binary's peak RSS. Ratios, not absolute rates, are comparable across runs of a shared machine.

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use drifter_rsyslog::mock_elb::{MockElb, ServerOptions};
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const CONCURRENCY: usize = 64;
/// This program runs itself with this argument to measure the raw client in its own process.
const RAW_CLIENT_MODE: &str = "--raw-client";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some(RAW_CLIENT_MODE) {
        let (url, input) = (
            args.nth(1).context("url")?,
            args.next().context("input file")?,
        );
        let text = std::fs::read_to_string(input)?;
        let targets = text
            .lines()
            .map(|m| drifter_rsyslog::wire::encode_target("/", m.as_bytes()))
            .collect();
        println!("{}", raw_client(&url, Arc::new(targets)).await?);
        return Ok(());
    }
    let lines: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let binary = support::binary()?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let elb = MockElb::serve(
        listener,
        ServerOptions::plain(StatusCode::SERVICE_UNAVAILABLE),
        None,
    )?;
    let url = format!("http://{}/", elb.local_addr());

    let messages = sample_lines(lines);
    let dir = tempfile::tempdir()?;
    let input_path = dir.path().join("input.log");
    let input: Vec<u8> = messages
        .iter()
        .flat_map(|m| [m.as_bytes(), b"\n"].concat())
        .collect();
    std::fs::write(&input_path, &input)?;

    println!(
        "{lines} lines of ~{} bytes, concurrency {CONCURRENCY}, {rounds} rounds, server answering 503 on {url}",
        input.len() / lines.max(1)
    );
    let (mut best_binary, mut best_raw, mut peak_rss) = (0f64, 0f64, 0u64);
    for round in 1..=rounds {
        let raw = run_raw_client(&url, &input_path).await?;
        let (binary_rate, rss) = run_binary(&binary, &url, &input_path, lines).await?;
        println!(
            "round {round}: raw client {raw:>9.0} req/s   drifter-rsyslog send {binary_rate:>9.0} msg/s   peak RSS {} KiB",
            rss
        );
        best_raw = best_raw.max(raw);
        best_binary = best_binary.max(binary_rate);
        peak_rss = peak_rss.max(rss);
    }
    elb.shutdown().await;
    println!(
        "best: drifter-rsyslog {best_binary:.0} msg/s = {:.0}% of the raw client's {best_raw:.0} req/s; peak RSS {:.1} MiB",
        100.0 * best_binary / best_raw,
        peak_rss as f64 / 1024.0
    );
    Ok(())
}

/// Log-like lines of about 200 bytes with spaces and punctuation, so encoding has work to do.
fn sample_lines(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            format!(
                "<134>Nov 23 11:{:02}:{:02} web-{} app[{}]: request id={i:08} method=GET path=/api/v1/items?page={} status=200 bytes={} ua=\"Mozilla/5.0 (X11; Linux x86_64)\" t=0.0{}s region=eu-west-1 az=b",
                i / 60 % 60,
                i % 60,
                i % 7,
                1000 + i % 50,
                i % 100,
                i * 37 % 100_000,
                i % 10
            )
        })
        .collect()
}

/// The binary at default settings, stdin from a file; returns messages per second and peak RSS.
async fn run_binary(
    binary: &std::path::Path,
    url: &str,
    input: &std::path::Path,
    lines: usize,
) -> anyhow::Result<(f64, u64)> {
    let stdin = std::fs::File::open(input)?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .args(["send", url, "--log-level", "warn"])
        .stdin(Stdio::from(stdin))
        .spawn()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let pid = child.id().context("child pid")?;
    let mut peak = 0;
    let status = loop {
        if let Some(rss) = support::peak_rss_kib(pid) {
            peak = rss;
        }
        tokio::select! {
            status = child.wait() => break status?,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    let elapsed = started.elapsed();
    anyhow::ensure!(status.success(), "drifter-rsyslog exited with {status}");
    Ok((lines as f64 / elapsed.as_secs_f64(), peak))
}

async fn run_raw_client(url: &str, input: &std::path::Path) -> anyhow::Result<f64> {
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .arg(RAW_CLIENT_MODE)
        .arg(url)
        .arg(input)
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "raw client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}

/// A tight loop of pooled keep-alive GETs: the ceiling for any sender on this machine.
async fn raw_client(url: &str, targets: Arc<Vec<String>>) -> anyhow::Result<f64> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONCURRENCY)
        .build_http();
    let base = url.trim_end_matches('/').to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (client, targets, next, base) =
            (client.clone(), targets.clone(), next.clone(), base.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(target) = targets.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let uri: http::Uri = format!("{base}{target}").parse()?;
                let response = client.get(uri).await?;
                anyhow::ensure!(
                    response.status() == StatusCode::SERVICE_UNAVAILABLE,
                    "unexpected {}",
                    response.status()
                );
                response.into_body().collect().await?;
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(targets.len() as f64 / started.elapsed().as_secs_f64())
}
