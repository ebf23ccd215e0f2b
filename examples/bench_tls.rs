//! `drifter-rsyslog send` over TLS, with HTTP/2 and with HTTP/1.1, against h2load and wrk on
//! the same nginx, with plain HTTP for reference, in the same run.
//!
//!     apt-get install -y nginx-light nghttp2-client wrk
//!     cargo build --release && cargo run --release --example bench_tls -- [LINES] [ROUNDS]
//!
//! It makes a CA and a certificate for 127.0.0.1, starts a private nginx (one worker,
//! answering 503 and writing its access log, with `$connection` in it) listening both plain and
//! with TLS and `http2`, and, for ROUNDS rounds, measures in turn:
//! (a) h2load, one connection with 64 concurrent streams, sending the LINES targets of the
//!     messages once each over TLS (HTTP/2; what a C client gets from this server);
//! (b) `send --http 2 --ca-cert CA` with LINES lines of ~200 bytes on stdin (64 in flight, its
//!     default), its CPU time (user + system) per message, peak RSS and connections opened;
//! (c) wrk over TLS (HTTP/1.1) with 64 keep-alive connections for 3 s, on one target;
//! (d) `send --http 1.1 --ca-cert CA`, as (b);
//! (e) wrk and (f) `send` over plain HTTP, as `bench_send` measures them.
//! Ratios of (b) to (a), (d) to (c) and (f) to (e) of the same round, and CPU per message of
//! (b) against (f), are what to compare: the machine is shared.
//!
//! Where the CPU goes (`apt-get install -y linux-perf`; `cpu-clock`, as a virtual machine
//! may count no hardware events), on a build with frame pointers, against an nginx like this
//! one:
//!
//!     CARGO_PROFILE_RELEASE_DEBUG=line-tables-only RUSTFLAGS="-C force-frame-pointers=yes" \
//!         cargo build --release --target-dir target/profiling
//!     perf record -e cpu-clock --call-graph fp -- target/profiling/release/drifter-rsyslog \
//!         send https://127.0.0.1:PORT/ --ca-cert CA --http 2 < lines
//!     perf report --no-children --sort symbol

mod support;

use std::path::Path;
use std::time::Duration;

