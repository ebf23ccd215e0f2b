//! The `mock-elb` command: a local stand-in for a load balancer with nothing behind it, and its
//! access-log files in the S3 layout, until SIGTERM or SIGINT; then the server drains its
//! connections and the last file is completed.
//!
//! Data path: the server answers each request and hands it to a channel, and the log files
//! take it from there (rotation, gzip for ALB, keys as in S3).

mod log_files;
mod server;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use http::StatusCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::access_log::Balancer;
use crate::exit::{self, Fatal, Status};
use crate::metrics::{Lifecycle, StatusCounts};
use crate::shutdown::{Again, OnSignals, Shutdown};
use log_files::LogFiles;

pub use server::{DEFAULT_MAX_REQUEST_LINE, MockElb, ServerOptions};

/// `mock-elb`'s configuration, built from the command line at the edge (`cli.rs`); the
/// meaning of each field is its flag's (`mock-elb --help`).
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: std::net::SocketAddr,
    pub log_dir: std::path::PathBuf,
    pub format: crate::access_log::Format,
    pub status: u16,
    pub rotate_secs: u64,
    pub max_request_line: u64,
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    pub name: String,
    pub account: String,
    pub region: String,
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// `mock-elb`'s metrics: the requests it answered, by status, and the entries it logged.
struct MockElbCollector {
    answered: Arc<StatusCounts>,
    logged: Arc<AtomicU64>,
}

impl std::fmt::Debug for MockElbCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockElbCollector")
    }
}

impl Collector for MockElbCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        crate::metrics::labelled_counter(
            &mut encoder,
            "mock_elb_requests",
            "Requests answered, by status.",
            "code",
            self.answered.seen(),
        )?;
        crate::metrics::counter(
            &mut encoder,
            "mock_elb_logged_entries",
            "Access-log entries written.",
            self.logged.load(Ordering::Relaxed),
        )
    }
}

pub fn run(args: &Config) -> exit::Outcome {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Fatal::usage)?;
    runtime.block_on(serve(args)).map_err(Fatal::usage)?;
    Ok(Status::Success)
}

async fn serve(args: &Config) -> anyhow::Result<()> {
    let status = StatusCode::from_u16(args.status).context("invalid --status")?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key, args.format)?),
        _ => None,
    };
    let balancer = Balancer {
        name: args.name.clone(),
        id: crate::hex::random(16),
        account: args.account.clone(),
        region: args.region.clone(),
        node_ip: args.listen.ip().to_string(),
    };
    let files = LogFiles::new(
        &args.log_dir,
        args.format,
        balancer,
        Duration::from_secs(args.rotate_secs),
    )
    .with_context(|| format!("cannot create log directory {}", args.log_dir.display()))?;
    let shutdown = Arc::new(Shutdown::default());
    shutdown
        .watch_signals(OnSignals {
            ignore_interrupt: false,
            ignore_hangup: false,
            first: |name| format!("{name}: stopping"),
            again: Again::Ignore,
        })
        .context("cannot install signal handlers")?;
    let metrics_listener = args.metrics_listen.map(crate::metrics::bind).transpose()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;

    let answered = Arc::new(StatusCounts::default());
    let logged = Arc::new(AtomicU64::new(0));
    let lifecycle = Arc::new(Lifecycle::default());
    if let Some(metrics_listener) = metrics_listener {
        let collector = MockElbCollector {
            answered: answered.clone(),
            logged: logged.clone(),
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        crate::metrics::serve(metrics_listener, registry, lifecycle.clone(), &shutdown);
    }
    let (requests, received) = mpsc::channel(4096);
    let writer = tokio::spawn(async move {
        let written = log_files::write_until_closed(files, received, logged).await;
        if let Err(e) = &written {
            tracing::error!("cannot write the access log; answering 500 from now on: {e}");
        }
        written
    });
    let options = ServerOptions {
        status,
        max_request_line: usize::try_from(args.max_request_line).unwrap_or(usize::MAX),
        tls: tls.clone(),
    };
    let elb = MockElb::serve_counted(listener, options, Some(requests), Some(answered))?;
    // Ready before the banner: a script that read the address may ask /readyz at once.
    lifecycle.started();
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Scripts read the first line for the address (with port 0 it is only known now). A
    // reader that went away after that line is no reason to stop serving.
    let banner = format!(
        "listening on {scheme}://{}/\nanswering {status}; {:?} access logs under {}\n",
        elb.local_addr(),
        args.format,
        args.log_dir.join("AWSLogs").display()
    );
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(banner.as_bytes())
        .and_then(|()| stdout.flush())
    {
        tracing::warn!("cannot write the address to stdout: {e}");
    }
    drop(stdout);

    let _ = shutdown.stopped().wait_for(|stopped| *stopped).await;
    lifecycle.draining();
    elb.shutdown().await;
    let logged = writer
        .await
        .context("the log writer failed")?
        .context("cannot write the access log")?;
    shutdown.join().await;
    tracing::info!("{logged} requests logged");
    Ok(())
}

/// HTTPS; HTTP/2 by ALPN too as ALB does, except in the Classic format: a Classic ELB speaks
/// no HTTP/2, so it offers only `http/1.1`.
fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
    format: crate::access_log::Format,
) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read --tls-cert {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("no certificate in --tls-cert {}", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read --tls-key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not fit together")?;
    config.alpn_protocols = match format {
        crate::access_log::Format::Classic => vec![b"http/1.1".to_vec()],
        crate::access_log::Format::Alb => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(TlsAcceptor::from(Arc::new(config)))
}
