//! Throughput through a real rsyslogd into `drifter-rsyslog send` in each omprog mode, with and
//! without `--spool`, against two ceilings: rsyslogd feeding `cat > /dev/null` (rsyslog's own
//! side), and rsyslogd feeding `omprog_responder`, which answers the confirm and transaction
//! protocols at once and sends nothing (the protocol's own ceiling).
//!
//!     cargo build --release --examples && cargo run --release --example bench_rsyslog -- [MESSAGES] [ROUNDS]
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Program {
    Cat,
    Responder,
    Drifter,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Confirm,
    Transactions,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Spool {
    None,
    Interval,
    Strict,
}

#[derive(Clone, Copy)]
struct Case {
    program: Program,
    mode: Mode,
    spool: Spool,
}

const fn case(program: Program, mode: Mode, spool: Spool) -> Case {
    Case {
        program,
        mode,
        spool,
    }
}

impl Case {
    /// The first is the ceiling of every ratio printed as "% of cat".
    const ALL: [Case; 11] = [
        case(Program::Cat, Mode::Plain, Spool::None),
        case(Program::Drifter, Mode::Plain, Spool::None),
        case(Program::Drifter, Mode::Plain, Spool::Interval),
        case(Program::Responder, Mode::Confirm, Spool::None),
        case(Program::Drifter, Mode::Confirm, Spool::None),
        case(Program::Drifter, Mode::Confirm, Spool::Interval),
        case(Program::Drifter, Mode::Confirm, Spool::Strict),
        case(Program::Responder, Mode::Transactions, Spool::None),
        case(Program::Drifter, Mode::Transactions, Spool::None),
        case(Program::Drifter, Mode::Transactions, Spool::Interval),
        case(Program::Drifter, Mode::Transactions, Spool::Strict),
    ];

    fn name(self) -> String {
        let mode = match self.mode {
            Mode::Plain => "plain",
            Mode::Confirm => "--confirm",
            Mode::Transactions => "--transactions",
        };
        let spool = match self.spool {
            Spool::None => "",
            Spool::Interval => " --spool",
            Spool::Strict => " --spool --spool-sync strict",
        };
        match self.program {
            Program::Cat => "cat > /dev/null".into(),
            Program::Responder => format!("omprog_responder {mode}"),
            Program::Drifter => format!("drifter {mode}{spool}"),
        }
    }

    /// The case whose rate this one is compared with, besides `cat`: the responder of the
    /// same mode (the protocol's ceiling), or plain without a spool.
    fn baseline(self) -> Option<usize> {
        match (self.program, self.mode) {
            (Program::Drifter, Mode::Plain) if self.spool != Spool::None => Some(1),
            (Program::Drifter, Mode::Confirm) => Some(3),
            (Program::Drifter, Mode::Transactions) => Some(7),
            _ => None,
        }
    }

    fn action_options(self, binaries: &Binaries, url: &str, dir: &Path, messages: usize) -> String {
        let confirm = match self.mode {
            Mode::Plain => "",
            Mode::Confirm => " confirmMessages=\"on\"",
            Mode::Transactions => " confirmMessages=\"on\" useTransactions=\"on\"",
        };
        let command = match self.program {
            Program::Cat => "/bin/cat".to_string(),
            Program::Responder => {
                let mode = if self.mode == Mode::Transactions {
                    "transactions"
                } else {
                    "confirm"
                };
                format!(
                    "{} {mode} {messages} {}",
                    binaries.responder.display(),
                    dir.join("done").display()
                )
            }
            Program::Drifter => {
                let mode = match self.mode {
                    Mode::Plain => "",
                    Mode::Confirm => " --confirm",
                    Mode::Transactions => " --transactions",
                };
                let spool = dir.join("spool");
                let spool = match self.spool {
                    Spool::None => String::new(),
                    Spool::Interval => format!(" --spool {}", spool.display()),
                    Spool::Strict => format!(" --spool {} --spool-sync strict", spool.display()),
                };
                format!("{} send {url}{mode}{spool}", binaries.drifter.display())
            }
        };
        format!("binary=\"{command}\"{confirm}")
    }
}

struct Binaries {
    drifter: std::path::PathBuf,
    responder: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (messages, rounds) = support::count_and_rounds(20_000, 3)?;
    let drifter = support::binary()?;
    // Built next to this benchmark by `cargo build --release --examples`.
    let responder = std::env::current_exe()?.with_file_name("omprog_responder");
    anyhow::ensure!(
        responder.exists(),
        "{} is missing: cargo build --release --examples",
        responder.display()
    );
    let binaries = Binaries { drifter, responder };
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
            let rate = run_case(case, &binaries, &url, messages, &delivered)
                .await
                .with_context(|| case.name())?;
            rates[index].push(rate);
            line.push_str(&format!("  {rate:>7.0}"));
        }
        println!("{line}   msg/s");
    }
    println!();
    let per_round = |index: usize, base: usize| -> (f64, String) {
        let ratios: Vec<f64> = rates[index]
            .iter()
            .zip(&rates[base])
            .map(|(rate, base)| rate / base)
            .collect();
        let text = ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ");
        (median(&ratios), text)
    };
    for (index, case) in Case::ALL.into_iter().enumerate() {
        let rate = median(&rates[index]);
        let (of_cat, _) = per_round(index, 0);
        let mut line = format!(
            "{:<44} median {rate:>7.0} msg/s  {:>5.1}% of cat",
            case.name(),
            of_cat * 100.0
        );
        if let Some(base) = case.baseline() {
            let (ratio, rounds) = per_round(index, base);
            line.push_str(&format!(
                "  {ratio:.2} of {} (per round: {rounds})",
                Case::ALL[base].name()
            ));
        }
        println!("{line}");
    }
    elb.shutdown().await;
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

async fn run_case(
    case: Case,
    binaries: &Binaries,
    url: &str,
    messages: usize,
    delivered: &AtomicUsize,
) -> anyhow::Result<f64> {
    let work = tempfile::tempdir()?;
    let action = format!(
        r#"module(load="omprog")
template(name="bench_line" type="string" string="%msg:2:$%\n")
action(type="omprog" template="bench_line" {options}
       queue.type="LinkedList" queue.size="100000" queue.dequeueBatchSize="500"
       queue.timeoutEnqueue="300000" closeTimeout="30000")
"#,
        options = case.action_options(binaries, url, work.path(), messages),
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
    let done_file = work.path().join("done");
    let done = || match case.program {
        // `%msg:2:$%\n`: each message's 200 bytes and its LF.
        Program::Cat => cat_bytes_written(rsyslogd_pid) >= (messages * (MESSAGE_BYTES + 1)) as u64,
        Program::Responder => done_file.exists(),
        Program::Drifter => delivered.load(Ordering::Relaxed) >= messages,
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
