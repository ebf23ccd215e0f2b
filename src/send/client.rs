//! One HTTP request per attempt over keep-alive connections: the endpoint, the request, and
//! its raw [`Answer`] (a status, or why there was none). What an answer means for delivery
//! is decided above, in `retry`.
//!
//! The client is hyper's rather than reqwest because reqwest carries the URL as a WHATWG
//! `Url`, which rewrites `'` to `%27` in query strings of http(s) URLs; the compatible wire
//! format leaves `'` unescaped, exactly as `encodeURIComponent` does. It is hyper's
//! connection-level `client::conn::http1` rather than its pooled client, whose per-request
//! pool checkout and dispatch cost about as much CPU as the rest of `send` together.
//!
//! On `https://` endpoints that offer `h2` by ALPN (`--http auto|2`), requests go as streams
//! over the few connections of [`http2::Pool`] instead.
//!
//! Over 400 lines because HTTP/1.1, HTTP/2 and the proxy's refusals all end in the one raw
//! [`Answer`], and are read together.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;

use super::endpoint::Endpoint;
use super::http2::{self, HttpVersion};
use super::proxy::{self as route, Connector, Route};
use super::stats::{RequestError, Stats};
use super::tls::{self, Trust};
use crate::exit;
use crate::shutdown::Tasks;

pub(super) struct ClientOptions<'a> {
    pub concurrency: usize,
    /// `--proxy`: a URL, or `none`; the environment when not given.
    pub proxy: Option<&'a str>,
    pub trust: Trust,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub ca_cert: Option<&'a Path>,
    pub insecure: bool,
    pub http: HttpVersion,
}

/// What one request came to, unclassified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// The endpoint answered, with a `Retry-After` in seconds if it gave one.
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    /// No answer: no connection, TLS refused, a reset, the request timeout.
    Failed(String),
    /// No answer, and none will come by trying again: the proxy refused our credentials.
    Refused(String),
}

/// Sends requests to one endpoint over its own keep-alive connections and reports their raw
/// answers.
///
/// Each connection is hyper's `client::conn::http1`, taken from the idle list by the request
/// that uses it and put back after its response: no pool keyed by host, no absolute-form URI
/// rebuilt per request, no dispatch through a shared pool.
pub(super) struct Client {
    endpoint: Endpoint,
    route: Route,
    connector: Connector,
    /// `scheme://authority/` of what the connector connects to: the endpoint, or the forward
    /// proxy.
    origin: Uri,
    /// Through a forward proxy: the endpoint's `scheme://authority/`, for absolute-form
    /// targets.
    forward_to: Option<Uri>,
    /// The Host header, as hyper's pooled client writes it: the port only when not the
    /// scheme's default.
    host: HeaderValue,
    request_timeout: Duration,
    user_agent: HeaderValue,
    /// Connections waiting for their next request, the most recently used last.
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    /// `--http`, where the endpoint is https (else HTTP/1.1).
    http: HttpVersion,
    /// What the endpoint chose by ALPN when it was not `h2` (HTTP/1.1, or none): no more
    /// HTTP/2 attempts, each request goes over HTTP/1.1 (`auto`) or is refused (`2`).
    chose_other: OnceLock<Option<String>>,
    h2: http2::Pool,
    /// The connections' I/O tasks (and HTTP/2's per-request ones), closed when the run ends.
    connections: Tasks,
    stats: Arc<Stats>,
}

struct Connection {
    sender: http1::SendRequest<Empty<Bytes>>,
    idle_since: Instant,
}

/// Below the 60 s idle timeout of ELB and ALB: a connection idle for longer is closed rather
/// than reused, so we never race the load balancer on a connection it is closing.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Responses are only read so the connection can be reused; their content is never used.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// How often one request is sent again because a connection did not process it (`GOAWAY`,
/// `REFUSED_STREAM`) before that counts as a failure, so a server that refuses everything
/// cannot keep a request spinning.
const MAX_UNPROCESSED_RESENDS: u32 = 8;

