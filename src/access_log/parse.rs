//! Entries read back: the fields `decode` needs, found by position, borrowed from the line.

use super::Format;
use crate::hex;

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
                text.get(i + 2).and_then(|&c| hex::value(c)),
                text.get(i + 3).and_then(|&c| hex::value(c)),
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

/// `scheme://host:port/path?query` (or just `/path?query`) → path and query.
pub fn split_url(url: &[u8]) -> (&[u8], Option<&[u8]>) {
    let after_scheme = match memchr::memmem::find(url, b"://") {
        Some(at) => &url[at + 3..],
        None => url,
    };
    let target = match memchr::memchr(b'/', after_scheme) {
        Some(at) => &after_scheme[at..],
        None => &after_scheme[after_scheme.len()..],
    };
    match memchr::memchr(b'?', target) {
        Some(at) => (&target[..at], Some(&target[at + 1..])),
        None => (target, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
