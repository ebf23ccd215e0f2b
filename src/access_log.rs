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

use std::fmt::Write as _;
use std::net::SocketAddr;

use time::OffsetDateTime;
use time::macros::format_description;

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

pub fn timestamp(time: OffsetDateTime) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    time.format(format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".into())
}

/// Appends one entry, with its LF, to `out`.
pub fn write_entry(format: Format, balancer: &Balancer, request: &Request, out: &mut Vec<u8>) {
    match format {
        Format::Classic => write_classic(balancer, request, out),
        Format::Alb => write_alb(balancer, request, out),
    }
    out.push(b'\n');
}

/// A Classic ELB with no registered instances: no backend, processing times -1, backend status
/// 0 and no bytes counted, e.g. `... client:port - -1 -1 -1 503 0 0 0 "GET http://h:80/?m HTTP/1.1"`.
fn write_classic(balancer: &Balancer, request: &Request, out: &mut Vec<u8>) {
    let head = format!(
        "{} {} {} - -1 -1 -1 {} 0 0 0 \"",
        timestamp(request.time),
        balancer.name,
        request.client,
        request.status
    );
    out.extend_from_slice(head.as_bytes());
    if request.unreadable {
        out.extend_from_slice(b"- - - ");
    } else {
        out.extend_from_slice(request.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&request.url);
        out.push(b' ');
        out.extend_from_slice(request.version.as_bytes());
    }
    out.extend_from_slice(b"\" \"");
    match &request.user_agent {
        Some(agent) => out.extend_from_slice(agent),
        None => out.push(b'-'),
    }
    out.push(b'"');
    match &request.tls {
        Some(tls) => {
            let tail = format!(" {} {}", tls.cipher, tls.protocol);
            out.extend_from_slice(tail.as_bytes());
        }
        None => out.extend_from_slice(b" - -"),
    }
}

/// An ALB with no healthy target (503, forward to an empty target group) or a fixed-response
/// rule (any other status): target `-`, processing times -1, target status `-`.
fn write_alb(balancer: &Balancer, request: &Request, out: &mut Vec<u8>) {
    let kind = match (&request.tls, request.version.as_str()) {
        (Some(_), "HTTP/2.0") => "h2",
        (Some(_), _) => "https",
        (None, _) => "http",
    };
    let mut text = format!(
        "{kind} {} app/{}/{} {} - -1 -1 -1 {} - {} {} \"",
        timestamp(request.time),
        balancer.name,
        balancer.id,
        request.client,
        request.status,
        request.received_bytes,
        request.sent_bytes,
    );
    if request.unreadable {
        text.push_str("- - - ");
    } else {
        text.push_str(&request.method);
        text.push(' ');
        escape_alb(&request.url, &mut text);
        text.push(' ');
        text.push_str(&request.version);
    }
    text.push_str("\" \"");
    match &request.user_agent {
        Some(agent) => escape_alb(agent, &mut text),
        None => text.push('-'),
    }
    text.push('"');
    let (cipher, protocol, domain) = match &request.tls {
        Some(tls) => (
            tls.cipher.as_str(),
            tls.protocol.as_str(),
            tls.server_name.as_deref().unwrap_or("-"),
        ),
        None => ("-", "-", "-"),
    };
    let (target_group, actions) = if request.status == 503 {
        (
            format!(
                "arn:aws:elasticloadbalancing:{}:{}:targetgroup/{}-targets/{}",
                balancer.region, balancer.account, balancer.name, balancer.id
            ),
            "forward",
        )
    } else {
        ("-".to_string(), "fixed-response")
    };
    let seconds = request.time.unix_timestamp();
    let _ = write!(
        text,
        " {cipher} {protocol} {target_group} \"Root=1-{seconds:08x}-{}\" \"{domain}\" \"-\" 0 {} \"{actions}\" \"-\" \"-\" \"-\" \"-\" \"-\" \"-\" TID_{}",
        random_hex(24),
        timestamp(request.time),
        random_hex(32),
    );
    out.extend_from_slice(text.as_bytes());
}

