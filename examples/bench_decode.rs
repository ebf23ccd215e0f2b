//! Throughput and memory of `drifter-rsyslog decode` on a large generated access log.
//!
//!     cargo build --release && cargo run --release --example bench_decode -- [MEGABYTES]
//!
//! Writes MEGABYTES (default 1024) of Classic entries as a plain `.log` and the same entries in
//! the ALB format as a `.log.gz`, then times `decode --order arrival` (as read) on each against
//! a baseline that only reads the same bytes in the same run: `wc -l` for the plain file,
//! `gzip -dc` for the compressed one; then `decode` in its default order against
//! `--order arrival`. Every request carries a sequence number (`send --sequence`), logged out of
//! number order within each run of 8, as requests in flight at once are. All of a file's
//! entries are logged within seconds, so the ordered decode holds all it may (the byte bound):
//! the worst case. Then the same against a tree as AWS writes it: the same requests over two
//! load-balancer nodes, a `.log.gz` per node every 5 minutes, 200 requests a second, where the
//! time window releases the messages. Reports MB/s of uncompressed log, the ratios (of wall
//! time, and of CPU time, which a busy neighbour disturbs less), and decode's peak RSS (which
//! must not grow with the input: run it at two sizes).

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
    let tree = dir.path().join("tree");
    let (files, tree_bytes) = generate_tree(&tree, bytes)?;
    println!(
        "ALB tree: {files} files, {:.0} MB uncompressed (the .log.gz's entries are longer)",
        tree_bytes as f64 / 1e6
    );

    let decode = |order: &str, path: &Path| {
        support::time_command(
            Command::new(&binary)
                .args(["decode", "--order", order])
                .arg(path),
        )
    };
    let baseline = support::time_command(Command::new("wc").arg("-l").arg(&plain))?.0;
    let (arrival, rss) = decode("arrival", &plain)?;
    report("Classic .log", mb, baseline, "wc -l", arrival, rss);

    let shell = format!("gzip -dc '{}' > /dev/null", compressed.display());
    let baseline = support::time_command(Command::new("sh").arg("-c").arg(&shell))?.0;
    let (arrival, rss) = decode("arrival", &compressed)?;
    report("ALB .log.gz", mb, baseline, "gzip -dc", arrival, rss);

    // The order's cost: rounds alternate, so a noisy neighbour weighs on both alike.
    let tree_mb = tree_bytes as f64 / 1e6;
    for (what, path, mb) in [
        ("Classic .log", &plain, mb),
        ("ALB .log.gz", &compressed, mb),
        ("ALB tree", &tree, tree_mb),
    ] {
        let (mut ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
        let mut peak = 0;
        for _ in 0..ROUNDS {
            let cpu = |(user, system): (Duration, Duration)| (user + system).as_secs_f64();
            let before = support::children_cpu();
            let (arrival, _) = decode("arrival", path)?;
            let arrival_cpu = cpu(support::cpu_since(before));
            let before = support::children_cpu();
            let (ordered, rss) = decode("sequence", path)?;
            let ordered_cpu = cpu(support::cpu_since(before));
            peak = peak.max(rss);
            ratios.push(arrival.as_secs_f64() / ordered.as_secs_f64());
            cpu_ratios.push(arrival_cpu / ordered_cpu);
            println!(
                "{what:<13} ordered {:>6.0} MB/s   arrival {:>6.0} MB/s   ratio {:>5.2}   CPU time ratio {:>5.2}   ordered peak RSS {rss} KiB",
                mb / ordered.as_secs_f64(),
                mb / arrival.as_secs_f64(),
                ratios[ratios.len() - 1],
                cpu_ratios[cpu_ratios.len() - 1],
            );
        }
        println!(
            "{what:<13} ordered vs arrival: median ratio {:.2} (CPU time {:.2}) of {ROUNDS} rounds, ordered peak RSS {peak} KiB",
            median(&mut ratios),
            median(&mut cpu_ratios),
        );
    }
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Rounds of ordered against arrival decode.
const ROUNDS: usize = 7;

fn report(what: &str, mb: f64, baseline: Duration, name: &str, decode: Duration, rss: u64) {
    let rate = |d: Duration| mb / d.as_secs_f64();
    println!(
        "{what:<13} arrival {:>6.0} MB/s   {name} {:>6.0} MB/s   ratio {:>4.0}%   arrival peak RSS {} KiB",
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
    // Whole runs of 8, so that no number is missing at the end.
    while bytes < target || entries % 8 != 0 {
        let mut request = support::bench_request(entries)?;
        // One sender's numbers, each run of 8 logged in reverse.
        let number = (entries ^ 7) + 1;
        request
            .url
            .extend_from_slice(format!("&q=bench0sender.{number}").as_bytes());
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

/// Requests a second in the tree: a 10-minute window then holds about 40 MB of messages,
/// under the default `--reorder-bytes`.
const TREE_RATE: u64 = 200;
/// AWS's ALB interval, in seconds.
const TREE_INTERVAL: u64 = 300;

/// The requests of [`generate`] as AWS writes them for an ALB with two nodes: each request
/// to one node, alternately, logged at `TREE_RATE` a second from a fixed day on, a `.log.gz`
/// per node and 5-minute interval, named and placed as AWS names and places them.
fn generate_tree(root: &Path, target: u64) -> anyhow::Result<(u64, u64)> {
    let start = time::macros::datetime!(2026-12-01 00:00 UTC);
    let per_interval = TREE_RATE * TREE_INTERVAL;
    let mut balancers = [support::bench_balancer(), support::bench_balancer()];
    balancers[1].node_ip = "10.0.0.2".into();
    let (mut entries, mut bytes, mut files) = (0u64, 0u64, 0u64);
    let mut line = Vec::new();
    for interval in 0.. {
        if bytes >= target {
            break;
        }
        let end = start + time::Duration::seconds(((interval + 1) * TREE_INTERVAL) as i64);
        let dir = root.join(format!(
            "AWSLogs/123456789012/elasticloadbalancing/us-east-1/{:04}/{:02}/{:02}",
            end.year(),
            u8::from(end.month()),
            end.day()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut nodes = Vec::new();
        for balancer in &balancers {
            let name = format!(
                "123456789012_elasticloadbalancing_us-east-1_app.bench.50dc6c495c0c9188_{:04}{:02}{:02}T{:02}{:02}Z_{}_bench.log.gz",
                end.year(),
                u8::from(end.month()),
                end.day(),
                end.hour(),
                end.minute(),
                balancer.node_ip
            );
            let file = BufWriter::new(std::fs::File::create(dir.join(name))?);
            nodes.push(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::fast(),
            ));
            files += 1;
        }
        for slot in 0..per_interval {
            if bytes >= target && entries % 8 == 0 {
                break;
            }
            let mut request = support::bench_request(entries)?;
            let number = (entries ^ 7) + 1;
            request
                .url
                .extend_from_slice(format!("&q=bench0sender.{number}").as_bytes());
            let offset = interval * TREE_INTERVAL * 1_000_000 + slot * 1_000_000 / TREE_RATE;
            request.time = start + time::Duration::microseconds(offset as i64);
            let node = (entries % 2) as usize;
            line.clear();
            access_log::write_entry(Format::Alb, &balancers[node], &request, &mut line);
            nodes[node].write_all(&line)?;
            bytes += line.len() as u64;
            entries += 1;
        }
        for node in nodes {
            node.finish()?.flush()?;
        }
    }
    Ok((files, bytes))
}
