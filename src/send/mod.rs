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
mod config;
mod dead_letter;
mod endpoint;
mod http2;
mod input;
mod job;
mod metrics;
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
mod tls;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::BufReader;
use tokio::sync::watch;

use crate::exit::{self, Fatal, Status};
use crate::metrics::Lifecycle;
use crate::{key_file, wire};
use client::{Client, ClientOptions};
use dead_letter::DeadLetter;
use endpoint::Endpoint;
use input::{Line, LineReader};
use outgoing::Labeler;
use pipeline::{Aborter, Pipeline, PipelineConfig};
use retry::{Retrier, RetryPolicy};
use session::omprog::{self, Mode, ProtocolConfig, Replies};
use session::{ProbeOutcome, Session};
use settle::Settler;
use signals::StopSignals;
use spooling::Spooler;
use stats::Stats;

pub use config::Config;
pub use endpoint::{StatusSet, StatusSetError};
pub use http2::HttpVersion;
pub use tls::Trust;

/// Everything checked before the first line is read.
struct Prepared {
    stats: Arc<Stats>,
    client: Client,
    /// `--accept`, for the retrier's classification.
    accept: StatusSet,
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
}

/// Checks the configuration (pure checks first), then opens what `send` uses: the key, the
/// spool, the client, the metrics listener and the dead-letter file.
fn prepare(config: &Config) -> anyhow::Result<Prepared> {
    let endpoint: Endpoint = config.url.parse()?;
    if config.http == HttpVersion::Http2 && !endpoint.scheme_is_https() {
        anyhow::bail!("--http 2 needs an https:// URL: HTTP/2 is negotiated by TLS (ALPN)");
    }
    let max_line_bytes = config.max_line_bytes()?;
    let retry = config.retry_policy()?;
    let protocol = config.protocol()?;
    // A dry run writes no file.
    let spool_dir = config.spool.as_ref().filter(|_| !config.dry_run);
    if spool_dir.is_some() {
        config.check_spool()?;
    }
    let max_url_bytes = usize::try_from(config.max_url_bytes).unwrap_or(usize::MAX);
    let signer = match &config.sign_key {
        Some(path) => Some(key_file::load(path)?),
        None => None,
    };
    let format = wire::TargetFormat::new(endpoint.path(), max_url_bytes, signer);
    let stats = Arc::new(Stats::default());
    let spooler = match spool_dir {
        Some(dir) => Some(Arc::new(open_spool(dir, config, stats.clone())?)),
        None => None,
    };
    let sender = spooler.as_ref().map(|spooler| spooler.sender());
    let labeler = Labeler::new(format, config.ids, config.sequence, max_line_bytes, sender)?;
    if config.insecure {
        tracing::warn!("--insecure: the load balancer's TLS certificate is not verified");
    }
    let options = ClientOptions {
        concurrency: config.concurrency as usize,
        proxy: config.proxy.as_deref(),
        trust: config.trust,
        connect_timeout: config.connect_timeout,
        request_timeout: config.request_timeout,
        ca_cert: config.ca_cert.as_deref(),
        insecure: config.insecure,
        http: config.http,
    };
    let client = Client::new(endpoint, &options, stats.clone())?;
    let metrics_listener = match config.metrics_listen.filter(|_| !config.dry_run) {
        Some(address) => Some(crate::metrics::bind(address)?),
        None => None,
    };
    // A dry run writes no file.
    let dead_letter = match config.dead_letter.as_ref().filter(|_| !config.dry_run) {
        Some(path) => Some(Arc::new(DeadLetter::open(path).with_context(|| {
            format!("cannot open dead-letter file {}", path.display())
        })?)),
        None => None,
    };
    Ok(Prepared {
        stats,
        client,
        accept: config.accept.clone(),
        dead_letter,
        pipeline: config.pipeline(),
        retry,
        labeler: Arc::new(labeler),
        max_line_bytes: usize::try_from(max_line_bytes).unwrap_or(usize::MAX),
        drain_timeout: config.drain_timeout,
        stats_interval: config.stats_interval,
        metrics_listener,
        protocol,
        probe: config.probe,
        spooler,
    })
}

/// Claims a spool under `dir`, recovering and adopting what earlier processes left there.
fn open_spool(
    dir: &std::path::Path,
    config: &Config,
    stats: Arc<Stats>,
) -> anyhow::Result<Spooler> {
    let limits = crate::spool::Limits::new(config.spool_max_bytes, config.spool_sync);
    let spools = crate::spool::Spools::open(dir, limits)?;
    Ok(Spooler::new(
        spools,
        limits,
        config.spool_sync_interval,
        stats,
    ))
}

/// Runs `send` to completion and returns the exit status.
pub fn run(config: &Config) -> exit::Outcome {
    let prepared = prepare(config).map_err(Fatal::usage)?;
    if config.dry_run {
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
        prepared.accept,
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
        let plain = prepared.protocol.mode == Mode::Plain;
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
    let mut ending = session.run(stopped).await;
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
