//! The `send` command: checks the configuration, then reads stdin into the pipeline until end
//! of input or a stop signal, drains within the deadline and reports.
//!
//! Data path, left to right: `input` reads bounded lines from stdin; the `session` counts and
//! labels each one (`outgoing`: id, sequence number, fragments) and queues it, answering
//! rsyslog through `omprog` in the confirming modes; the `pipeline`'s workers send its
//! requests through `retry`, which decides every retry and uses the `client` (HTTP, with
//! `tls`); `settle` accounts for every message (`stats`, `dead_letter`).
//!
//! Shutdown follows mini-redis: a `stop` watch means "read no more" (set by SIGTERM/SIGINT or
//! end of input, see `signals`), the pipeline's abort flag means "stop retrying" (set by the
//! drain deadline or a second signal), and joining the workers means "everything is settled".

mod client;
mod dead_letter;
mod endpoint;
mod input;
mod metrics;
mod omprog;
pub mod outgoing;
mod pipeline;
mod proxy;
mod retry;
mod session;
mod settle;
mod signals;
mod spooling;
mod stats;
mod stdio;
mod tail;
mod tls;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::BufReader;
use tokio::sync::watch;

use crate::cli::SendArgs;
use crate::exit::{self, Fatal, Status};
use crate::metrics::Lifecycle;
use crate::{key_file, wire};
use client::{Client, ClientOptions};
use dead_letter::DeadLetter;
use endpoint::Endpoint;
use input::{Line, LineReader};
use omprog::{Mode, ProtocolConfig, Replies};
use outgoing::Labeler;
use pipeline::{Aborter, Pipeline, PipelineConfig};
use retry::{Backoff, Retrier, RetryPolicy};
use session::{ProbeOutcome, Session};
use settle::Settler;
use signals::StopSignals;
use spooling::Spooler;
use stats::Stats;

pub use endpoint::{StatusSet, StatusSetError};
pub use tail::FileStart;
pub use tls::Trust;

/// Everything checked before the first line is read.
struct Prepared {
    stats: Arc<Stats>,
    client: Client,
    dead_letter: Option<Arc<DeadLetter>>,
    pipeline: PipelineConfig,
    retry: RetryPolicy,
    labeler: Arc<Labeler>,
    max_line_bytes: usize,
    drain_timeout: Duration,
    stats_interval: Option<Duration>,
    metrics_listener: Option<std::net::TcpListener>,
    protocol: ProtocolConfig,
    probe: bool,
    spooler: Option<Arc<Spooler>>,
    tail: Option<tail::TailInput>,
}

fn prepare(args: &SendArgs) -> anyhow::Result<Prepared> {
    let endpoint: Endpoint = args.url.parse()?;
    let max_line_bytes = max_line_bytes(args)?;
    if args.retry_initial.is_zero() || args.retry_max < args.retry_initial {
        anyhow::bail!("--retry-initial must be above zero and at most --retry-max");
    }
    let max_url_bytes = usize::try_from(args.max_url_bytes).unwrap_or(usize::MAX);
    let signer = match &args.sign_key {
        Some(path) => Some(key_file::load(path)?),
        None => None,
    };
    let format = wire::TargetFormat::new(endpoint.path(), max_url_bytes, signer);
    let patterns = tail::TailInput::check(args)?;
    let stats = Arc::new(Stats::default());
    // A dry run writes no file.
    let spooler = match args.spool.as_ref().filter(|_| !args.dry_run) {
        Some(dir) => Some(Arc::new(open_spool(dir, args, stats.clone())?)),
        None => None,
    };
    let tail = tail::TailInput::open(args, patterns)?;
    let sender = spooler.as_ref().map(|spooler| spooler.sender());
    let labeler = Labeler::new(format, args.ids, args.sequence, max_line_bytes, sender)?;
    if args.insecure {
        tracing::warn!("--insecure: the load balancer's TLS certificate is not verified");
    }
    let options = ClientOptions {
        concurrency: args.concurrency as usize,
        proxy: args.proxy.as_deref(),
        trust: args.trust,
        connect_timeout: args.connect_timeout,
        request_timeout: args.request_timeout,
        ca_cert: args.ca_cert.as_deref(),
        insecure: args.insecure,
    };
    let client = Client::new(endpoint, args.accept.clone(), &options, stats.clone())?;
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
    let metrics_listener = match args.metrics_listen.filter(|_| !args.dry_run) {
        Some(address) => Some(crate::metrics::bind(address)?),
        None => None,
    };
    // A dry run writes no file.
    let dead_letter = match args.dead_letter.as_ref().filter(|_| !args.dry_run) {
        Some(path) => Some(Arc::new(DeadLetter::open(path).with_context(|| {
            format!("cannot open dead-letter file {}", path.display())
        })?)),
        None => None,
    };
    Ok(Prepared {
        stats,
        client,
        dead_letter,
        pipeline: PipelineConfig {
            concurrency: args.concurrency as usize,
            queue_messages: args.queue_messages as usize,
            queue_bytes: args.queue_bytes.unwrap_or(if args.spool.is_some() {
                4 << 20
            } else {
                64 << 20
            }),
        },
        retry: RetryPolicy {
            backoff: Backoff {
                initial: args.retry_initial,
                max: args.retry_max,
            },
            max_attempts: args.max_attempts,
        },
        labeler: Arc::new(labeler),
        max_line_bytes: usize::try_from(max_line_bytes).unwrap_or(usize::MAX),
        drain_timeout: args.drain_timeout,
        stats_interval: args.stats_interval,
        metrics_listener,
        protocol,
        probe: args.probe,
        spooler,
        tail,
    })
}

