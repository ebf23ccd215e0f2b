//! Memory and speed of `send --spool` with a large backlog: the spool fills while the load
//! balancer is down, then a new process delivers it.
//!
//!     apt-get install nginx-light
//!     cargo build --release && cargo run --release --example bench_spool -- [MEGABYTES] [ROUNDS]
//!
//! Per round: (1) `send --spool` reads MEGABYTES of ~200-byte lines while nothing listens on
//! the URL, spools them all and exits at the drain deadline; (2) `send --spool < /dev/null`
//! delivers the backlog to a private nginx answering 503; (3) plain `send` sends the same
//! lines from the file to the same nginx, as the baseline of (2). Peak RSS of each run, and
//! (2)'s rate as a ratio to (3)'s.

mod support;

use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (megabytes, rounds) = support::count_and_rounds(1024, 1)?;
    let binary = support::binary()?;
    let nginx = support::Nginx::start()?;
    let dir = tempfile::tempdir()?;
    let line_bytes = 200;
    let lines = megabytes * (1 << 20) / (line_bytes + 1);
    let input_path = dir.path().join("input.log");
    {
        use std::io::Write;
        let sample = support::sample_lines(10_000);
        let mut out = std::io::BufWriter::new(std::fs::File::create(&input_path)?);
        for i in 0..lines {
            let line = &sample[i % sample.len()];
            let mut line = format!("{i:010} {line}");
            line.truncate(line_bytes);
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"")?;
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}/", listener.local_addr()?)
    };
    println!(
        "{lines} lines ({megabytes} MiB), {rounds} rounds, nginx answering 503 on {}",
        nginx.url
    );
    for round in 1..=rounds {
        let spool = dir.path().join(format!("spool-{round}"));
        let spool = spool.display().to_string();
        let common = [
            "--log-level",
            "warn",
            "--spool",
            &spool,
            "--spool-max-bytes",
            "4G",
        ];
        let mut args = vec!["send", down.as_str(), "--drain-timeout", "1s"];
        args.extend_from_slice(&common);
        let filled = support::run_binary(&binary, &args, &input_path).await?;
        let mut args = vec!["send", nginx.url.as_str(), "--drain-timeout", "1h"];
        args.extend_from_slice(&common);
        let delivered = support::run_binary(&binary, &args, &empty).await?;
        let plain = support::run_binary(
            &binary,
            &["send", &nginx.url, "--log-level", "warn"],
            &input_path,
        )
        .await?;
        let rate = |elapsed: Duration| lines as f64 / elapsed.as_secs_f64();
        println!(
            "round {round}: spooling {:>7.0} msg/s, peak RSS {:.1} MiB | delivering the backlog {:>7.0} msg/s, peak RSS {:.1} MiB | plain send {:>7.0} msg/s, peak RSS {:.1} MiB | backlog/plain {:.2}",
            rate(filled.elapsed),
            filled.peak_rss_kib as f64 / 1024.0,
            rate(delivered.elapsed),
            delivered.peak_rss_kib as f64 / 1024.0,
            rate(plain.elapsed),
            plain.peak_rss_kib as f64 / 1024.0,
            delivered.elapsed.as_secs_f64().recip() / plain.elapsed.as_secs_f64().recip(),
        );
    }
    Ok(())
}