/// Why no HTTP/2 connection was opened.
enum H2Refusal {
    /// The connection, or TLS, failed.
    Connect(BoxError),
    /// The endpoint chose another protocol by ALPN (or none): the name it chose.
    NotOffered(Option<String>),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Counts a request in flight for as long as it lives (a cancelled attempt included).
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn count(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn proxy_auth_refused() -> Answer {
    Answer::Refused(
        "the proxy refused: 407 Proxy Authentication Required (credentials go in the proxy URL)"
            .into(),
    )
}

impl Client {
    pub(super) fn new(
        endpoint: Endpoint,
        options: &ClientOptions<'_>,
        stats: Arc<Stats>,
    ) -> anyhow::Result<Self> {
        let tls = tls::client_config(options.trust, options.ca_cert, options.insecure)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(options.connect_timeout));
        let user_agent =
            HeaderValue::from_static(concat!("drifter-rsyslog/", env!("CARGO_PKG_VERSION")));
        let (endpoint_origin, host) = endpoint.origin_and_host();
        let route = Route::to(&endpoint_origin, options.proxy)?;
        if let Some(proxy) = route.proxy() {
            tracing::info!(endpoint = %endpoint, "through the proxy {proxy}");
        }
        let http_version = if endpoint.scheme_is_https() {
            options.http
        } else {
            HttpVersion::Http1
        };
        let offer_h2 = http_version != HttpVersion::Http1;
        let connector = Connector::new(&route, tls, http, offer_h2);
        let (origin, forward_to) = match &route {
            Route::Forward { proxy, .. } => (proxy.clone(), Some(endpoint_origin)),
            Route::Direct | Route::Tunnel { .. } => (endpoint_origin, None),
        };
        Ok(Client {
            endpoint,
            route,
            connector,
            origin,
            forward_to,
            host,
            request_timeout: options.request_timeout,
            user_agent,
            idle: Mutex::new(Vec::new()),
            max_idle: options.concurrency.max(1),
            http: http_version,
            chose_other: OnceLock::new(),
            h2: http2::Pool::new(IDLE_TIMEOUT),
            connections: Tasks::default(),
            stats,
        })
    }

    pub(super) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    pub(super) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub(super) fn connections(&self) -> &Tasks {
        &self.connections
    }

    /// A request target checked once, to be sent as often as it takes (no copy per attempt).
    pub(super) fn request_target(target: String) -> Result<PathAndQuery, String> {
        PathAndQuery::from_maybe_shared(Bytes::from(target))
            .map_err(|e| format!("request target rejected: {e}"))
    }

    /// Sends `GET <target>` once, within the request timeout, and counts it (its status, or
    /// why there was none).
    pub(super) async fn send(&self, target: &PathAndQuery) -> Answer {
        let requests = &self.stats.requests;
        let _in_flight = InFlight::count(&requests.in_flight);
        Stats::add(&requests.target_bytes, target.as_str().len() as u64);
        match tokio::time::timeout(self.request_timeout, self.request(target)).await {
            Ok(Ok(answer)) => {
                if let Answer::Status { status, .. } = answer {
                    requests.statuses.count(status.as_u16());
                }
                answer
            }
            Ok(Err((error, answer))) => {
                requests.failed(error);
                answer
            }
            Err(_) => {
                requests.failed(RequestError::Timeout);
                Answer::Failed(format!("no response within {:?}", self.request_timeout))
            }
        }
    }

    fn build_request(&self, path_and_query: &PathAndQuery) -> Request<Empty<Bytes>> {
        let mut request = Request::new(Empty::<Bytes>::new());
        *request.uri_mut() = match &self.forward_to {
            None => Uri::from(path_and_query.clone()),
            // The same target, in absolute form: `http://host:port/path?query`.
            Some(origin) => {
                let mut parts = origin.clone().into_parts();
                parts.path_and_query = Some(path_and_query.clone());
                Uri::from_parts(parts).unwrap_or_else(|_| Uri::from(path_and_query.clone()))
            }
        };
        let headers = request.headers_mut();
        headers.insert(header::HOST, self.host.clone());
        headers.insert(header::USER_AGENT, self.user_agent.clone());
        if let Route::Forward {
            auth: Some(auth), ..
        } = &self.route
        {
            headers.insert(header::PROXY_AUTHORIZATION, auth.clone());
        }
        request
    }

    /// The HTTP/2 request: `:scheme` https, `:authority` what the Host header would be, and
    /// `:path` the same bytes as the HTTP/1.1 request target.
    fn build_h2_request(&self, path_and_query: &PathAndQuery) -> Request<Empty<Bytes>> {
        let mut request = Request::new(Empty::<Bytes>::new());
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTPS);
        parts.authority =
            http::uri::Authority::from_maybe_shared(Bytes::copy_from_slice(self.host.as_bytes()))
                .ok();
        parts.path_and_query = Some(path_and_query.clone());
        *request.uri_mut() =
            Uri::from_parts(parts).unwrap_or_else(|_| Uri::from(path_and_query.clone()));
        request
            .headers_mut()
            .insert(header::USER_AGENT, self.user_agent.clone());
        request
    }

