//! Throughput through a real rsyslogd into `drifter-rsyslog send` in each omprog mode, against
//! rsyslogd feeding `cat > /dev/null` as the ceiling of rsyslog's own side.
//!
//!     cargo build --release && cargo run --release --example bench_rsyslog -- [MESSAGES] [ROUNDS]
//!
//! Each round starts one private rsyslogd per case (TCP input on 127.0.0.1, the same in-memory
//! action queue with batches of up to 500), writes MESSAGES syslog lines of ~200 bytes into it,
//! and times until the last one is out the other end: counted by the local load-balancer
//! stand-in (answering 503) for drifter, and by the bytes `cat` wrote to /dev/null
//! (/proc/PID/io) for the ceiling. Cases alternate within a round so a noisy machine slows
//! them alike; the ratios to the ceiling of the same round are what to compare.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use support::rsyslogd::{self, Rsyslogd};
use tokio::sync::mpsc;

/// Every message has this length, so the ceiling's byte count says when all have passed.
const MESSAGE_BYTES: usize = 200;
const LIMIT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy)]
enum Case {
    Ceiling,
    Plain,
    Confirm,
    Transactions,
}

impl Case {
    const ALL: [Case; 4] = [
        Case::Ceiling,
        Case::Plain,
        Case::Confirm,
        Case::Transactions,
    ];

    fn name(self) -> &'static str {
        match self {
            Case::Ceiling => "rsyslogd -> cat > /dev/null",
            Case::Plain => "rsyslogd -> drifter (plain)",
            Case::Confirm => "rsyslogd -> drifter --confirm",
            Case::Transactions => "rsyslogd -> drifter --transactions",
        }
    }

    fn action_options(self, binary: &Path, url: &str) -> String {
        let send = format!("{} send {url}", binary.display());
        match self {
            Case::Ceiling => "binary=\"/bin/cat\"".to_string(),
            Case::Plain => format!("binary=\"{send}\""),
            Case::Confirm => format!("binary=\"{send} --confirm\" confirmMessages=\"on\""),
            Case::Transactions => format!(
                "binary=\"{send} --transactions\" confirmMessages=\"on\" useTransactions=\"on\""
            ),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (messages, rounds) = support::count_and_rounds(20_000, 3)?;
    let binary = support::binary()?;
    // Fail before the first round if rsyslogd is missing.
    rsyslogd::binary()?;

    let (records, mut received) = mpsc::channel(1024);
    let (elb, url) = support::local_load_balancer(Some(records)).await?;
    let delivered = Arc::new(AtomicUsize::new(0));
    let counter = delivered.clone();
    tokio::spawn(async move {
        while received.recv().await.is_some() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });

    println!("{messages} messages of {MESSAGE_BYTES} bytes per case, {rounds} rounds");
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); Case::ALL.len()];
    for round in 1..=rounds {
        let mut line = format!("round {round}:");
        for (index, case) in Case::ALL.into_iter().enumerate() {
            delivered.store(0, Ordering::Relaxed);
            let rate = run_case(case, &binary, &url, messages, &delivered)
                .await
                .with_context(|| case.name())?;
            rates[index].push(rate);
            line.push_str(&format!("  {rate:>7.0}"));
        }
        println!("{line}   msg/s ({})", columns());
    }
    println!();
    let ceiling = median(&rates[0]);
    for (index, case) in Case::ALL.into_iter().enumerate() {
        let rate = median(&rates[index]);
        let ratios: Vec<f64> = rates[index]
            .iter()
            .zip(&rates[0])
            .map(|(rate, ceiling)| rate / ceiling * 100.0)
            .collect();
        println!(
            "{:<36} median {rate:>7.0} msg/s   {:>5.1}% of the ceiling (per round: {})",
            case.name(),
            rate / ceiling * 100.0,
            ratios
                .iter()
                .map(|r| format!("{r:.0}%"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    elb.shutdown().await;
    Ok(())
}

fn columns() -> String {
    Case::ALL
        .iter()
        .map(|case| case.name())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

async fn run_case(
    case: Case,
    binary: &Path,
    url: &str,
    messages: usize,
    delivered: &AtomicUsize,
) -> anyhow::Result<f64> {
    let action = format!(
        r#"module(load="omprog")
template(name="bench_line" type="string" string="%msg:2:$%\n")
action(type="omprog" template="bench_line" {options}
       queue.type="LinkedList" queue.size="100000" queue.dequeueBatchSize="500"
       queue.timeoutEnqueue="300000" closeTimeout="30000")
"#,
        options = case.action_options(binary, url),
    );
    let rsyslogd = Rsyslogd::start(&action, tempfile::tempdir()?).await?;
    let rsyslogd_pid = rsyslogd.child.id().context("rsyslogd exited at once")?;

    let frames: Vec<u8> = (0..messages)
        .flat_map(|i| {
            let header = format!("<13>Nov 23 11:00:00 benchhost bench: {i:08} ");
            let mut frame = header.into_bytes();
            let body_start = frame.len() - (format!("{i:08} ").len());
            frame.resize(body_start + MESSAGE_BYTES, b'x');
            frame.push(b'\n');
            frame
        })
        .collect();
    let started = Instant::now();
    rsyslogd.send(&frames).await?;
    let done = || match case {
        // `%msg:2:$%\n`: each message's 200 bytes and its LF.
        Case::Ceiling => cat_bytes_written(rsyslogd_pid) >= (messages * (MESSAGE_BYTES + 1)) as u64,
        _ => delivered.load(Ordering::Relaxed) >= messages,
    };
    while !done() {
        if started.elapsed() > LIMIT {
            anyhow::bail!(
                "not done within {LIMIT:?}: {} of {messages} through",
                delivered.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    rsyslogd.stop().await?;
    Ok(rate)
}

/// Bytes written by the `cat` that rsyslogd `parent` started (its only writes go to /dev/null).
fn cat_bytes_written(parent: u32) -> u64 {
    rsyslogd::children_of(parent)
        .into_iter()
        .filter_map(|pid| {
            let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
            io.lines()
                .find_map(|line| line.strip_prefix("wchar:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .sum()
}
