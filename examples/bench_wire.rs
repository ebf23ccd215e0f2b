//! What wire format v1 costs `drifter-rsyslog send`, measured against baselines in the same run.
//!
//!     cargo build --release && cargo run --release --example bench_wire -- [LINES] [ROUNDS]
//!
//! 1. Extensions: LINES lines of ~200 bytes sent with the compatible default, and with every
//!    extension on (`--ids content --sequence --sign-key`): the ratio is what ids, sequence
//!    numbers and HMAC-SHA256 cost per message.
//! 2. Long lines: 8 lines of 16 MiB (the default --max-line-bytes), cut into fragments of at most
//!    8192 bytes, against the raw HTTP client sending the same fragment targets (taken from
//!    `--dry-run`), and the binary's peak RSS at the default limits and with --queue-bytes 16M:
//!    memory follows the configured limits, not the size or number of the lines.
//!
//! Rounds alternate the cases, and the best of each is kept: this machine is shared and noisy.

mod support;

use std::path::Path;

use anyhow::Context;

const LONG_LINES: usize = 8;
const LONG_LINE_BYTES: usize = 16 << 20;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if support::run_as_raw_client_if_asked().await? {
        return Ok(());
    }
    let (lines, rounds) = support::count_and_rounds(100_000, 3)?;
    let binary = support::binary()?;
    let (elb, url) = support::local_load_balancer(None).await?;
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("key");
    std::fs::write(&key, "a benchmark key of 32 bytes long")?;
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let key = key.to_str().context("temporary path is not UTF-8")?;

    let short_input = dir.path().join("short.log");
    let short: Vec<u8> = support::sample_lines(lines)
        .iter()
        .flat_map(|m| [m.as_bytes(), b"\n"].concat())
        .collect();
    std::fs::write(&short_input, &short)?;
    println!(
        "1. {lines} lines of ~{} bytes, {rounds} rounds",
        short.len() / lines.max(1)
    );
    let plain = ["send", &url, "--log-level", "warn"];
    let extended = [
        "send",
        &url,
        "--log-level",
        "warn",
        "--ids",
        "content",
        "--sequence",
        "--sign-key",
        key,
    ];
    let (mut best_plain, mut best_extended) = (0f64, 0f64);
    for round in 1..=rounds {
        let plain_time = support::run_binary(&binary, &plain, &short_input)
            .await?
            .elapsed;
        let extended_time = support::run_binary(&binary, &extended, &short_input)
            .await?
            .elapsed;
        let (plain_rate, extended_rate) = (
            lines as f64 / plain_time.as_secs_f64(),
            lines as f64 / extended_time.as_secs_f64(),
        );
        println!(
            "   round {round}: compatible {plain_rate:>8.0} msg/s   all extensions {extended_rate:>8.0} msg/s"
        );
        best_plain = best_plain.max(plain_rate);
        best_extended = best_extended.max(extended_rate);
    }
    println!(
        "   best: all extensions {best_extended:.0} msg/s = {:.0}% of the compatible default's {best_plain:.0}",
        100.0 * best_extended / best_plain
    );

    let long_input = dir.path().join("long.log");
    write_long_lines(&long_input)?;
    let targets = dir.path().join("targets");
    fragment_targets(&binary, &url, &long_input, &targets).await?;
    let requests = std::fs::read_to_string(&targets)?.lines().count();
    let megabytes = (LONG_LINES * LONG_LINE_BYTES) as f64 / 1e6;
    println!(
        "2. {LONG_LINES} lines of {} MiB = {requests} fragments of at most 8192 bytes, {rounds} rounds",
        LONG_LINE_BYTES >> 20
    );
    let bounded = ["send", &url, "--log-level", "warn", "--queue-bytes", "16M"];
    let (mut best_binary, mut best_raw) = (0f64, 0f64);
    let (mut rss_default, mut rss_bounded) = (0u64, 0u64);
    for round in 1..=rounds {
        let raw_seconds = requests as f64 / support::raw_client_rate(&url, &targets).await?;
        let long = support::run_binary(&binary, &plain, &long_input).await?;
        let (elapsed, rss) = (long.elapsed, long.peak_rss_kib);
        let rss_small = support::run_binary(&binary, &bounded, &long_input)
            .await?
            .peak_rss_kib;
        let (binary_rate, raw_rate) = (megabytes / elapsed.as_secs_f64(), megabytes / raw_seconds);
        println!(
            "   round {round}: raw client {raw_rate:>6.1} MB/s   drifter-rsyslog {binary_rate:>6.1} MB/s   peak RSS {:.1} MiB (--queue-bytes 16M: {:.1} MiB)",
            rss as f64 / 1024.0,
            rss_small as f64 / 1024.0
        );
        best_binary = best_binary.max(binary_rate);
        best_raw = best_raw.max(raw_rate);
        rss_default = rss_default.max(rss);
        rss_bounded = rss_bounded.max(rss_small);
    }
    println!(
        "   best: drifter-rsyslog {best_binary:.1} MB/s = {:.0}% of the raw client's {best_raw:.1} MB/s; peak RSS {:.1} MiB at the default limits (--max-line-bytes 16M, --queue-bytes 64M), {:.1} MiB with --queue-bytes 16M",
        100.0 * best_binary / best_raw,
        rss_default as f64 / 1024.0,
        rss_bounded as f64 / 1024.0
    );
    elb.shutdown().await;
    Ok(())
}

/// Text with a mix of characters that stay as they are and ones that become `%XX`.
fn write_long_lines(path: &Path) -> anyhow::Result<()> {
    let pattern = "GET /search?q=caf\u{e9} \u{2603} status=200 bytes=5120 path=/a/b ".as_bytes();
    let line: Vec<u8> = pattern
        .iter()
        .copied()
        .cycle()
        .take(LONG_LINE_BYTES)
        .collect();
    let mut input = Vec::with_capacity((LONG_LINE_BYTES + 1) * LONG_LINES);
    for _ in 0..LONG_LINES {
        input.extend_from_slice(&line);
        input.push(b'\n');
    }
    std::fs::write(path, input)?;
    Ok(())
}

/// The fragment targets `send` would send for `input`, from `--dry-run`, one per line.
async fn fragment_targets(
    binary: &Path,
    url: &str,
    input: &Path,
    targets: &Path,
) -> anyhow::Result<()> {
    let output = tokio::process::Command::new(binary)
        .args(["send", url, "--dry-run"])
        .stdin(std::fs::File::open(input)?)
        .output()
        .await?;
    anyhow::ensure!(output.status.success(), "--dry-run failed");
    let text = String::from_utf8(output.stdout)?;
    let only_targets: String = text
        .lines()
        .filter_map(|line| line.splitn(3, '\t').nth(2))
        .map(|target| format!("{target}\n"))
        .collect();
    std::fs::write(targets, only_targets)?;
    Ok(())
}
