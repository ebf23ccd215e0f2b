//! The `send` command: checks the configuration (`config`), opens what it names, then runs in
//! phases: start delivery, read stdin into the pipeline until end of input or a stop signal,
//! drain within the deadline, join every task, report.
//!
//! Data path, left to right: `input` reads bounded lines from stdin; the `session` counts and
//! labels each one (`outgoing`: id, sequence number, fragments) and queues it, answering
//! rsyslog through `omprog` in the confirming modes; the `pipeline`'s workers send its
//! requests through `retry`, which decides every retry and uses the `client` (HTTP, with
//! `tls`); `settle` accounts for every message (`stats`, `dead_letter`).
//!
//! Shutdown follows mini-redis, with the crate's one `Shutdown`: its stop means "read no more"
//! (SIGTERM/SIGINT or end of input), its abort "stop retrying" (the drain deadline or a second
//! signal); joining the workers means "everything is settled", and joining the run's tasks
//! leaves none running.
//!
//! Over 400 lines because preparing (checks, then opening) and the phases of a run are read
//! together, top to bottom.

mod client;
mod config;
mod dead_letter;
mod dry_run;
mod endpoint;
mod feeder;
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
mod spooling;
mod stats;
mod stdio;
mod tail;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::BufReader;

use crate::exit::{self, Fatal, Status};
use crate::metrics::Lifecycle;
use crate::shutdown::{Again, OnSignals, Shutdown};
use crate::{key_file, wire};
use client::{Client, ClientOptions};
use dead_letter::DeadLetter;
use endpoint::Endpoint;
use input::LineReader;
use outgoing::Labeler;
use pipeline::{Pipeline, PipelineConfig};
use retry::{Retrier, RetryPolicy};
use session::omprog::{self, Mode, ProtocolConfig, Replies};
use session::{ProbeOutcome, Session};
use settle::Settler;
use spooling::Spooler;
use stats::Stats;

pub use config::{Config, FileStart};
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
    tail: Option<tail::TailInput>,
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
    let patterns = tail::TailInput::check(config)?;
    let stats = Arc::new(Stats::default());
    let spooler = match spool_dir {
        Some(dir) => Some(Arc::new(open_spool(dir, config, stats.clone())?)),
        None => None,
    };
    let tail = tail::TailInput::open(config, patterns)?;
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
        tail,
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
        return dry_run::run(&prepared.labeler, prepared.max_line_bytes);
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
    // Every task joined or aborted (blocking work is not counted), as a test reads here.
    let left = runtime.metrics().num_alive_tasks();
    tracing::debug!("{left} tasks left running at exit");
    // A blocking read of stdin cannot be cancelled; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    outcome
}

/// The run, phase by phase: start delivery, wait for `--probe`, read until end of input or
/// a stop, drain, join every task, report.
async fn send(prepared: Prepared) -> exit::Outcome {
    let under_rsyslog = prepared.protocol.mode.under_rsyslog();
    let shutdown = Arc::new(Shutdown::default());
    shutdown
        .watch_signals(signals(under_rsyslog))
        .context("cannot install signal handlers")
        .map_err(Fatal::usage)?;
    let (delivery, reading) = start(prepared, &shutdown);
    let stats = delivery.stats.clone();
    let outcome = match read(&delivery, reading, &shutdown).await {
        Ok(ending) => Ok(drain(delivery, ending, &shutdown).await),
        Err(ended) => {
            delivery.pipeline.finish().await;
            Err(ended)
        }
    };
    shutdown.join().await;
    match outcome {
        Ok(all_ok) => Ok(report(&stats, all_ok)),
        Err(ended) => ended,
    }
}

/// SIGTERM and SIGINT stop reading, a second one gives up on the drain.
fn signals(under_rsyslog: bool) -> OnSignals {
    OnSignals {
        ignore_interrupt: under_rsyslog,
        ignore_hangup: true,
        first: |name| format!("{name}: reading stopped, delivering what was already read"),
        again: Again::Abort(|name| format!("{name} again: giving up on undelivered messages")),
    }
}

/// What delivers: the pipeline and what it settles with, running from the start.
struct Delivery {
    stats: Arc<Stats>,
    settler: Arc<Settler>,
    retrier: Arc<Retrier>,
    pipeline: Pipeline,
    labeler: Arc<Labeler>,
    spooler: Option<Arc<Spooler>>,
    lifecycle: Arc<Lifecycle>,
}

/// What the reading needs.
struct Reading {
    max_line_bytes: usize,
    protocol: ProtocolConfig,
    probe: bool,
    /// `--file`: read instead of stdin.
    tail: Option<tail::TailInput>,
}

