//! Load-balancer access-log entries, both ways: written by the stand-in exactly as AWS documents
//! them ("Access logs for your Classic Load Balancer" / "... Application Load Balancer"), and
//! read back by `decode`.
//!
//! Classic: 15 space-separated fields (12 in old logs), the request and user agent quoted but
//! not escaped, so a URL can hold raw quotes. ALB: a type word first, the documented fields in
//! order (29, then 30 with `conn_trace_id`, more may come), quoted fields escaped as `\xHH`.
//! The request field is `METHOD scheme://host:port/path?query HTTP/x.y` either way; neither the
//! method, the URL nor the version contains a space, which is how the reader finds the URL by
//! position instead of by scanning for a closing quote.

mod parse;
mod write;

use std::net::SocketAddr;

use time::OffsetDateTime;

pub use parse::{Entry, ParseError, parse_entry, split_url, unescape_alb};
pub use write::{timestamp, write_entry};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Classic Load Balancer: plain `.log` files.
    Classic,
    /// Application Load Balancer: gzip-compressed `.log.gz` files.
    Alb,
}

/// Which load balancer wrote the entry: the names in its entries and its S3 keys.
#[derive(Debug, Clone)]
pub struct Balancer {
    pub name: String,
    /// The ALB's resource id (16 hex digits).
    pub id: String,
    pub account: String,
    pub region: String,
    pub node_ip: String,
}

/// TLS parameters of an HTTPS request, as the load balancer logs them.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cipher: String,
    pub protocol: String,
    pub server_name: Option<String>,
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub time: OffsetDateTime,
    pub client: SocketAddr,
    pub method: String,
    /// `scheme://host:port/path?query`, the path and query exactly as sent.
    pub url: Vec<u8>,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub version: String,
    pub user_agent: Option<Vec<u8>>,
    pub status: u16,
    pub received_bytes: u64,
    pub sent_bytes: u64,
    pub tls: Option<Tls>,
    /// Rejected before it could be parsed or routed (an over-long request line): logged with
    /// the request field `- - - `, as the load balancers do for requests they could not read.
    pub unreadable: bool,
}