/// ALB writes `"`, `\`, control characters and every non-ASCII byte as `\xHH`.
fn escape_alb(bytes: &[u8], out: &mut String) {
    for &byte in bytes {
        if byte == b'"' || byte == b'\\' || !(0x20..0x7f).contains(&byte) {
            let _ = write!(out, "\\x{byte:02X}");
        } else {
            out.push(char::from(byte));
        }
    }
}

pub fn random_hex(digits: usize) -> String {
    (0..digits)
        .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
        .collect()
}

/// What `decode` needs from one access-log line; slices borrow the line.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub format: Format,
    pub time: &'a [u8],
    pub balancer: &'a [u8],
    pub client: &'a [u8],
    pub status: &'a [u8],
    pub method: &'a [u8],
    /// As logged: ALB's `\xHH` escapes are still in it.
    pub url: &'a [u8],
    pub user_agent: Option<&'a [u8]>,
}

impl Entry<'_> {
    /// The URL as the client sent it: ALB escapes undone, Classic taken as is.
    pub fn raw_url(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.format {
            Format::Alb => unescape_alb(self.url),
            Format::Classic => std::borrow::Cow::Borrowed(self.url),
        }
    }

    pub fn raw_user_agent(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        self.user_agent.map(|agent| match self.format {
            Format::Alb => unescape_alb(agent),
            Format::Classic => std::borrow::Cow::Borrowed(agent),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("too few fields")]
    TooFewFields,
    #[error("the request field is not quoted where expected")]
    Request,
    #[error("the user-agent field is not quoted")]
    UserAgent,
}

const ALB_TYPES: [&[u8]; 6] = [b"http", b"https", b"h2", b"grpcs", b"ws", b"wss"];

/// Parses one line (without its LF). A line is ALB if it starts with an ALB type word, else
/// Classic (which starts with its timestamp).
pub fn parse_entry(line: &[u8]) -> Result<Entry<'_>, ParseError> {
    let first_space = memchr::memchr(b' ', line).ok_or(ParseError::TooFewFields)?;
    if ALB_TYPES.contains(&&line[..first_space]) {
        parse_alb(&line[first_space + 1..])
    } else {
        parse_classic(line)
    }
}

/// Splits off `count` space-separated fields.
fn fields<const N: usize>(line: &[u8]) -> Result<([&[u8]; N], &[u8]), ParseError> {
    let mut out = [&line[..0]; N];
    let mut rest = line;
    for field in &mut out {
        let end = memchr::memchr(b' ', rest).ok_or(ParseError::TooFewFields)?;
        *field = &rest[..end];
        rest = &rest[end + 1..];
    }
    Ok((out, rest))
}

/// The request field's method and URL, and what follows its closing quote.
struct RequestField<'a> {
    method: &'a [u8],
    url: &'a [u8],
    after: &'a [u8],
}

/// `"METHOD URL VERSION"` at the start of `rest`. The URL ends at the space before the
/// version, so raw quotes in it are fine.
fn request_field(rest: &[u8]) -> Result<RequestField<'_>, ParseError> {
    let inner = rest.strip_prefix(b"\"").ok_or(ParseError::Request)?;
    let method_end = memchr::memchr(b' ', inner).ok_or(ParseError::Request)?;
    let method = &inner[..method_end];
    let after_method = &inner[method_end + 1..];
    let url_end = memchr::memchr(b' ', after_method).ok_or(ParseError::Request)?;
    let url = &after_method[..url_end];
    let after_url = &after_method[url_end + 1..];
    // The version has no quote in it; TCP entries (`"- - - "`) end with a space before it.
    let version_end = memchr::memchr(b'"', after_url).ok_or(ParseError::Request)?;
    Ok(RequestField {
        method,
        url,
        after: &after_url[version_end + 1..],
    })
}