/// `--max-line-bytes`, or its default: 16M, or less with `--spool` when a spool record cannot
/// hold that. A line the spool cannot take is refused here, at start, rather than acknowledged
/// and then dropped as damaged (above 1 GiB) or held until the spool is empty (above
/// `--spool-max-bytes`) (issue 21 item 12).
fn max_line_bytes(args: &SendArgs) -> anyhow::Result<u64> {
    const DEFAULT: u64 = 16 << 20;
    if args.spool.is_none() {
        return Ok(args.max_line_bytes.unwrap_or(DEFAULT));
    }
    check_spool_max_bytes(args)?;
    let largest = crate::spool::largest_payload(args.spool_max_bytes)
        .saturating_sub(outgoing::Outgoing::RECORD_EXTRA_BYTES);
    match args.max_line_bytes {
        None => Ok(DEFAULT.min(largest)),
        Some(bytes) if bytes <= largest => Ok(bytes),
        Some(bytes) => anyhow::bail!(
            "--max-line-bytes {bytes} is more than the spool holds in one record: at most {largest} with --spool-max-bytes {}",
            args.spool_max_bytes
        ),
    }
}

fn check_spool_max_bytes(args: &SendArgs) -> anyhow::Result<()> {
    if args.spool_max_bytes < crate::spool::MIN_MAX_BYTES {
        anyhow::bail!(
            "--spool-max-bytes must be at least {}",
            crate::spool::MIN_MAX_BYTES
        );
    }
    Ok(())
}

/// Claims a spool under `dir`, recovering and adopting what earlier processes left there.
fn open_spool(
    dir: &std::path::Path,
    args: &SendArgs,
    stats: Arc<Stats>,
) -> anyhow::Result<Spooler> {
    check_spool_max_bytes(args)?;
    if args.spool_sync_interval.is_zero() {
        anyhow::bail!("--spool-sync-interval must be above zero");
    }
    let limits = crate::spool::Limits::new(args.spool_max_bytes, args.spool_sync);
    let spools = crate::spool::Spools::open(dir, limits)?;
    Ok(Spooler::new(
        spools,
        limits,
        args.spool_sync_interval,
        stats,
    ))
}

/// Runs `send` to completion and returns the exit status.
pub fn run(args: &SendArgs) -> exit::Outcome {
    let prepared = prepare(args).map_err(Fatal::usage)?;
    if args.dry_run {
        return dry_run(&prepared);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Fatal::usage)?;
    // Spawned rather than run by block_on, so the reader runs on a worker thread next to the
    // workers instead of waking them across threads for every message.
    let outcome = runtime.block_on(async {
        tokio::spawn(send(prepared)).await.unwrap_or_else(|e| {
            tracing::error!("the send task failed: {e}");
            Ok(Status::Lost)
        })
    });
    // A blocking read of stdin cannot be cancelled; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    outcome
}

/// `--dry-run`: every line through the same reading, labelling and cutting as `send`, and the
/// targets printed instead of sent.
fn dry_run(prepared: &Prepared) -> exit::Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start the async runtime")
        .map_err(Fatal::usage)?;
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
        Ok(0) => Ok(Status::Success),
        Ok(_) => Ok(Status::Lost),
        Err(e) if exit::reader_went_away(&e) => Ok(Status::Success),
        Err(e) => Err(Fatal::lost(e)),
    }
}

