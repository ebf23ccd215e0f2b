//! The configuration of where requests go: the endpoint URL and the statuses that mean
//! "delivered".

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, StatusCode, Uri};

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

    pub(super) fn scheme_is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    /// `scheme://authority/` to connect to, and the Host header: the port only when it is
    /// not the scheme's default, as hyper's pooled client writes it.
    pub(super) fn origin_and_host(&self) -> (Uri, HeaderValue) {
        let origin = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query("/")
            .build()
            .unwrap_or_default();
        let default_port = if self.scheme == Scheme::HTTPS {
            443
        } else {
            80
        };
        let host = match self.authority.port_u16() {
            Some(port) if port != default_port => format!("{}:{port}", self.authority.host()),
            _ => self.authority.host().to_string(),
        };
        // The authority parsed as part of a URI, so it is a valid header value.
        let host = HeaderValue::from_str(&host).unwrap_or_else(|_| HeaderValue::from_static(""));
        (origin, host)
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
