//! One HTTP request per attempt over a shared keep-alive pool: the endpoint, the request, and
//! its answer as an [`Attempt`] (classified by [`retry::classify`](super::retry::classify)).
//!
//! The client is hyper's pooled keep-alive client rather than reqwest because reqwest carries
//! the URL as a WHATWG `Url`, which rewrites `'` to `%27` in query strings of http(s) URLs; the
//! compatible wire format leaves `'` unescaped, exactly as `encodeURIComponent` does.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::retry::{Attempt, classify};
use super::tls::{self, TlsSetupError};
use crate::exit;

/// Where requests go: scheme, host and port, and the path the message is appended to.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    scheme: Scheme,
    authority: Authority,
    path: String,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum EndpointError {
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
    pub(super) fn path(&self) -> &str {
        &self.path
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

pub(super) struct ClientOptions<'a> {
    pub concurrency: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub ca_cert: Option<&'a Path>,
    pub insecure: bool,
}

/// Sends requests to one endpoint over a shared keep-alive pool and classifies the answers.
pub(super) struct Client {
    endpoint: Endpoint,
    pool: HyperClient<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    accept: StatusSet,
    request_timeout: Duration,
    user_agent: HeaderValue,
}

/// Responses are only read so the connection can be reused; their content is never used.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

impl Client {
    pub(super) fn new(
        endpoint: Endpoint,
        accept: StatusSet,
        options: &ClientOptions<'_>,
    ) -> Result<Self, TlsSetupError> {
        let tls = tls::client_config(options.ca_cert, options.insecure)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(options.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let pool = HyperClient::builder(TokioExecutor::new())
            // Below the 60 s idle timeout of ELB and ALB, so we close idle connections before
            // the load balancer does and never race it on a connection it is closing.
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(options.concurrency)
            .build(connector);
        let user_agent =
            HeaderValue::from_static(concat!("drifter-rsyslog/", env!("CARGO_PKG_VERSION")));
        Ok(Client {
            endpoint,
            pool,
            accept,
            request_timeout: options.request_timeout,
            user_agent,
        })
    }

    pub(super) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends `GET <target>` once, within the request timeout.
    pub(super) async fn attempt(&self, target: &str) -> Attempt {
        match tokio::time::timeout(self.request_timeout, self.request(target)).await {
            Ok(attempt) => attempt,
            Err(_) => Attempt::Retry {
                reason: format!("no response within {:?}", self.request_timeout),
                after: None,
            },
        }
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
        let response = match self.pool.request(request).await {
            Ok(response) => response,
            Err(e) => {
                return Attempt::Retry {
                    reason: exit::one_line(&e),
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
        assert_eq!(
            e.to_string(),
            "https://elb.example.com:8443/app1",
            "https kept"
        );
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
}