    /// Why a connection could not be opened: TLS, the proxy (when there is one: the
    /// connection is to it), or the connection itself; a proxy's 407 is a configuration
    /// error, not worth retrying.
    fn connect_failed(&self, error: &(dyn std::error::Error + 'static)) -> (RequestError, Answer) {
        let reason = exit::one_line(error);
        let kind = if tls::refused(error) {
            RequestError::Tls
        } else if self.route.proxy().is_some() {
            RequestError::Proxy
        } else {
            RequestError::Connect
        };
        if kind == RequestError::Proxy && reason.contains("proxy authorization required") {
            return (kind, proxy_auth_refused());
        }
        (kind, Answer::Failed(reason))
    }

    /// The status, or why there was no answer.
    async fn request(
        &self,
        path_and_query: &PathAndQuery,
    ) -> Result<Answer, (RequestError, Answer)> {
        if self.http != HttpVersion::Http1
            && (self.http == HttpVersion::Http2 || self.chose_other.get().is_none())
            && let Some(answer) = self.request_h2(path_and_query).await?
        {
            return Ok(answer);
        }
        let failed = |kind: RequestError, error: &(dyn std::error::Error + 'static)| {
            (kind, Answer::Failed(exit::one_line(error)))
        };
        let mut request = self.build_request(path_and_query);
        let (response, mut connection) = loop {
            let (mut connection, reused) = match self.checkout().await {
                Ok(checked_out) => checked_out,
                Err(e) => return Err(self.connect_failed(e.as_ref())),
            };
            match connection.sender.try_send_request(request).await {
                Ok(response) => break (response, connection),
                // A kept-alive connection the server closed before our request went out:
                // that request was never sent, so it goes on a new connection.
                Err(mut e) if reused && e.message().is_some() => {
                    request = e
                        .take_message()
                        .unwrap_or_else(|| self.build_request(path_and_query));
                }
                Err(e) => return Err(failed(RequestError::Io, e.error())),
            }
        };
        if response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED
            && self.forward_to.is_some()
        {
            return Err((RequestError::Proxy, proxy_auth_refused()));
        }
        let (answer, body_read) = read_answer(response).await;
        if body_read {
            connection.idle_since = Instant::now();
            self.checkin(connection);
        }
        Ok(answer)
    }

    /// The request as an HTTP/2 stream; `None` when the endpoint chose HTTP/1.1 under
    /// `--http auto` (it then goes, as every later one, over HTTP/1.1).
    async fn request_h2(
        &self,
        path_and_query: &PathAndQuery,
    ) -> Result<Option<Answer>, (RequestError, Answer)> {
        let mut resends = 0;
        loop {
            // Opening a connection is rare and its future large: boxed, so that it does not
            // swell (and get copied with) every request's future.
            let slot = match self.h2.slot(|| Box::pin(self.open_h2())).await {
                Ok(slot) => slot,
                Err(H2Refusal::Connect(e)) => return Err(self.connect_failed(e.as_ref())),
                Err(H2Refusal::NotOffered(chosen)) if self.http == HttpVersion::Auto => {
                    tracing::debug!(endpoint = %self.endpoint, "no HTTP/2 offered ({chosen:?}): HTTP/1.1");
                    return Ok(None);
                }
                Err(H2Refusal::NotOffered(chosen)) => {
                    let chosen = chosen.map_or("none".into(), |name| format!("`{name}`"));
                    let reason = format!(
                        "--http 2: {} does not offer HTTP/2 (ALPN `h2`; it chose {chosen}); use --http auto or 1.1",
                        self.endpoint
                    );
                    return Err((RequestError::Tls, Answer::Refused(reason)));
                }
            };
            let request = self.build_h2_request(path_and_query);
            match slot.sender().send_request(request).await {
                Ok(response) => return Ok(Some(read_answer(response).await.0)),
                Err(e) if resends < MAX_UNPROCESSED_RESENDS => {
                    let Some(why) = http2::unprocessed(&e) else {
                        return Err((RequestError::Io, Answer::Failed(exit::one_line(&e))));
                    };
                    // Not processed by the server: sent again, not a failure.
                    tracing::debug!("not processed, sent again: {e}");
                    if why == http2::Unprocessed::ConnectionGone {
                        slot.retire();
                    }
                    resends += 1;
                }
                Err(e) => return Err((RequestError::Io, Answer::Failed(exit::one_line(&e)))),
            }
        }
    }

    /// A new HTTP/2 connection, if TLS negotiated `h2`; under `--http auto` a connection on
    /// which the endpoint chose HTTP/1.1 is kept for HTTP/1.1 requests.
    async fn open_h2(&self) -> Result<http2::Opened, H2Refusal> {
        // Known since a request that waited for this one to open its connection.
        if let Some(chosen) = self.chose_other.get() {
            return Err(H2Refusal::NotOffered(chosen.clone()));
        }
        let stream = self
            .connector
            .connect(self.origin.clone())
            .await
            .map_err(H2Refusal::Connect)?;
        let chosen = route::negotiated(&stream).map(|name| String::from_utf8_lossy(name).into());
        if chosen.as_deref() != Some("h2") {
            if self.http == HttpVersion::Auto
                && let Ok(connection) = self.handshake_http1(stream).await
            {
                self.checkin(connection);
            }
            let _ = self.chose_other.set(chosen.clone());
            return Err(H2Refusal::NotOffered(chosen));
        }
        let opened = http2::handshake(stream, &self.connections)
            .await
            .map_err(|e| H2Refusal::Connect(e.into()))?;
        tracing::debug!(endpoint = %self.endpoint, "HTTP/2 connection opened");
        Ok(opened)
    }

    /// An idle connection that can still carry a request, or a new one; and whether it was
    /// reused.
    async fn checkout(&self) -> Result<(Connection, bool), BoxError> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .pop();
            let Some(connection) = idle else { break };
            // Closed by the server (`Connection: close`, a reset) or idle too long: dropped.
            if connection.idle_since.elapsed() < IDLE_TIMEOUT && connection.sender.is_ready() {
                return Ok((connection, true));
            }
        }
        // Boxed, as for HTTP/2: rare, and large.
        let opened = Box::pin(async {
            let stream = self.connector.connect(self.origin.clone()).await?;
            self.handshake_http1(stream).await
        });
        Ok((opened.await?, false))
    }

    async fn handshake_http1(&self, stream: route::Stream) -> Result<Connection, BoxError> {
        let (sender, driver) = http1::handshake(stream).await?;
        // The connection's I/O runs in its own task on the same (single) thread; it ends when
        // the server closes the connection or the sender is dropped.
        self.connections.spawn(async move {
            if let Err(e) = driver.await {
                tracing::debug!("connection closed: {e}");
            }
        });
        Ok(Connection {
            sender,
            idle_since: Instant::now(),
        })
    }

    fn checkin(&self, connection: Connection) {
        if connection.sender.is_closed() {
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < self.max_idle {
            idle.push(connection);
        }
    }
}

/// The status and `Retry-After` of a response, and whether its body was read to its end
/// (which lets an HTTP/1.1 connection carry the next request; an over-long body just costs
/// that connection).
async fn read_answer(response: http::Response<hyper::body::Incoming>) -> (Answer, bool) {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body_read = Limited::new(response.into_body(), MAX_RESPONSE_BODY)
        .collect()
        .await
        .is_ok();
    (
        Answer::Status {
            status,
            retry_after,
        },
        body_read,
    )
}
