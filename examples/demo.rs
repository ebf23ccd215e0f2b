//! The whole round trip on one machine, with the real binary at every step:
//!
//!     cargo build --release && cargo run --release --example demo
//!
//! 1. `drifter-rsyslog mock-elb` stands in for the load balancer (answers 503, writes Classic
//!    access logs laid out as in S3, into a temporary directory);
//! 2. sample lines are piped through `drifter-rsyslog send --sequence` (each request numbered,
//!    so `decode` can put them back in order whatever order they were logged in);
//! 3. the stand-in is stopped with SIGTERM, which completes its log files;
//! 4. `drifter-rsyslog decode` reads the files back, and the result is compared to the input,
//!    line for line and in order.

mod support;

use std::process::Stdio;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const SAMPLE: &[&str] = &[
    "<13>Nov 23 11:00:00 web-1 nginx: GET /index.html 200",
    "user=alice action=login result=ok & more",
    "multi-byte: café ☃ 日本語",
    "quotes \"double\" 'single' and \\ backslash",
    "it's (all) ~fine~! 100% sure?",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let binary = support::binary()?;
    let logs = tempfile::tempdir()?;
    let log_dir = logs.path().display().to_string();

    let mut elb = tokio::process::Command::new(&binary)
        .args(["mock-elb", "--listen", "127.0.0.1:0", "--log-dir", &log_dir])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let mut banner = BufReader::new(elb.stdout.take().context("stdout is piped")?).lines();
    let first = banner
        .next_line()
        .await?
        .context("mock-elb printed nothing")?;
    let url = first
        .strip_prefix("listening on ")
        .context("unexpected mock-elb banner")?
        .to_string();
    println!("1. load-balancer stand-in on {url} (answers 503, logs to {log_dir})\n");

    let mut send = tokio::process::Command::new(&binary)
        .args(["send", "--sequence", &url])
        .stdin(Stdio::piped())
        .spawn()?;
    let mut stdin = send.stdin.take().context("stdin is piped")?;
    println!("2. sent through `drifter-rsyslog send --sequence`:");
    for line in SAMPLE {
        println!("   {line}");
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
    }
    drop(stdin);
    let sent_ok = send.wait().await?.success();

    let pid = elb.id().context("mock-elb exited early")?;
    support::terminate(pid)?;
    let stopped_ok = elb.wait().await?.success();
    println!("\n3. the stand-in stopped and wrote:");
    for file in files_under(logs.path())? {
        println!("   {}", file.strip_prefix(logs.path())?.display());
        if let Some(line) = std::fs::read_to_string(&file)?.lines().next() {
            println!("   first entry: {line}");
        }
    }

    let decoded = tokio::process::Command::new(&binary)
        .args(["decode", &log_dir])
        .output()
        .await?;
    let text = String::from_utf8(decoded.stdout).context("decoded text is UTF-8")?;
    println!("\n4. `drifter-rsyslog decode` gives back:");
    for line in text.lines() {
        println!("   {line}");
    }
    let got: Vec<&str> = text.lines().collect();
    let sent: Vec<&str> = SAMPLE.to_vec();
    println!();
    if sent_ok && stopped_ok && decoded.status.success() && got == sent {
        println!(
            "round trip OK: {} of {} lines came back byte for byte, in order",
            got.len(),
            sent.len()
        );
        Ok(())
    } else {
        anyhow::bail!("round trip FAILED: got {got:?}")
    }
}

fn files_under(dir: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(files_under(&path)?);
        } else {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