use support::CONCURRENCY;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (lines, rounds) = support::count_and_rounds(200_000, 5)?;
    let binary = support::binary()?;
    let dir = tempfile::tempdir()?;
    let (ca, cert, key) = support::tls::certificates(dir.path())?;
    let nginx = support::Nginx::start_with_tls(Some((&cert, &key)))?;
    let plain_url = nginx.url.clone();
    let tls_url = nginx.tls_url.clone().expect("started with TLS");
    let ca = ca.display().to_string();

    let support::Workload {
        input_path,
        input_bytes,
        targets,
    } = support::workload(dir.path(), lines)?;
    let base = tls_url.trim_end_matches('/');
    let urls_path = dir.path().join("urls");
    let urls: Vec<String> = targets.iter().map(|t| format!("{base}{t}")).collect();
    std::fs::write(&urls_path, urls.join("\n") + "\n")?;
    let wrk_tls = format!("{base}{}", targets[0]);
    let wrk_plain = format!("{}{}", plain_url.trim_end_matches('/'), targets[0]);

    println!(
        "{lines} lines of ~{} bytes, concurrency {CONCURRENCY}, {rounds} rounds, nginx answering 503 on {tls_url} (TLS, h2) and {plain_url}",
        input_bytes / lines.max(1)
    );
    let mut log_offset = 0;
    let mut measured = Vec::new();
    for round in 1..=rounds {
        let mut connections = || nginx.connections_since(&mut log_offset);
        connections()?;
        let (h2load, h2load_cpu) = support::tls::h2load(&urls_path, lines, CONCURRENCY).await?;
        let h2load_connections = connections()?;
        let h2 = run_send(
            &binary,
            &[&tls_url, "--ca-cert", &ca, "--http", "2"],
            &input_path,
            lines,
        )
        .await?;
        let h2_connections = connections()?;
        let (wrk_tls_rate, wrk_tls_cpu) = support::wrk(&wrk_tls, CONCURRENCY, 3).await?;
        connections()?;
        let h1 = run_send(
            &binary,
            &[&tls_url, "--ca-cert", &ca, "--http", "1.1"],
            &input_path,
            lines,
        )
        .await?;
        let h1_connections = connections()?;
        let (wrk_plain_rate, wrk_plain_cpu) = support::wrk(&wrk_plain, CONCURRENCY, 3).await?;
        connections()?;
        let plain = run_send(&binary, &[&plain_url], &input_path, lines).await?;
        let plain_connections = connections()?;
        let this = Round {
            h2_to_h2load: h2.rate / h2load,
            h1_to_wrk: h1.rate / wrk_tls_rate,
            plain_to_wrk: plain.rate / wrk_plain_rate,
            h2_cpu: h2.cpu_us,
            h1_cpu: h1.cpu_us,
            plain_cpu: plain.cpu_us,
            h2load_cpu: micros(h2load_cpu),
            wrk_tls_cpu: micros(wrk_tls_cpu),
            wrk_plain_cpu: micros(wrk_plain_cpu),
            h2_rss: h2.rss_mib,
            h1_rss: h1.rss_mib,
            plain_rss: plain.rss_mib,
        };
        println!("round {round}:");
        println!(
            "  TLS h2    h2load {h2load:>7.0} req/s ({:.1} µs CPU/req, {h2load_connections} conn)   send --http 2   {:>7.0} msg/s ({:.1} µs CPU/msg, {:.1} user; RSS {:.1} MiB; {h2_connections} conn)   ratio {:.2}",
            this.h2load_cpu, h2.rate, h2.cpu_us, h2.user_us, h2.rss_mib, this.h2_to_h2load,
        );
        println!(
            "  TLS 1.1   wrk    {wrk_tls_rate:>7.0} req/s ({:.1} µs CPU/req)            send --http 1.1 {:>7.0} msg/s ({:.1} µs CPU/msg, {:.1} user; RSS {:.1} MiB; {h1_connections} conn)   ratio {:.2}",
            this.wrk_tls_cpu, h1.rate, h1.cpu_us, h1.user_us, h1.rss_mib, this.h1_to_wrk,
        );
        println!(
            "  plain 1.1 wrk    {wrk_plain_rate:>7.0} req/s ({:.1} µs CPU/req)            send            {:>7.0} msg/s ({:.1} µs CPU/msg, {:.1} user; RSS {:.1} MiB; {plain_connections} conn)   ratio {:.2}",
            this.wrk_plain_cpu,
            plain.rate,
            plain.cpu_us,
            plain.user_us,
            plain.rss_mib,
            this.plain_to_wrk,
        );
        measured.push(this);
    }
    let spread = |field: fn(&Round) -> f64| {
        let mut values: Vec<f64> = measured.iter().map(field).collect();
        values.sort_by(f64::total_cmp);
        (
            values[values.len() / 2],
            values[0],
            values[values.len() - 1],
        )
    };
    let show = |name: &str, field: fn(&Round) -> f64, unit: &str| {
        let (median, low, high) = spread(field);
        println!("  {name:<46} median {median:>6.2}{unit} (range {low:.2}–{high:.2})");
    };
    println!("over {rounds} rounds:");
    show("send --http 2 / h2load (TLS)", |r| r.h2_to_h2load, "");
    show("send --http 1.1 / wrk (TLS)", |r| r.h1_to_wrk, "");
    show("send / wrk (plain)", |r| r.plain_to_wrk, "");
    show("CPU per message, send --http 2 (TLS)", |r| r.h2_cpu, " µs");
    show(
        "CPU per message, send --http 1.1 (TLS)",
        |r| r.h1_cpu,
        " µs",
    );
    show("CPU per message, send (plain)", |r| r.plain_cpu, " µs");
    show(
        "CPU h2 (TLS) / CPU plain HTTP/1.1",
        |r| r.h2_cpu / r.plain_cpu,
        "",
    );
    show("CPU per request, h2load (TLS)", |r| r.h2load_cpu, " µs");
    show("CPU per request, wrk (TLS)", |r| r.wrk_tls_cpu, " µs");
    show("CPU per request, wrk (plain)", |r| r.wrk_plain_cpu, " µs");
    show("peak RSS, send --http 2", |r| r.h2_rss, " MiB");
    show("peak RSS, send --http 1.1", |r| r.h1_rss, " MiB");
    show("peak RSS, send (plain)", |r| r.plain_rss, " MiB");
    Ok(())
}

/// One run of `send URL ARGS… < input`.
struct SendRun {
    rate: f64,
    /// CPU time per message, all of it and of it in user space.
    cpu_us: f64,
    user_us: f64,
    rss_mib: f64,
}

async fn run_send(
    binary: &Path,
    args: &[&str],
    input: &Path,
    lines: usize,
) -> anyhow::Result<SendRun> {
    let mut all = vec!["send", "--log-level", "warn"];
    all.extend_from_slice(args);
    let run = support::run_binary(binary, &all, input).await?;
    let per_message = |cpu: Duration| micros(cpu) / lines.max(1) as f64;
    Ok(SendRun {
        rate: lines as f64 / run.elapsed.as_secs_f64(),
        cpu_us: per_message(run.cpu.0 + run.cpu.1),
        user_us: per_message(run.cpu.0),
        rss_mib: run.peak_rss_kib as f64 / 1024.0,
    })
}

/// One round's figures; CPU times in µs per message or request, RSS in MiB.
struct Round {
    h2_to_h2load: f64,
    h1_to_wrk: f64,
    plain_to_wrk: f64,
    h2_cpu: f64,
    h1_cpu: f64,
    plain_cpu: f64,
    h2load_cpu: f64,
    wrk_tls_cpu: f64,
    wrk_plain_cpu: f64,
    h2_rss: f64,
    h1_rss: f64,
    plain_rss: f64,
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