/// The eleven fields both formats share (ALB's after its type word), then the request field;
/// returns the entry without its user agent, and what follows the request field.
fn shared_fields(format: Format, line: &[u8]) -> Result<(Entry<'_>, &[u8]), ParseError> {
    let (
        [
            time,
            balancer,
            client,
            _backend,
            _t1,
            _t2,
            _t3,
            status,
            _backend_status,
            _received,
            _sent,
        ],
        rest,
    ) = fields::<11>(line)?;
    let RequestField { method, url, after } = request_field(rest)?;
    let entry = Entry {
        format,
        time,
        balancer,
        client,
        status,
        method,
        url,
        user_agent: None,
    };
    Ok((entry, after))
}

fn parse_classic(line: &[u8]) -> Result<Entry<'_>, ParseError> {
    let (mut entry, after) = shared_fields(Format::Classic, line)?;
    // An empty rest is the 12-field format of old logs, which ends with the request.
    if !after.is_empty() {
        // `"agent" cipher protocol`: the agent is raw and may hold quotes and spaces, so take
        // the two last fields off the end.
        let after = after.strip_prefix(b" ").ok_or(ParseError::UserAgent)?;
        let mut tail = after.rsplitn(3, |&b| b == b' ');
        let (_protocol, _cipher) = (tail.next(), tail.next());
        let quoted = tail.next().ok_or(ParseError::TooFewFields)?;
        let agent = quoted
            .strip_prefix(b"\"")
            .and_then(|q| q.strip_suffix(b"\""))
            .ok_or(ParseError::UserAgent)?;
        entry.user_agent = Some(agent);
    }
    Ok(entry)
}

fn parse_alb(line: &[u8]) -> Result<Entry<'_>, ParseError> {
    let (mut entry, after) = shared_fields(Format::Alb, line)?;
    // ALB escapes quotes, so the agent ends at the next one; any fields after it are ignored.
    let agent = after.strip_prefix(b" \"").ok_or(ParseError::UserAgent)?;
    let end = memchr::memchr(b'"', agent).ok_or(ParseError::UserAgent)?;
    entry.user_agent = Some(&agent[..end]);
    Ok(entry)
}

