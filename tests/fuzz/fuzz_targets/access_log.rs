//! The access-log line parser, Classic and ALB (`access_log::parse_entry`, `raw_url`,
//! `split_url`), against the writer the stand-in uses (`access_log::write_entry`).
//!
//! The input is used twice. Properties:
//! - as a line read from a log (the seeds are the documented examples): parsing never panics,
//!   and what it finds is taken from the line, by position: time, load balancer, client,
//!   status, method and URL are slices of it holding no space; ALB's user agent holds no
//!   quote; the path `split_url` finds is empty or starts with `/` and holds no `?`;
//! - as a request (through `arbitrary`): the entry written for it in either format parses
//!   back to the same time, load balancer, client, status, method, URL and user agent, byte
//!   for byte. The URL holds no space (no load balancer logs one: a space ends the request's
//!   URL) and, in Classic, which writes it raw, no LF.

#![no_main]

use std::net::{IpAddr, SocketAddr};

use arbitrary::{Arbitrary, Unstructured};
use drifter_rsyslog::access_log::{
    Balancer, Format, Request, Tls, parse_entry, split_url, timestamp, write_entry,
};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

fuzz_target!(|data: &[u8]| {
    as_line(data);
    if let Ok(request) = Written::arbitrary_take_rest(Unstructured::new(data)) {
        written_and_read_back(&request);
    }
});

/// Whether `part` lies within `line` (the parser borrows, never copies).
fn within(line: &[u8], part: &[u8]) -> bool {
    let start = line.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    at >= start && at + part.len() <= start + line.len()
}

fn as_line(line: &[u8]) {
    let Ok(entry) = parse_entry(line) else {
        return;
    };
    for field in [
        entry.time,
        entry.balancer,
        entry.client,
        entry.status,
        entry.method,
        entry.url,
    ] {
        assert!(within(line, field));
        assert!(!field.contains(&b' '));
    }
    if let Some(agent) = entry.user_agent {
        assert!(within(line, agent));
        if entry.format == Format::Alb {
            assert!(!agent.contains(&b'"'));
        }
    }
    let url = entry.raw_url();
    assert!(url.len() <= entry.url.len(), "unescaping never lengthens");
    let (path, query) = split_url(&url);
    assert!(path.is_empty() || path.starts_with(b"/"));
    assert!(!path.contains(&b'?'));
    if let Some(query) = query {
        assert!(url.ends_with(query), "the query is the rest of the URL");
    }
}

#[derive(Debug, Arbitrary)]
enum Ip {
    V4([u8; 4]),
    V6([u16; 8]),
}

#[derive(Debug, Arbitrary)]
enum Method {
    Get,
    Post,
    Head,
}

#[derive(Debug, Arbitrary)]
struct Written {
    alb: bool,
    name: String,
    seconds: u32,
    micros: u32,
    ip: Ip,
    port: u16,
    method: Method,
    url: Vec<u8>,
    http2: bool,
    user_agent: Option<Vec<u8>>,
    status: u16,
    received_bytes: u64,
    sent_bytes: u64,
    tls: Option<Option<String>>,
    unreadable: bool,
}

fn written_and_read_back(written: &Written) {
    let format = if written.alb {
        Format::Alb
    } else {
        Format::Classic
    };
    // Load-balancer names are letters, digits and hyphens.
    let name: String = written
        .name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let balancer = Balancer {
        name,
        id: "50dc6c495c0c9188".into(),
        account: "123456789012".into(),
        region: "us-east-2".into(),
        node_ip: "10.0.0.1".into(),
    };
    let url: Vec<u8> = written
        .url
        .iter()
        .copied()
        .filter(|&b| b != b' ' && (written.alb || b != b'\n'))
        .collect();
    let user_agent = written.user_agent.as_ref().map(|agent| {
        let kept = |&b: &u8| written.alb || b != b'\n';
        agent.iter().copied().filter(kept).collect::<Vec<u8>>()
    });
    let nanos = i128::from(written.seconds) * 1_000_000_000
        + i128::from(written.micros % 1_000_000) * 1_000;
    let Ok(time) = OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
        return;
    };
    let ip = match written.ip {
        Ip::V4(octets) => IpAddr::from(octets),
        Ip::V6(segments) => IpAddr::from(segments),
    };
    let method = match written.method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Head => "HEAD",
    };
    // Server names are host names: no space, no quote.
    let tls = written.tls.as_ref().map(|server_name| Tls {
        cipher: "ECDHE-RSA-AES128-GCM-SHA256".into(),
        protocol: "TLSv1.2".into(),
        server_name: server_name.as_ref().map(|name| {
            name.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                .collect()
        }),
    });
    let request = Request {
        time,
        client: SocketAddr::new(ip, written.port),
        method: method.into(),
        url,
        version: if written.http2 {
            "HTTP/2.0"
        } else {
            "HTTP/1.1"
        }
        .into(),
        user_agent,
        status: written.status,
        received_bytes: written.received_bytes,
        sent_bytes: written.sent_bytes,
        tls,
        unreadable: written.unreadable,
    };
    let mut out = Vec::new();
    write_entry(format, &balancer, &request, &mut out);
    let line = out.strip_suffix(b"\n").expect("an entry ends with its LF");
    assert!(!line.contains(&b'\n'), "one entry, one line");
    let entry = parse_entry(line).expect("a written entry parses");
    assert_eq!(entry.format, format);
    assert_eq!(entry.time, timestamp(time).as_bytes());
    let expected_balancer = match format {
        Format::Classic => balancer.name.clone(),
        Format::Alb => format!("app/{}/{}", balancer.name, balancer.id),
    };
    assert_eq!(entry.balancer, expected_balancer.as_bytes());
    assert_eq!(entry.client, request.client.to_string().as_bytes());
    assert_eq!(entry.status, request.status.to_string().as_bytes());
    let (expected_method, expected_url) = if request.unreadable {
        (&b"-"[..], &b"-"[..])
    } else {
        (request.method.as_bytes(), &request.url[..])
    };
    assert_eq!(entry.method, expected_method);
    assert_eq!(entry.raw_url().as_ref(), expected_url);
    let agent = request.user_agent.as_deref().unwrap_or(b"-");
    assert_eq!(entry.raw_user_agent().as_deref(), Some(agent));
}
