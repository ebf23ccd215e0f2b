//! The `send` command: checks the configuration, then reads stdin into the pipeline until end
//! of input or a stop signal, drains within the deadline and reports.
//!
//! Shutdown follows mini-redis: a `stop` watch means "read no more" (set by SIGTERM/SIGINT or
//! end of input), the pipeline's abort flag means "stop retrying" (set by the drain deadline or
//! a second signal), and joining the workers means "everything is settled".

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::BufReader;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

use crate::cli::SendArgs;
use crate::dead_letter::DeadLetter;
use crate::deliver::{Backoff, ClientOptions, Deliverer, Endpoint};
use crate::input::Line;
use crate::input::LineReader;
use crate::omprog::{self, Mode, ProtocolConfig, Replies, Session};
use crate::outgoing::Labeler;
use crate::pipeline::{Aborter, Pipeline, PipelineConfig, Settler};
use crate::stats::Stats;
use crate::{key_file, wire};

pub const EXIT_LOST: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// Everything checked before the first line is read.
struct Prepared {
    deliverer: Arc<Deliverer>,
    dead_letter: Option<DeadLetter>,
    pipeline: PipelineConfig,
    labeler: Arc<Labeler>,
    max_line_bytes: usize,
    drain_timeout: Duration,
    stats_interval: Option<Duration>,
    protocol: ProtocolConfig,
    probe: bool,
}

fn prepare(args: &SendArgs) -> anyhow::Result<Prepared> {
    let endpoint: Endpoint = args.url.parse()?;
    if args.retry_initial.is_zero() || args.retry_max < args.retry_initial {
        anyhow::bail!("--retry-initial must be above zero and at most --retry-max");
    }
    let max_url_bytes = usize::try_from(args.max_url_bytes).unwrap_or(usize::MAX);
    let signer = match &args.sign_key {
        Some(path) => Some(key_file::load(path)?),
        None => None,
    };
    let format = wire::TargetFormat::new(endpoint.path(), max_url_bytes, signer);
    let labeler = Labeler::new(format, args.ids, args.sequence, args.max_line_bytes)?;
    if args.insecure {
        tracing::warn!("--insecure: the load balancer's TLS certificate is not verified");
    }
    let options = ClientOptions {
        concurrency: args.concurrency as usize,
        connect_timeout: args.connect_timeout,
        request_timeout: args.request_timeout,
        ca_cert: args.ca_cert.as_deref(),
        insecure: args.insecure,
    };
    let deliverer = Deliverer::new(endpoint, args.accept.clone(), &options)?;
    let mode = match (args.confirm, args.transactions) {
        (_, true) => Mode::Transactions,
        (true, false) => Mode::Confirm,
        (false, false) => Mode::Plain,
    };
    if args.begin_mark.is_empty()
        || args.commit_mark.is_empty()
        || args.begin_mark == args.commit_mark
    {
        anyhow::bail!("--begin-mark and --commit-mark must be different and not empty");
    }
    if args.keepalive_interval.is_zero() {
        anyhow::bail!("--keepalive-interval must be above zero");
    }
    let protocol = ProtocolConfig {
        mode,
        begin_mark: args.begin_mark.clone().into_bytes(),
        commit_mark: args.commit_mark.clone().into_bytes(),
        keepalive: args.keepalive_interval,
        message_timeout: args.message_timeout,
        commit_timeout: args.commit_timeout,
    };
    // A dry run writes no file.
    let dead_letter = match args.dead_letter.as_ref().filter(|_| !args.dry_run) {
        Some(path) => Some(
            DeadLetter::open(path)
                .with_context(|| format!("cannot open dead-letter file {}", path.display()))?,
        ),
        None => None,
    };
    Ok(Prepared {
        deliverer: Arc::new(deliverer),
        dead_letter,
        pipeline: PipelineConfig {
            concurrency: args.concurrency as usize,
            queue_messages: args.queue_messages as usize,
            queue_bytes: args.queue_bytes,
            backoff: Backoff {
                initial: args.retry_initial,
                max: args.retry_max,
            },
        },
        labeler: Arc::new(labeler),
        max_line_bytes: usize::try_from(args.max_line_bytes).unwrap_or(usize::MAX),
        drain_timeout: args.drain_timeout,
        stats_interval: args.stats_interval,
        protocol,
        probe: args.probe,
    })
}

