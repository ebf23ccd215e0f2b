//! Throughput and memory of `drifter-rsyslog decode` on a large generated access log.
//!
//!     cargo build --release && cargo run --release --example bench_decode -- [MEGABYTES]
//!
//! Writes MEGABYTES (default 1024) of Classic entries as a plain `.log` and the same entries in
//! the ALB format as a `.log.gz`, then times `decode` on each against a baseline that only
//! reads the same bytes in the same run: `wc -l` for the plain file, `gzip -dc` for the
//! compressed one. Reports MB/s of uncompressed log, the ratio to the baseline, and decode's
//! peak RSS (which must not grow with the input).

mod support;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use drifter_rsyslog::access_log::{self, Format};

fn main() -> anyhow::Result<()> {
    let megabytes: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1024);
    let binary = support::binary()?;
    let dir = tempfile::tempdir()?;
    let plain = dir.path().join("classic.log");
    let compressed = dir.path().join("alb.log.gz");
    let (entries, bytes) = generate(&plain, &compressed, megabytes << 20)?;
    let mb = bytes as f64 / 1e6;
    println!("{entries} entries, {mb:.0} MB uncompressed per file");

    let baseline = support::time_command(Command::new("wc").arg("-l").arg(&plain))?.0;
    let (decode, rss) = support::time_command(Command::new(&binary).arg("decode").arg(&plain))?;
    report("Classic .log", mb, baseline, "wc -l", decode, rss);

    let shell = format!("gzip -dc '{}' > /dev/null", compressed.display());
    let baseline = support::time_command(Command::new("sh").arg("-c").arg(&shell))?.0;
    let (decode, rss) =
        support::time_command(Command::new(&binary).arg("decode").arg(&compressed))?;
    report("ALB .log.gz", mb, baseline, "gzip -dc", decode, rss);
    Ok(())
}

fn report(what: &str, mb: f64, baseline: Duration, name: &str, decode: Duration, rss: u64) {
    let rate = |d: Duration| mb / d.as_secs_f64();
    println!(
        "{what:<13} decode {:>6.0} MB/s   {name} {:>6.0} MB/s   ratio {:>4.0}%   decode peak RSS {} KiB",
        rate(decode),
        rate(baseline),
        rate(decode) / rate(baseline) * 100.0,
        rss
    );
}

/// Writes the same requests as Classic (plain) and ALB (gzip) entries until `target` bytes.
fn generate(plain: &Path, compressed: &Path, target: u64) -> anyhow::Result<(u64, u64)> {
    let balancer = support::bench_balancer();
    let mut classic = BufWriter::new(std::fs::File::create(plain)?);
    let mut alb = flate2::write::GzEncoder::new(
        BufWriter::new(std::fs::File::create(compressed)?),
        flate2::Compression::fast(),
    );
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut line = Vec::new();
    while bytes < target {
        let request = support::bench_request(entries)?;
        line.clear();
        access_log::write_entry(Format::Classic, &balancer, &request, &mut line);
        classic.write_all(&line)?;
        bytes += line.len() as u64;
        line.clear();
        access_log::write_entry(Format::Alb, &balancer, &request, &mut line);
        alb.write_all(&line)?;
        entries += 1;
    }
    classic.flush()?;
    alb.finish()?.flush()?;
    Ok((entries, bytes))
}
