//! What a message costs in access-log bytes, the figures of README's "What it costs".
//!
//!     cargo build --release && cargo run --release --example bench_log_bytes -- [LINES]
//!
//! Sends LINES (default 10,000) syslog lines of exactly 200 bytes, with the variety of real
//! ones (addresses, ids, numbers, status codes; the same pseudo-random lines every run), through
//! `send --accept 204` into `mock-elb --status 204`, once per log format, and reports per
//! message: the access-log bytes as the load balancer delivers them (Classic plain, ALB gzip),
//! ALB's uncompressed size, and the request bytes ALB logs as received.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let lines: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let binary = support::binary()?;
    let input = syslog_lines(lines);
    println!("{lines} lines of 200 bytes");
    for format in ["classic", "alb"] {
        let dir = tempfile::tempdir()?;
        send_through_stand_in(&binary, format, &input, dir.path())?;
        let files = log_files(&dir.path().join("AWSLogs"))?;
        let delivered: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()))
            .sum::<Result<u64, _>>()?;
        let per = |bytes: u64| bytes as f64 / lines as f64;
        if format == "classic" {
            println!(
                "Classic, plain:      {:>6.0} bytes per message",
                per(delivered)
            );
            continue;
        }
        let mut text = Vec::new();
        for file in &files {
            let gzip = std::fs::File::open(file)?;
            flate2::read::MultiGzDecoder::new(gzip).read_to_end(&mut text)?;
        }
        // ALB's 11th field: the bytes of the request as received, headers included.
        let received: u64 = text
            .split(|&b| b == b'\n')
            .filter_map(|line| {
                let field = line.split(|&b| b == b' ').nth(10)?;
                std::str::from_utf8(field).ok()?.parse::<u64>().ok()
            })
            .sum();
        println!(
            "ALB, gzip:           {:>6.0} bytes per message",
            per(delivered)
        );
        println!(
            "ALB, uncompressed:   {:>6.0} bytes per message",
            per(text.len() as u64)
        );
        println!(
            "request as received: {:>6.0} bytes per message",
            per(received)
        );
    }
    Ok(())
}

/// `count` syslog lines of exactly 200 bytes, pseudo-random but the same every run.
fn syslog_lines(count: usize) -> Vec<u8> {
    let mut random = fastrand::Rng::with_seed(1);
    let mut input = Vec::new();
    for i in 0..count {
        let line = format!(
            "<30>Dec  1 14:{:02}:{:02} web-{} nginx[{}]: 10.{}.{}.{} - - \"GET /api/v1/items/{}?session={:016x} HTTP/1.1\" {} {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\" rt=0.{:03} req={:024x}",
            i % 60,
            random.u8(0..60),
            i % 7,
            random.u16(1000..30000),
            random.u8(..),
            random.u8(..),
            random.u8(..),
            random.u32(1..1_000_000_000),
            random.u64(..),
            [200, 200, 200, 304, 404, 500][random.usize(0..6)],
            random.u32(100..100_000),
            random.u16(0..1000),
            random.u128(..) >> 32,
        );
        let mut bytes = line.into_bytes();
        bytes.resize(200, b'-');
        input.extend_from_slice(&bytes);
        input.push(b'\n');
    }
    input
}

/// Runs the stand-in in `format`, answering 204, sends `input` to it, and stops it.
fn send_through_stand_in(
    binary: &Path,
    format: &str,
    input: &[u8],
    dir: &Path,
) -> anyhow::Result<()> {
    let mut stand_in = Command::new(binary)
        .args([
            "mock-elb",
            "--listen",
            "127.0.0.1:0",
            "--status",
            "204",
            "--format",
            format,
        ])
        .args(["--rotate-secs", "3600", "--log-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start mock-elb")?;
    let stdout = stand_in.stdout.take().context("mock-elb's stdout")?;
    let mut banner = String::new();
    BufReader::new(stdout).read_line(&mut banner)?;
    let url = banner
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected banner {banner:?}"))?
        .to_string();
    let mut send = Command::new(binary)
        .args(["send", "--accept", "204", &url])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start send")?;
    send.stdin
        .take()
        .context("send's stdin")?
        .write_all(input)?;
    anyhow::ensure!(send.wait()?.success(), "send failed");
    support::terminate(stand_in.id()).context("cannot stop mock-elb")?;
    anyhow::ensure!(stand_in.wait()?.success(), "mock-elb failed");
    Ok(())
}

fn log_files(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    Ok(files)
}