/// Runs `send` to completion and returns the exit status.
pub fn run(args: &SendArgs) -> ExitCode {
    let prepared = match prepare(args) {
        Ok(prepared) => prepared,
        Err(e) => return usage_error(&e),
    };
    if args.dry_run {
        return dry_run(&prepared);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            return usage_error(&anyhow::Error::new(e).context("cannot start the async runtime"));
        }
    };
    // Spawned rather than run by block_on, so the reader runs on a worker thread next to the
    // workers instead of waking them across threads for every message.
    let code = runtime.block_on(async {
        tokio::spawn(send(prepared)).await.unwrap_or_else(|e| {
            tracing::error!("the send task failed: {e}");
            ExitCode::from(EXIT_LOST)
        })
    });
    // A blocking read of stdin cannot be cancelled; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// `--dry-run`: every line through the same reading, labelling and cutting as `send`, and the
/// targets printed instead of sent.
fn dry_run(prepared: &Prepared) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            return usage_error(&anyhow::Error::new(e).context("cannot start the async runtime"));
        }
    };
    let printed = runtime.block_on(async {
        let stdin = BufReader::with_capacity(256 * 1024, tokio::io::stdin());
        let mut reader = LineReader::new(stdin, prepared.max_line_bytes);
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut unsendable = 0u64;
        while let Some(line) = reader.next_line().await? {
            match line {
                Line::Empty { .. } => {}
                Line::TooLong { number, length } => {
                    unsendable += 1;
                    tracing::error!(
                        line = number,
                        "line is {length} bytes, over --max-line-bytes {}; it would be lost",
                        prepared.max_line_bytes
                    );
                }
                Line::Message { number, bytes } => {
                    let Some(outgoing) = prepared.labeler.prepare(number, bytes) else {
                        continue;
                    };
                    for target in prepared.labeler.targets(&outgoing) {
                        writeln!(out, "{number}\t{}\t{target}", target.len())?;
                    }
                }
            }
        }
        out.flush()?;
        std::io::Result::Ok(unsendable)
    });
    match printed {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(EXIT_LOST),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drifter-rsyslog: error: {e}");
            ExitCode::from(EXIT_LOST)
        }
    }
}

fn usage_error(error: &anyhow::Error) -> ExitCode {
    eprintln!("drifter-rsyslog: error: {error:#}");
    ExitCode::from(EXIT_USAGE)
}

async fn send(prepared: Prepared) -> ExitCode {
    let signals = match StopSignals::install() {
        Ok(signals) => signals,
        Err(e) => return usage_error(&e),
    };
    let stats = Arc::new(Stats::default());
    let settler = Arc::new(Settler::new(stats.clone(), prepared.dead_letter));
    tracing::debug!(endpoint = %prepared.deliverer.endpoint(), "sending stdin");
    let backoff = prepared.pipeline.backoff;
    let pipeline = Pipeline::start(
        prepared.pipeline,
        prepared.deliverer.clone(),
        prepared.labeler.clone(),
        settler.clone(),
    );

    let (stop, stopped) = watch::channel(false);
    let under_rsyslog = prepared.protocol.mode != Mode::Plain;
    tokio::spawn(signals.watch(stop.clone(), pipeline.aborter(), under_rsyslog));
    tokio::spawn(abort_after_drain_deadline(
        stopped.clone(),
        prepared.drain_timeout,
        pipeline.aborter(),
        stats.clone(),
    ));
    if let Some(interval) = prepared.stats_interval {
        tokio::spawn(report_periodically(stats.clone(), interval));
    }

    let stdin = BufReader::with_capacity(256 * 1024, tokio::io::stdin());
    let mut reader = LineReader::new(stdin, prepared.max_line_bytes);
    let mut replies = Replies::new(tokio::io::stdout(), prepared.protocol.keepalive);
    if prepared.probe {
        let probed = probe_until_ready(
            &prepared.deliverer,
            backoff,
            &mut reader,
            &mut replies,
            stopped.clone(),
            under_rsyslog,
        )
        .await;
        let failure = match probed {
            Ok(ProbeOutcome::Ready) => None,
            Ok(ProbeOutcome::Ended) => Some(None),
            Ok(ProbeOutcome::Failed(reason)) => Some(Some(reason)),
            Err(e) => Some(Some(format!("cannot write to stdout: {e}"))),
        };
        if let Some(failure) = failure {
            pipeline.finish().await;
            return match failure {
                None => {
                    tracing::info!("stopped before the probe succeeded; nothing was read");
                    ExitCode::SUCCESS
                }
                Some(reason) => {
                    if under_rsyslog {
                        let _ = replies.error(&reason).await;
                    }
                    usage_error(&anyhow::anyhow!(reason))
                }
            };
        }
        tracing::info!(endpoint = %prepared.deliverer.endpoint(), "probe accepted");
    }
    let session = Session {
        reader: &mut reader,
        replies,
        pipeline: &pipeline,
        settler: &settler,
        labeler: &prepared.labeler,
        max_line_bytes: prepared.max_line_bytes,
        config: &prepared.protocol,
    };
    let ending = session.run(stopped).await;
    stop.send_replace(true);
    omprog::settle_uncommitted(ending.uncommitted, &settler).await;
    let input_ok = ending.input_ok;
    pipeline.finish().await;
    let synced = settler.sync();

    let summary = stats.snapshot();
    if summary.lost > 0 {
        tracing::error!("{} messages were lost; {summary}", summary.lost);
    } else {
        tracing::info!("done: {summary}");
    }
    if summary.lost > 0 || !input_ok || !synced {
        ExitCode::from(EXIT_LOST)
    } else {
        ExitCode::SUCCESS
    }
}

