//! A local stand-in for a load balancer with nothing behind it: it answers every request with
//! one fixed status (503 by default, like a Classic ELB with no instances) and hands each
//! request, as its access log would record it, to a channel before answering, so a request
//! that got a response is always logged.
//!
//! HTTP/1.1 with keep-alive; with TLS, HTTP/2 too (ALPN), as the load balancers do. A request
//! line over the limit is refused with 414 like ALB's 16 K limit.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::access_log::{self, Tls};
use crate::metrics::StatusCounts;
use crate::shutdown::Tasks;

/// ALB's documented limit for the request line.
pub const DEFAULT_MAX_REQUEST_LINE: usize = 16 * 1024;

#[derive(Clone)]
pub struct ServerOptions {
    pub status: StatusCode,
    pub max_request_line: usize,
    pub tls: Option<TlsAcceptor>,
}

impl ServerOptions {
    pub fn plain(status: StatusCode) -> Self {
        ServerOptions {
            status,
            max_request_line: DEFAULT_MAX_REQUEST_LINE,
            tls: None,
        }
    }
}

pub struct MockElb {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
}

/// What each connection needs to answer and log its requests.
struct Context {
    options: ServerOptions,
    local_addr: SocketAddr,
    requests: Option<mpsc::Sender<access_log::Request>>,
    answered: Option<Arc<StatusCounts>>,
}

impl MockElb {
    /// Serves on `listener`; every request is sent to `requests` (if given) before it is
    /// answered.
    pub fn serve(
        listener: TcpListener,
        options: ServerOptions,
        requests: Option<mpsc::Sender<access_log::Request>>,
    ) -> std::io::Result<Self> {
        Self::serve_counted(listener, options, requests, None)
    }

    /// [`serve`](Self::serve), counting the answers by status in `answered`.
    pub(crate) fn serve_counted(
        listener: TcpListener,
        options: ServerOptions,
        requests: Option<mpsc::Sender<access_log::Request>>,
        answered: Option<Arc<StatusCounts>>,
    ) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (shutdown, stop) = watch::channel(false);
        let context = Arc::new(Context {
            options,
            local_addr,
            requests,
            answered,
        });
        let server = tokio::spawn(accept_loop(listener, context, stop));
        Ok(MockElb {
            local_addr,
            shutdown,
            server,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets open connections finish their current request, and returns once
    /// every connection is closed (and so every request handed to the channel).
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        let _ = (&mut self.server).await;
    }
}

/// Dropped without [`shutdown`](MockElb::shutdown): the server and its connections are
/// aborted.
impl Drop for MockElb {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn accept_loop(listener: TcpListener, context: Arc<Context>, stop: watch::Receiver<bool>) {
    let connections = Tasks::default();
    let mut stopping = stop.clone();
    loop {
        let (stream, client) = tokio::select! {
            () = stopped(&mut stopping) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let context = context.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            match &context.options.tls {
                None => serve_connection(stream, client, None, context.clone(), stop).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            let (_, session) = stream.get_ref();
                            let tls = Tls {
                                cipher: session
                                    .negotiated_cipher_suite()
                                    .map(|suite| openssl_cipher_name(suite.suite()))
                                    .unwrap_or_else(|| "-".into()),
                                protocol: match session.protocol_version() {
                                    Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
                                    Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
                                    _ => "-".into(),
                                },
                                server_name: session.server_name().map(str::to_string),
                            };
                            serve_connection(stream, client, Some(tls), context.clone(), stop)
                                .await;
                        }
                        Ok(Err(e)) => tracing::debug!(%client, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%client, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    connections.join().await;
}

async fn serve_connection<S>(
    stream: S,
    client: SocketAddr,
    tls: Option<Tls>,
    context: Arc<Context>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let context = context.clone();
        let tls = tls.clone();
        async move { Ok::<_, Infallible>(answer(request, client, tls, &context).await) }
    });
    // HTTP/2's streams run in tasks of their own, joined with the connection.
    let streams = Tasks::default();
    let builder = auto::Builder::new(streams.clone());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
    streams.join().await;
}

/// Resolves once `stop` is set (or its sender is gone), holding no borrow of the value.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// The parts of the request line the answer and the log entry both need.
struct RequestLine<'a> {
    target: &'a str,
    version: &'static str,
    too_long: bool,
}

impl<'a> RequestLine<'a> {
    fn of(request: &'a Request<Incoming>, max_request_line: usize) -> Self {
        let target = request
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let version = version_text(request.version());
        let length = request.method().as_str().len() + 1 + target.len() + 1 + version.len();
        RequestLine {
            target,
            version,
            too_long: length > max_request_line,
        }
    }

    fn status(&self, options: &ServerOptions) -> StatusCode {
        if self.too_long {
            StatusCode::URI_TOO_LONG
        } else {
            options.status
        }
    }
}

async fn answer(
    request: Request<Incoming>,
    client: SocketAddr,
    tls: Option<Tls>,
    context: &Context,
) -> Response<Full<Bytes>> {
    let line = RequestLine::of(&request, context.options.max_request_line);
    let mut answered = line.status(&context.options);
    if let Some(requests) = &context.requests {
        let record = log_record(&request, &line, client, tls, context);
        if requests.send(record).await.is_err() {
            // The log writer has failed (a full disk): a request that cannot be logged must
            // not look delivered, so the sender gets a status it retries.
            answered = StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    if let Some(counts) = &context.answered {
        counts.count(answered.as_u16());
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = answered;
    response
}

/// The request as the load balancer's access log records it.
fn log_record(
    request: &Request<Incoming>,
    line: &RequestLine<'_>,
    client: SocketAddr,
    tls: Option<Tls>,
    context: &Context,
) -> access_log::Request {
    let RequestLine {
        target, version, ..
    } = *line;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The host is the Host header (HTTP/1) or :authority (HTTP/2) without its port; the port
    // is the listener's, as the load balancers log it.
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host())
        .map(|h| h.rsplit_once(':').map_or(h, |(host, _)| host).to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| context.local_addr.ip().to_string());
    let url = format!("{scheme}://{host}:{}{target}", context.local_addr.port());
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let received =
        request.method().as_str().len() + target.len() + version.len() + 4 + header_bytes + 2;
    access_log::Request {
        time: OffsetDateTime::now_utc(),
        client,
        method: request.method().to_string(),
        url: url.into_bytes(),
        version: version.to_string(),
        user_agent: request
            .headers()
            .get(header::USER_AGENT)
            .map(|v| v.as_bytes().to_vec()),
        status: line.status(&context.options).as_u16(),
        received_bytes: received as u64,
        // An empty response: status line, date, content-length.
        sent_bytes: 90,
        tls,
        unreadable: line.too_long,
    }
}

fn version_text(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
}

/// The OpenSSL-style names the load balancers log for the common suites.
fn openssl_cipher_name(suite: rustls::CipherSuite) -> String {
    use rustls::CipherSuite as S;
    let name = match suite {
        S::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        S::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        S::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        other => return format!("{other:?}"),
    };
    name.to_string()
}