/// Starts the pipeline and every background task of the run: the metrics server, the
/// readiness's drain flag, the drain deadline, the periodic report, the spool's maintenance.
fn start(prepared: Prepared, shutdown: &Arc<Shutdown>) -> (Delivery, Reading) {
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
        shutdown.aborted(),
    );

    // Aborted after the run's tasks are joined, when nothing is in flight any more.
    shutdown.close_at_join(retrier.client().connections());
    shutdown.close_at_join(settler.retries());
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
        let registry = metrics::registry(sources);
        crate::metrics::serve(listener, registry, lifecycle.clone(), shutdown);
    }
    shutdown.spawn({
        let (mut stopped, lifecycle) = (shutdown.stopped(), lifecycle.clone());
        async move {
            if stopped.wait_for(|stopped| *stopped).await.is_ok() {
                lifecycle.draining();
            }
        }
    });
    shutdown.spawn(abort_after_drain_deadline(
        shutdown.clone(),
        prepared.drain_timeout,
        retrier.clone(),
        stats.clone(),
        prepared.spooler.clone(),
    ));
    if let Some(interval) = prepared.stats_interval {
        shutdown.spawn(stats::report_periodically(stats.clone(), interval));
    }
    if let Some(spooler) = &prepared.spooler {
        // A line read from a file and not spooled stays in the file: given back, not lost.
        let plain = prepared.protocol.mode == Mode::Plain && prepared.tail.is_none();
        spooler.watch_stop(shutdown.stopped(), shutdown.aborted(), plain);
        if let Some(dead_letter) = &prepared.dead_letter {
            spooler.sync_before_reclaim(dead_letter.clone());
        }
        shutdown.spawn(spooler.clone().maintain());
    }
    let delivery = Delivery {
        stats,
        settler,
        retrier,
        pipeline,
        labeler: prepared.labeler,
        spooler: prepared.spooler,
        lifecycle,
    };
    let reading = Reading {
        max_line_bytes: prepared.max_line_bytes,
        protocol: prepared.protocol,
        probe: prepared.probe,
        tail: prepared.tail,
    };
    (delivery, reading)
}

/// Waits for `--probe`, then reads until end of input or a stop; with `--spool`, the feeder
/// delivers from the spool meanwhile. `Err` is the outcome of a run that ended before
/// reading (the probe failed, or a stop came first).
async fn read(
    delivery: &Delivery,
    reading: Reading,
    shutdown: &Shutdown,
) -> Result<session::Ending, exit::Outcome> {
    let under_rsyslog = reading.protocol.mode.under_rsyslog();
    let stdin = BufReader::with_capacity(256 * 1024, stdio::Input::open(under_rsyslog));
    let mut reader = LineReader::new(stdin, reading.max_line_bytes);
    let stdout = stdio::Output::open(under_rsyslog);
    let mut replies = Replies::new(stdout, reading.protocol.keepalive);
    if reading.probe {
        let probed = session::probe_until_ready(
            &delivery.retrier,
            &mut reader,
            &mut replies,
            shutdown.stopped(),
            under_rsyslog,
            reading.tail.is_none(),
        )
        .await;
        let failure = match probed {
            Ok(ProbeOutcome::Ready) => None,
            Ok(ProbeOutcome::Ended) => Some(None),
            Ok(ProbeOutcome::Failed(reason)) => Some(Some(reason)),
            Err(e) => Some(Some(format!("cannot write to stdout: {e}"))),
        };
        if let Some(failure) = failure {
            return Err(match failure {
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
            });
        }
        tracing::info!(endpoint = %delivery.retrier.client().endpoint(), "probe accepted");
    }
    delivery.lifecycle.started();
    let spooler = delivery.spooler.as_deref();
    let session = Session {
        reader: &mut reader,
        replies,
        pipeline: &delivery.pipeline,
        settler: &delivery.settler,
        labeler: &delivery.labeler,
        max_line_bytes: reading.max_line_bytes,
        config: &reading.protocol,
        spool: spooler,
    };
    if let Some(spooler) = &delivery.spooler {
        // Its own task: delivery from the spool runs beside the read loop, and the queue
        // closes once the feeder has taken everything after the end of input (or the drain
        // was given up).
        shutdown.spawn(feeder::feed(
            spooler.clone(),
            delivery.pipeline.submitter(),
            delivery.labeler.clone(),
            shutdown.stopped(),
            shutdown.aborted(),
        ));
    }
    let mut ending = match reading.tail {
        Some(input) => tail::read(input, &session, shutdown.stopped()).await,
        None => session.run(shutdown.stopped()).await,
    };
    if let Some(spooler) = spooler
        && let Err(e) = spooler.flush().await
    {
        tracing::error!("{e}");
        ending.input_ok = false;
    }
    Ok(ending)
}

/// Reading stopped: settles a transaction left open, delivers what is queued (within the
/// drain deadline), makes the dead-letter file durable and finishes the spool. Whether all of
/// it went well.
async fn drain(delivery: Delivery, ending: session::Ending, shutdown: &Shutdown) -> bool {
    shutdown.stop();
    omprog::settle_uncommitted(ending.uncommitted, &delivery.settler).await;
    delivery.pipeline.finish().await;
    let synced = delivery.settler.sync();
    let spool_ok = match delivery.spooler {
        Some(spooler) => spooler.finish().await,
        None => true,
    };
    ending.input_ok && synced && spool_ok
}

/// The summary, and the exit status it means.
fn report(stats: &Stats, all_ok: bool) -> Status {
    let summary = stats.snapshot();
    if summary.lost > 0 {
        tracing::error!("{} messages were lost; {summary}", summary.lost);
    } else {
        tracing::info!("done: {summary}");
    }
    if summary.lost > 0 || !all_ok {
        Status::Lost
    } else {
        Status::Success
    }
}

/// Once reading stops, the drain has `drain_timeout`: the retrier gives every message its
/// last attempt before then, and at the deadline the workers give up on what is left.
async fn abort_after_drain_deadline(
    shutdown: Arc<Shutdown>,
    drain_timeout: Duration,
    retrier: Arc<Retrier>,
    stats: Arc<Stats>,
    spooler: Option<Arc<Spooler>>,
) {
    if shutdown
        .stopped()
        .wait_for(|stopped| *stopped)
        .await
        .is_err()
    {
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
    shutdown.abort();
}