enum ProbeOutcome {
    Ready,
    /// Input ended or a stop signal came first: there is nothing to send.
    Ended,
    Failed(String),
}

/// Runs `--probe` until it succeeds, fails permanently, or there is no point waiting (stop
/// signal, or end of input before any line arrived). Under rsyslog, keep-alive dots are
/// written meanwhile, so a long outage at start-up never hits confirmTimeout.
async fn probe_until_ready<R, W>(
    deliverer: &Deliverer,
    backoff: Backoff,
    reader: &mut LineReader<R>,
    replies: &mut Replies<W>,
    mut stopped: watch::Receiver<bool>,
    under_rsyslog: bool,
) -> std::io::Result<ProbeOutcome>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let probing = async {
        let probe = deliverer.probe(backoff);
        tokio::pin!(probe);
        let mut watch_input = true;
        loop {
            tokio::select! {
                result = &mut probe => return match result {
                    Ok(()) => ProbeOutcome::Ready,
                    Err(reason) => ProbeOutcome::Failed(reason),
                },
                _ = stopped.wait_for(|stopped| *stopped) => return ProbeOutcome::Ended,
                input = reader.has_input(), if watch_input => match input {
                    // Lines wait in the pipe until the probe is through.
                    Ok(true) => watch_input = false,
                    Ok(false) | Err(_) => return ProbeOutcome::Ended,
                },
            }
        }
    };
    if under_rsyslog {
        replies.keep_alive(probing).await
    } else {
        Ok(probing.await)
    }
}

async fn abort_after_drain_deadline(
    mut stopped: watch::Receiver<bool>,
    drain_timeout: Duration,
    aborter: Aborter,
    stats: Arc<Stats>,
) {
    if stopped.wait_for(|stopped| *stopped).await.is_err() {
        return;
    }
    tokio::time::sleep(drain_timeout).await;
    let pending = stats.snapshot().pending();
    tracing::warn!(
        "drain deadline of {drain_timeout:?} passed with {pending} messages undelivered; giving up on them"
    );
    aborter.abort();
}

async fn report_periodically(stats: Arc<Stats>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        tracing::info!("stats: {}", stats.snapshot());
    }
}

/// SIGTERM and SIGINT stop reading (a second one gives up on the drain); SIGHUP, which rsyslog
/// may forward, is logged and otherwise ignored rather than killing the process.
struct StopSignals {
    term: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<Self> {
        let install = |kind: SignalKind| signal(kind).context("cannot install signal handlers");
        Ok(StopSignals {
            term: install(SignalKind::terminate())?,
            interrupt: install(SignalKind::interrupt())?,
            hangup: install(SignalKind::hangup())?,
        })
    }

    /// Under rsyslog (a confirming mode) SIGINT is ignored: it is meant for rsyslogd's own
    /// terminal, and the program is stopped by EOF or SIGTERM.
    async fn watch(mut self, stop: watch::Sender<bool>, aborter: Aborter, ignore_interrupt: bool) {
        let mut received = 0;
        loop {
            let name = tokio::select! {
                Some(()) = self.term.recv() => "SIGTERM",
                Some(()) = self.interrupt.recv() => {
                    if ignore_interrupt {
                        tracing::info!("SIGINT ignored under rsyslog: stop with SIGTERM or end of input");
                        continue;
                    }
                    "SIGINT"
                }
                Some(()) = self.hangup.recv() => {
                    tracing::info!("SIGHUP ignored: there is nothing to reopen");
                    continue;
                }
                else => return,
            };
            received += 1;
            if received == 1 {
                tracing::info!("{name}: reading stopped, delivering what was already read");
                stop.send_replace(true);
            } else {
                tracing::warn!("{name} again: giving up on undelivered messages");
                aborter.abort();
            }
        }
    }
}
