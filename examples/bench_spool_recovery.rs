//! Memory and time of a start on a damaged spool (issue 28 finding 1): a 3-message spool, as
//! it is, then with its segment padded with zeros to 1 GiB (sparse, as a crash leaves it after
//! the file grew), then with a segment that is a link to /dev/zero. For each: `spool DIR`, and
//! `send --spool DIR` delivering to the in-process stand-in, under `/usr/bin/time -v` (peak
//! RSS, wall time), and the ratio to the undamaged spool's.
//!
//!     cargo build --release && cargo run --release --example bench_spool_recovery

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let binary = support::binary()?;
    let (_elb, url) = support::local_load_balancer(None).await?;
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("input");
    std::fs::write(&input, "first message\nsecond message\nthird message\n")?;
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}/", listener.local_addr()?)
    };
    let mut baseline = None;
    for case in ["as written", "padded to 1 GiB", "a link to /dev/zero"] {
        let spools = tempfile::tempdir_in(dir.path())?;
        let spool = spools.path().display().to_string();
        let args = ["send", &down, "--spool", &spool, "--drain-timeout", "1s"];
        support::run_binary(&binary, &args, &input).await?;
        let spool_dir = std::fs::read_dir(spools.path())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_dir())
            .context("no spool was made")?;
        match case {
            "padded to 1 GiB" => {
                let segment = std::fs::read_dir(&spool_dir)?
                    .flatten()
                    .map(|e| e.path())
                    .find(|p| p.extension().is_some_and(|e| e == "log"))
                    .context("no segment")?;
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(segment)?
                    .set_len(1 << 30)?;
            }
            "a link to /dev/zero" => std::os::unix::fs::symlink(
                "/dev/zero",
                spool_dir.join("seg-00000000000000001000.log"),
            )?,
            _ => {}
        }
        let listed = timed(&binary, &["spool", &spool])?;
        let sent = timed(&binary, &["send", &url, "--spool", &spool])?;
        let (listed_base, sent_base) = *baseline.get_or_insert((listed, sent));
        println!(
            "{case:<20} spool: {:>6.1} MiB peak RSS ({:.2}x), {:>6.3} s | send --spool: {:>6.1} MiB ({:.2}x), {:>6.3} s",
            listed.1 as f64 / 1024.0,
            listed.1 as f64 / listed_base.1 as f64,
            listed.0.as_secs_f64(),
            sent.1 as f64 / 1024.0,
            sent.1 as f64 / sent_base.1 as f64,
            sent.0.as_secs_f64(),
        );
    }
    Ok(())
}

/// Runs `binary ARGS < /dev/null` under `/usr/bin/time -v`: wall time, peak RSS in KiB.
fn timed(binary: &Path, args: &[&str]) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let output = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(binary)
        .args(args)
        .args(["--log-level", "error"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .context("/usr/bin/time (apt-get install time)")?;
    let elapsed = started.elapsed();
    let report = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(output.status.success(), "{args:?} failed: {report}");
    let kib = report
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .context("no peak RSS in /usr/bin/time's report")?
        .parse()?;
    Ok((elapsed, kib))
}
