//! One HTTP request per attempt: the shared client, status classification and retry delays.
//!
//! The client is hyper's pooled keep-alive client rather than reqwest because reqwest carries
//! the URL as a WHATWG `Url`, which rewrites `'` to `%27` in query strings of http(s) URLs; the
//! compatible wire format leaves `'` unescaped, exactly as `encodeURIComponent` does.

use std::error::Error as StdError;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Where requests go: scheme, host and port, and the path the message is appended to.
#[derive(Debug, Clone)]
pub struct Endpoint {
    scheme: Scheme,
    authority: Authority,
    path: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("`{0}` is not a valid URL")]
    Invalid(String),
    #[error("`{0}`: the scheme must be http or https")]
    Scheme(String),
    #[error("`{0}`: the URL has no host")]
    NoHost(String),
    #[error("`{0}`: the URL must not have a query string or fragment (the message is the query)")]
    Query(String),
    #[error("`{0}`: credentials in the URL are not supported")]
    Credentials(String),
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if url.contains('#') {
            return Err(EndpointError::Query(url.into()));
        }
        let uri: Uri = url
            .parse()
            .map_err(|_| EndpointError::Invalid(url.into()))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            Some("https") => Scheme::HTTPS,
            Some(_) => return Err(EndpointError::Scheme(url.into())),
            None => return Err(EndpointError::Invalid(url.into())),
        };
        let authority = uri
            .authority()
            .filter(|a| !a.host().is_empty())
            .cloned()
            .ok_or_else(|| EndpointError::NoHost(url.into()))?;
        if authority.as_str().contains('@') {
            return Err(EndpointError::Credentials(url.into()));
        }
        if uri.query().is_some() {
            return Err(EndpointError::Query(url.into()));
        }
        let path = match uri.path() {
            "" => "/".to_string(),
            path => path.to_string(),
        };
        Ok(Endpoint {
            scheme,
            authority,
            path,
        })
    }
}

impl Endpoint {
    /// The path every request target starts with (`/` when the URL has none).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    fn uri(&self, target: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(PathAndQuery::try_from(target)?)
            .build()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

/// The response statuses that count as delivered, e.g. `503,200-299`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<RangeInclusive<u16>>);

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a status list such as 503,200-299 (codes 100 to 599)")]
pub struct StatusSetError(String);

impl FromStr for StatusSet {
    type Err = StatusSetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || StatusSetError(text.to_string());
        let parse_code = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(error)
        };
        let mut ranges = Vec::new();
        for item in text.split(',') {
            let range = match item.split_once('-') {
                Some((low, high)) => parse_code(low)?..=parse_code(high)?,
                None => {
                    let code = parse_code(item)?;
                    code..=code
                }
            };
            if range.is_empty() {
                return Err(error());
            }
            ranges.push(range);
        }
        Ok(StatusSet(ranges))
    }
}

impl StatusSet {
    pub fn contains(&self, status: StatusCode) -> bool {
        self.0.iter().any(|r| r.contains(&status.as_u16()))
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The load balancer answered with an accepted status: the request is in its access log.
    Accepted,
    /// Worth trying again later: connection errors, timeouts, 408, 429, other 5xx.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Trying again would get the same answer: other statuses (4xx, redirects).
    Permanent { reason: String },
}

/// Sorts a response status the way Vector's HTTP sinks do: accepted, retriable or permanent.
pub fn classify(status: StatusCode, accept: &StatusSet, retry_after: Option<Duration>) -> Attempt {
    if accept.contains(status) {
        return Attempt::Accepted;
    }
    let reason = format!("HTTP {status}");
    let retriable = status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error();
    if retriable {
        Attempt::Retry {
            reason,
            after: retry_after,
        }
    } else {
        Attempt::Permanent { reason }
    }
}

/// Capped exponential backoff with full jitter: the n-th retry waits a uniformly random time
/// between zero and `min(max, initial * 2^n)`, so many senders recovering from one outage
/// spread out instead of arriving together.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(1u32 << retry.min(31))
            .min(self.max);
        let jittered = ceiling.mul_f64(fastrand::f64());
        match retry_after {
            Some(hint) => jittered.max(hint.min(self.max)),
            None => jittered,
        }
    }
}