/// Undoes ALB's `\xHH` escapes (other backslashes are kept as they are).
pub fn unescape_alb(text: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if memchr::memchr(b'\\', text).is_none() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'\\'
            && text.get(i + 1) == Some(&b'x')
            && let (Some(high), Some(low)) = (
                text.get(i + 2).and_then(|&c| hex_value(c)),
                text.get(i + 3).and_then(|&c| hex_value(c)),
            )
        {
            out.push(high << 4 | low);
            i += 4;
            continue;
        }
        out.push(text[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

pub fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balancer() -> Balancer {
        Balancer {
            name: "my-loadbalancer".into(),
            id: "50dc6c495c0c9188".into(),
            account: "123456789012".into(),
            region: "us-east-2".into(),
            node_ip: "10.0.0.1".into(),
        }
    }

    fn request(url: &[u8], tls: Option<Tls>) -> Request {
        Request {
            time: OffsetDateTime::from_unix_timestamp_nanos(1_431_560_383_945_958_000)
                .expect("valid time"),
            client: "192.168.131.39:2817".parse().expect("address"),
            method: "GET".into(),
            url: url.to_vec(),
            version: "HTTP/1.1".into(),
            user_agent: Some(b"drifter-rsyslog/0.1.0".to_vec()),
            status: 503,
            received_bytes: 120,
            sent_bytes: 170,
            tls,
            unreadable: false,
        }
    }

    #[test]
    fn classic_no_instance_entry_is_the_documented_shape() {
        let mut out = Vec::new();
        write_entry(
            Format::Classic,
            &balancer(),
            &request(b"http://elb.example.com:80/?a%20b", None),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).expect("ASCII"),
            "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 - -1 -1 -1 503 0 0 0 \"GET http://elb.example.com:80/?a%20b HTTP/1.1\" \"drifter-rsyslog/0.1.0\" - -\n"
        );
    }

    #[test]
    fn alb_entry_has_the_documented_fields_in_order() {
        let mut out = Vec::new();
        let tls = Tls {
            cipher: "ECDHE-RSA-AES128-GCM-SHA256".into(),
            protocol: "TLSv1.2".into(),
            server_name: Some("elb.example.com".into()),
        };
        let mut request = request(b"https://elb.example.com:443/?q\"\\\xc3\xa9", Some(tls));
        request.user_agent = Some(b"agent \"x\"".to_vec());
        write_entry(Format::Alb, &balancer(), &request, &mut out);
        let line = String::from_utf8(out).expect("ASCII");
        assert!(line.starts_with("https 2015-05-13T23:39:43.945958Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 - -1 -1 -1 503 - 120 170 \"GET https://elb.example.com:443/?q\\x22\\x5C\\xC3\\xA9 HTTP/1.1\" \"agent \\x22x\\x22\" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/"), "{line}");
        // Quoted fields hold no spaces here, so splitting on spaces counts fields.
        let quoted_spaces = 2 + 1; // request (2) and agent (1)
        assert_eq!(line.trim_end().split(' ').count(), 30 + quoted_spaces);
        assert!(line.contains(" \"elb.example.com\" \"-\" 0 2015-05-13T23:39:43.945958Z \"forward\" \"-\" \"-\" \"-\" \"-\" \"-\" \"-\" TID_"));
    }

    fn decoded_url(line: &str) -> Vec<u8> {
        let entry = parse_entry(line.as_bytes()).expect("parses");
        entry.raw_url().into_owned()
    }

    // Lines written by hand from the AWS documentation's syntax and examples.
    const CLASSIC_HTTP: &str = "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 0.000073 0.001048 0.000057 200 200 0 29 \"GET http://www.example.com:80/ HTTP/1.1\" \"curl/7.38.0\" - -";
    const CLASSIC_HTTPS: &str = "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 0.000086 0.001048 0.001337 200 200 0 57 \"GET https://www.example.com:443/?hello%20world HTTP/1.1\" \"curl/7.38.0\" DHE-RSA-AES128-SHA TLSv1.2";
    const CLASSIC_TCP: &str = "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 0.001069 0.000028 0.000041 - - 82 305 \"- - - \" \"-\" - -";
    const CLASSIC_NO_BACKEND: &str = "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 - -1 -1 -1 503 0 0 0 \"GET http://www.example.com:80/?a\"b%20c HTTP/1.1\" \"drifter-rsyslog/0.1.0\" - -";
    const CLASSIC_12_FIELDS: &str = "2014-02-15T23:39:43.945958Z my-test-loadbalancer 192.168.131.39:2817 10.0.0.1:80 0.000073 0.001048 0.000057 200 200 0 29 \"GET http://www.example.com:80/?x%3Dy HTTP/1.1\"";
    const CLASSIC_QUOTED_AGENT: &str = "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 - -1 -1 -1 503 0 0 0 \"GET http://h:80/?m HTTP/1.1\" \"Mozilla \"quoted\" agent\" - -";
    const ALB_HTTP_29: &str = "http 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 \"GET http://www.example.com:80/?msg HTTP/1.1\" \"curl/7.46.0\" - - arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 \"Root=1-58337262-36d228ad5d99923122bbe354\" \"-\" \"-\" 0 2018-07-02T22:22:48.364000Z \"forward\" \"-\" \"-\" \"10.0.0.1:80\" \"200\" \"-\" \"-\"";
    const ALB_H2_30: &str = "h2 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 10.0.1.252:48160 10.0.0.66:9000 0.000 0.002 0.000 200 200 5 257 \"GET https://10.0.2.105:773/?a\\x22b\\x5Cc\\xC3\\xA9 HTTP/2.0\" \"curl/7.46.0\" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 \"Root=1-58337327-72bd00b0343d75b906739c42\" \"-\" \"-\" 1 2018-07-02T22:22:48.364000Z \"redirect\" \"https://example.com:80/\" \"-\" \"10.0.0.66:9000\" \"200\" \"-\" \"-\" TID_1234abcd5678ef90";
    const ALB_NO_TARGET_MORE_FIELDS: &str = "https 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 192.168.131.39:2817 - -1 -1 -1 503 - 34 366 \"GET https://www.example.com:443/app1?x HTTP/1.1\" \"drifter-rsyslog/0.1.0\" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 - \"Root=1-58337262-36d228ad5d99923122bbe354\" \"www.example.com\" \"arn:aws:acm:us-east-2:123456789012:certificate/12345678-1234-1234-1234-123456789012\" 0 2018-07-02T22:22:48.364000Z \"forward\" \"-\" \"-\" \"-\" \"-\" \"-\" \"-\" TID_1234abcd5678ef90 future-field \"another\"";

    #[test]
    fn parses_classic_lines() {
        assert_eq!(decoded_url(CLASSIC_HTTP), b"http://www.example.com:80/");
        assert_eq!(
            decoded_url(CLASSIC_HTTPS),
            b"https://www.example.com:443/?hello%20world"
        );
        let tcp = parse_entry(CLASSIC_TCP.as_bytes()).expect("parses");
        assert_eq!((tcp.method, tcp.url), (&b"-"[..], &b"-"[..]));
        let raw_quote = parse_entry(CLASSIC_NO_BACKEND.as_bytes()).expect("parses");
        assert_eq!(raw_quote.url, b"http://www.example.com:80/?a\"b%20c");
        assert_eq!(raw_quote.status, b"503");
        assert_eq!(raw_quote.user_agent, Some(&b"drifter-rsyslog/0.1.0"[..]));
        let old = parse_entry(CLASSIC_12_FIELDS.as_bytes()).expect("parses");
        assert_eq!(old.url, b"http://www.example.com:80/?x%3Dy");
        assert_eq!(old.user_agent, None);
        let agent = parse_entry(CLASSIC_QUOTED_AGENT.as_bytes()).expect("parses");
        assert_eq!(agent.user_agent, Some(&b"Mozilla \"quoted\" agent"[..]));
        assert_eq!(agent.format, Format::Classic);
    }

    #[test]
    fn parses_alb_lines_of_29_30_and_more_fields() {
        let old = parse_entry(ALB_HTTP_29.as_bytes()).expect("parses");
        assert_eq!(old.format, Format::Alb);
        assert_eq!(old.url, b"http://www.example.com:80/?msg");
        assert_eq!(old.user_agent, Some(&b"curl/7.46.0"[..]));
        assert_eq!(
            decoded_url(ALB_H2_30),
            b"https://10.0.2.105:773/?a\"b\\c\xc3\xa9"
        );
        let more = parse_entry(ALB_NO_TARGET_MORE_FIELDS.as_bytes()).expect("parses");
        assert_eq!(more.status, b"503");
        assert_eq!(more.balancer, b"app/my-loadbalancer/50dc6c495c0c9188");
        assert_eq!(more.url, b"https://www.example.com:443/app1?x");
    }

    #[test]
    fn rejects_broken_lines() {
        for line in [
            "",
            "garbage",
            "http 2018-07-02T22:23:00.186641Z app/x/y 1.2.3.4:5 - -1 -1 -1 503 - 0 0 GET-without-quotes",
            "2015-05-13T23:39:43.945958Z lb 1.2.3.4:5 - -1 -1 -1 503 0 0 0 \"GET\"",
            "https 2018-07-02T22:23:00.186641Z app/x/y 1.2.3.4:5 - -1 -1 -1 503 - 0 0 \"GET https://h:443/?m HTTP/1.1\"",
        ] {
            assert!(parse_entry(line.as_bytes()).is_err(), "{line:?}");
        }
    }

    #[test]
    fn written_entries_parse_back() {
        for format in [Format::Classic, Format::Alb] {
            let url = b"http://h:80/p?%22%20\"x\\\xff".to_vec();
            let mut out = Vec::new();
            write_entry(format, &balancer(), &request(&url, None), &mut out);
            let line = out.strip_suffix(b"\n").expect("LF");
            let entry = parse_entry(line).expect("parses");
            assert_eq!(entry.raw_url().as_ref(), url.as_slice(), "{format:?}");
            assert_eq!(entry.user_agent, Some(&b"drifter-rsyslog/0.1.0"[..]));
        }
    }
}
