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

use support::CONCURRENCY;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if support::run_as_raw_client_if_asked().await? {
        return Ok(());
    }
    let (lines, rounds) = support::count_and_rounds(200_000, 5)?;
    let binary = support::binary()?;

    let (elb, url) = support::local_load_balancer(None).await?;

    let messages = support::sample_lines(lines);
    let dir = tempfile::tempdir()?;
    let input_path = dir.path().join("input.log");
    let input: Vec<u8> = messages
        .iter()
        .flat_map(|m| [m.as_bytes(), b"\n"].concat())
        .collect();
    std::fs::write(&input_path, &input)?;
    let targets_path = dir.path().join("targets");
    let targets: String = messages
        .iter()
        .map(|m| drifter_rsyslog::wire::encode_target("/", m.as_bytes()) + "\n")
        .collect();
    std::fs::write(&targets_path, targets)?;

    println!(
        "{lines} lines of ~{} bytes, concurrency {CONCURRENCY}, {rounds} rounds, server answering 503 on {url}",
        input.len() / lines.max(1)
    );
    let (mut best_binary, mut best_raw, mut peak_rss) = (0f64, 0f64, 0u64);
    for round in 1..=rounds {
        let raw = support::raw_client_rate(&url, &targets_path).await?;
        let (elapsed, rss) =
            support::run_binary(&binary, &["send", &url, "--log-level", "warn"], &input_path)
                .await?;
        let binary_rate = lines as f64 / elapsed.as_secs_f64();
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