pub struct ClientOptions<'a> {
    pub concurrency: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub ca_cert: Option<&'a Path>,
    pub insecure: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read CA certificate file {path}: {source}")]
    CaFile {
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificate found in CA certificate file {0}")]
    CaEmpty(String),
    #[error("CA certificate in {path} was rejected: {source}")]
    CaRejected { path: String, source: rustls::Error },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Sends requests to one endpoint over a shared keep-alive pool and classifies the answers.
pub struct Deliverer {
    endpoint: Endpoint,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    accept: StatusSet,
    request_timeout: Duration,
    user_agent: HeaderValue,
    healthy: AtomicBool,
}

/// Responses are only read so the connection can be reused; their content is never used.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

impl Deliverer {
    pub fn new(
        endpoint: Endpoint,
        accept: StatusSet,
        options: &ClientOptions<'_>,
    ) -> Result<Self, TlsSetupError> {
        let tls = tls_config(options.ca_cert, options.insecure)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(options.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            // Below the 60 s idle timeout of ELB and ALB, so we close idle connections before
            // the load balancer does and never race it on a connection it is closing.
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(options.concurrency)
            .build(connector);
        let user_agent =
            HeaderValue::from_static(concat!("drifter-rsyslog/", env!("CARGO_PKG_VERSION")));
        Ok(Deliverer {
            endpoint,
            client,
            accept,
            request_timeout: options.request_timeout,
            user_agent,
            healthy: AtomicBool::new(true),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends `GET <target>` once, within the request timeout.
    pub async fn attempt(&self, target: &str) -> Attempt {
        let attempt = match tokio::time::timeout(self.request_timeout, self.request(target)).await {
            Ok(attempt) => attempt,
            Err(_) => Attempt::Retry {
                reason: format!("no response within {:?}", self.request_timeout),
                after: None,
            },
        };
        self.track_health(&attempt);
        attempt
    }

    async fn request(&self, target: &str) -> Attempt {
        let uri = match self.endpoint.uri(target) {
            Ok(uri) => uri,
            Err(e) => {
                return Attempt::Permanent {
                    reason: format!("request target rejected: {e}"),
                };
            }
        };
        let mut request = Request::new(Empty::<Bytes>::new());
        *request.uri_mut() = uri;
        request
            .headers_mut()
            .insert(header::USER_AGENT, self.user_agent.clone());
        let response = match self.client.request(request).await {
            Ok(response) => response,
            Err(e) => {
                return Attempt::Retry {
                    reason: error_chain(&e),
                    after: None,
                };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Reading the body to its end returns the connection to the pool; an over-long body
        // just costs that connection.
        let _ = Limited::new(response.into_body(), MAX_RESPONSE_BODY)
            .collect()
            .await;
        classify(status, &self.accept, retry_after)
    }

    /// `--probe`: sends `GET <path>` (no query string, so it is never decoded as a message)
    /// until the load balancer answers with an accepted status. Connection errors and
    /// retriable statuses are retried with `backoff` for as long as the caller waits; a
    /// permanent answer (404, 403, a redirect) means the URL is wrong and is returned at once.
    pub async fn probe(&self, backoff: Backoff) -> Result<(), String> {
        let mut retry = 0;
        loop {
            match self.attempt(self.endpoint.path()).await {
                Attempt::Accepted => return Ok(()),
                Attempt::Permanent { reason } => {
                    return Err(format!("probe of {} failed: {reason}", self.endpoint));
                }
                Attempt::Retry { reason, after } => {
                    if retry == 0 {
                        tracing::warn!(endpoint = %self.endpoint, "probe failed, retrying until the load balancer answers: {reason}");
                    }
                    tokio::time::sleep(backoff.delay(retry, after)).await;
                    retry = retry.saturating_add(1);
                }
            }
        }
    }

    /// Logs when delivery starts failing and when it recovers, not on every failed request:
    /// during an outage every worker fails at once.
    fn track_health(&self, attempt: &Attempt) {
        match attempt {
            Attempt::Accepted => {
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!(endpoint = %self.endpoint, "delivery recovered");
                }
            }
            Attempt::Retry { reason, .. } => {
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(endpoint = %self.endpoint, "delivery failing, retrying with backoff: {reason}");
                }
            }
            Attempt::Permanent { .. } => {}
        }
    }
}

fn tls_config(
    ca_cert: Option<&Path>,
    insecure: bool,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_cert {
        let shown = path.display().to_string();
        let mut found = false;
        for cert in CertificateDer::pem_file_iter(path).map_err(|source| TlsSetupError::CaFile {
            path: shown.clone(),
            source,
        })? {
            let cert = cert.map_err(|source| TlsSetupError::CaFile {
                path: shown.clone(),
                source,
            })?;
            roots
                .add(cert)
                .map_err(|source| TlsSetupError::CaRejected {
                    path: shown.clone(),
                    source,
                })?;
            found = true;
        }
        if !found {
            return Err(TlsSetupError::CaEmpty(shown));
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if insecure {
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)));
    }
    Ok(config)
}

/// `--insecure`: skips certificate checks but still checks handshake signatures.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An error and its causes on one line: hyper's own messages are terse ("client error
/// (Connect)") and the useful part ("Connection refused") is in the sources.
pub fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e: Endpoint = "http://elb.example.com".parse().expect("valid");
        assert_eq!(e.path(), "/");
        let e: Endpoint = "https://elb.example.com:8443/app1".parse().expect("valid");
        assert_eq!(e.path(), "/app1");
        assert!(e.is_https());
        for bad in [
            "ftp://x/",
            "elb.example.com",
            "http:///",
            "http://x/?a=b",
            "http://x/#f",
            "http://u:p@x/",
            "not a url",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn status_sets() {
        let set: StatusSet = "503,200-299".parse().expect("valid");
        assert!(set.contains(StatusCode::SERVICE_UNAVAILABLE));
        assert!(set.contains(StatusCode::NO_CONTENT));
        assert!(!set.contains(StatusCode::BAD_GATEWAY));
        for bad in ["", "5o3", "299-200", "600", "1-2-3", "200,"] {
            assert!(
                bad.parse::<StatusSet>().is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn classification() {
        let accept: StatusSet = "503".parse().expect("valid");
        let class = |code: u16| {
            classify(
                StatusCode::from_u16(code).expect("valid code"),
                &accept,
                None,
            )
        };
        assert_eq!(class(503), Attempt::Accepted);
        for code in [408, 429, 500, 502, 504] {
            assert!(matches!(class(code), Attempt::Retry { .. }), "{code}");
        }
        for code in [200, 301, 400, 403, 404, 414] {
            assert!(matches!(class(code), Attempt::Permanent { .. }), "{code}");
        }
    }

    #[test]
    fn backoff_is_capped_and_honours_retry_after() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for retry in 0..64 {
            let ceiling = Duration::from_millis(100 << retry.min(5)).min(Duration::from_secs(2));
            assert!(backoff.delay(retry, None) <= ceiling);
        }
        assert!(backoff.delay(0, Some(Duration::from_secs(1))) >= Duration::from_secs(1));
        assert!(backoff.delay(0, Some(Duration::from_secs(600))) <= Duration::from_secs(2));
    }
}