async fn send(prepared: Prepared) -> exit::Outcome {
    let signals = StopSignals::install().map_err(Fatal::usage)?;
    let stats = prepared.stats.clone();
    let settler = Arc::new(Settler::new(stats.clone(), prepared.dead_letter.clone()));
    tracing::debug!(endpoint = %prepared.client.endpoint(), "sending stdin");
    let retrier = Arc::new(Retrier::new(
        prepared.client,
        prepared.pipeline.concurrency,
        prepared.retry,
        stats.clone(),
    ));
    let pipeline = Pipeline::start(
        prepared.pipeline,
        retrier.clone(),
        prepared.labeler.clone(),
        settler.clone(),
    );

    let lifecycle = Arc::new(Lifecycle::default());
    let (workers_running, workers) = pipeline.workers_running();
    lifecycle.watch_tasks(workers_running, workers);
    if let Some(listener) = prepared.metrics_listener {
        let (queue_bytes, queue_bytes_capacity) = pipeline.byte_budget();
        let sources = metrics::Sources {
            stats: stats.clone(),
            retrier: retrier.clone(),
            queue_bytes,
            queue_bytes_capacity,
            queue_messages_capacity: prepared.pipeline.queue_messages as u64,
            spooler: prepared.spooler.clone(),
            files: prepared.tail.as_ref().map(|tail| tail.metrics.clone()),
        };
        crate::metrics::serve(listener, metrics::registry(sources), lifecycle.clone());
    }

    let (stop, stopped) = watch::channel(false);
    tokio::spawn({
        let (mut stopped, lifecycle) = (stopped.clone(), lifecycle.clone());
        async move {
            if stopped.wait_for(|stopped| *stopped).await.is_ok() {
                lifecycle.draining();
            }
        }
    });
    let under_rsyslog = prepared.protocol.mode.under_rsyslog();
    tokio::spawn(signals.watch(stop.clone(), pipeline.aborter(), under_rsyslog));
    tokio::spawn(abort_after_drain_deadline(
        stopped.clone(),
        prepared.drain_timeout,
        retrier.clone(),
        pipeline.aborter(),
        stats.clone(),
        prepared.spooler.clone(),
    ));
    if let Some(interval) = prepared.stats_interval {
        tokio::spawn(report_periodically(stats.clone(), interval));
    }
    let spooler = prepared.spooler.clone();
    if let Some(spooler) = &spooler {
        // A line read from a file and not spooled stays in the file: given back, not lost.
        let plain = prepared.protocol.mode == Mode::Plain && prepared.tail.is_none();
        spooler.watch_stop(stopped.clone(), pipeline.abort_signal(), plain);
        if let Some(dead_letter) = &prepared.dead_letter {
            spooler.sync_before_reclaim(dead_letter.clone());
        }
        tokio::spawn(spooler.clone().maintain());
    }

    let stdin = BufReader::with_capacity(256 * 1024, stdio::Input::open(under_rsyslog));
    let mut reader = LineReader::new(stdin, prepared.max_line_bytes);
    let stdout = stdio::Output::open(under_rsyslog);
    let mut replies = Replies::new(stdout, prepared.protocol.keepalive);
    if prepared.probe {
        let probed = session::probe_until_ready(
            &retrier,
            &mut reader,
            &mut replies,
            stopped.clone(),
            under_rsyslog,
            prepared.tail.is_none(),
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
                    Ok(Status::Success)
                }
                Some(reason) => {
                    if under_rsyslog {
                        let _ = replies.error(&reason).await;
                    }
                    Err(Fatal::usage(anyhow::anyhow!(reason)))
                }
            };
        }
        tracing::info!(endpoint = %retrier.client().endpoint(), "probe accepted");
    }
    lifecycle.started();
    let session = Session {
        reader: &mut reader,
        replies,
        pipeline: &pipeline,
        settler: &settler,
        labeler: &prepared.labeler,
        max_line_bytes: prepared.max_line_bytes,
        config: &prepared.protocol,
        spool: spooler.as_deref(),
    };
    if let Some(spooler) = &spooler {
        // Its own task: delivery from the spool runs beside the read loop, and the queue
        // closes once the feeder has taken everything after the end of input (or the drain
        // was given up).
        tokio::spawn(spooler.clone().feed(
            pipeline.submitter(),
            prepared.labeler.clone(),
            stopped.clone(),
            pipeline.abort_signal(),
        ));
    }
    let mut ending = match prepared.tail {
        Some(input) => tail::read(input, &session, stopped).await,
        None => session.run(stopped).await,
    };
    if let Some(spooler) = &spooler
        && let Err(e) = spooler.flush().await
    {
        tracing::error!("{e}");
        ending.input_ok = false;
    }
    stop.send_replace(true);
    omprog::settle_uncommitted(ending.uncommitted, &settler).await;
    let input_ok = ending.input_ok;
    pipeline.finish().await;
    let synced = settler.sync();
    let spool_ok = match spooler {
        Some(spooler) => spooler.finish().await,
        None => true,
    };

    let summary = stats.snapshot();
    if summary.lost > 0 {
        tracing::error!("{} messages were lost; {summary}", summary.lost);
    } else {
        tracing::info!("done: {summary}");
    }
    if summary.lost > 0 || !input_ok || !synced || !spool_ok {
        Ok(Status::Lost)
    } else {
        Ok(Status::Success)
    }
}

/// Once reading stops, the drain has `drain_timeout`: the retrier gives every message its
/// last attempt before then, and at the deadline the workers give up on what is left.
async fn abort_after_drain_deadline(
    mut stopped: watch::Receiver<bool>,
    drain_timeout: Duration,
    retrier: Arc<Retrier>,
    aborter: Aborter,
    stats: Arc<Stats>,
    spooler: Option<Arc<Spooler>>,
) {
    if stopped.wait_for(|stopped| *stopped).await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + drain_timeout;
    retrier.drain_until(deadline, drain_timeout);
    tokio::time::sleep_until(deadline).await;
    match spooler {
        Some(spooler) => tracing::warn!(
            "drain deadline of {drain_timeout:?} passed with {} messages undelivered; they stay in the spool for the next run",
            spooler.pending()
        ),
        None => {
            let pending = stats.snapshot().pending();
            tracing::warn!(
                "drain deadline of {drain_timeout:?} passed with {pending} messages undelivered; giving up on them"
            );
        }
    }
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
