//! Egress proxies, as curl and reqwest read them: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and
//! `NO_PROXY` (lower case too; CIDRs and domain suffixes), through hyper-util's proxy matcher,
//! or `--proxy URL|none`.
//!
//! - https endpoints go through a CONNECT tunnel (hyper-util's `Tunnel`), and TLS runs inside
//!   it to the load balancer;
//! - http endpoints go through the proxy in forward mode (stock Squid allows CONNECT only to
//!   443): the request target is sent in absolute form, the rest of it unchanged.
//!
//! Credentials come from the proxy URL (`http://user:password@proxy:3128`).

use std::future::poll_fn;

use http::{HeaderValue, Uri};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

/// How requests reach the load balancer.
#[derive(Debug, Clone)]
pub(super) enum Route {
    Direct,
    /// https, through a CONNECT tunnel at `proxy`.
    Tunnel {
        proxy: Uri,
        auth: Option<HeaderValue>,
    },
    /// http, through the forward proxy at `proxy`.
    Forward {
        proxy: Uri,
        auth: Option<HeaderValue>,
    },
}

impl Route {
    /// The route to `endpoint` (its `scheme://authority/`): `--proxy` when given (`none`: no
    /// proxy), else the proxy environment.
    pub(super) fn to(endpoint: &Uri, flag: Option<&str>) -> anyhow::Result<Route> {
        let matcher = match flag {
            Some("none") => return Ok(Route::Direct),
            Some(url) => Matcher::builder().all(url.to_string()).build(),
            None => Matcher::from_env(),
        };
        let Some(intercept) = matcher.intercept(endpoint) else {
            if let Some(url) = flag {
                anyhow::bail!("--proxy `{url}` is not a valid proxy URL");
            }
            return Ok(Route::Direct);
        };
        let proxy = intercept.uri().clone();
        if proxy.scheme_str() != Some("http") {
            anyhow::bail!("proxy {proxy}: only http:// proxies are supported");
        }
        let auth = intercept.basic_auth().cloned();
        Ok(if endpoint.scheme_str() == Some("https") {
            Route::Tunnel { proxy, auth }
        } else {
            Route::Forward { proxy, auth }
        })
    }

    pub(super) fn proxy(&self) -> Option<&Uri> {
        match self {
            Route::Direct => None,
            Route::Tunnel { proxy, .. } | Route::Forward { proxy, .. } => Some(proxy),
        }
    }
}

pub(super) type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

/// The protocol TLS negotiated by ALPN on `stream`, if any (`h2`, `http/1.1`).
pub(super) fn negotiated(stream: &Stream) -> Option<&[u8]> {
    match stream {
        MaybeHttpsStream::Https(tls) => tls.inner().get_ref().1.alpn_protocol(),
        MaybeHttpsStream::Http(_) => None,
    }
}
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens connections along a route: TLS when the endpoint is https, inside the tunnel if
/// there is one.
#[derive(Clone)]
pub(super) enum Connector {
    /// Straight to the endpoint, or to a forward proxy.
    Direct(HttpsConnector<HttpConnector>),
    Tunnel(HttpsConnector<Tunnel<HttpConnector>>),
}

impl Connector {
    /// With `offer_h2`, TLS offers `h2` and `http/1.1` by ALPN; else it offers none (HTTP/1.1).
    pub(super) fn new(
        route: &Route,
        tls: rustls::ClientConfig,
        http: HttpConnector,
        offer_h2: bool,
    ) -> Self {
        let builder = || {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http()
                .enable_http1()
        };
        match route {
            Route::Tunnel { proxy, auth } => {
                let mut tunnel = Tunnel::new(proxy.clone(), http);
                if let Some(auth) = auth {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Connector::Tunnel(if offer_h2 {
                    builder().enable_http2().wrap_connector(tunnel)
                } else {
                    builder().wrap_connector(tunnel)
                })
            }
            Route::Direct | Route::Forward { .. } => Connector::Direct(if offer_h2 {
                builder().enable_http2().wrap_connector(http)
            } else {
                builder().wrap_connector(http)
            }),
        }
    }

    pub(super) async fn connect(&self, destination: Uri) -> Result<Stream, BoxError> {
        match self.clone() {
            Connector::Direct(mut connector) => {
                poll_fn(|cx| connector.poll_ready(cx)).await?;
                connector.call(destination).await
            }
            Connector::Tunnel(mut connector) => {
                poll_fn(|cx| connector.poll_ready(cx)).await?;
                connector.call(destination).await
            }
        }
    }
}
