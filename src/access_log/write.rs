//! Entries written as the load balancers write them.

use std::fmt::Write as _;

use time::OffsetDateTime;
use time::macros::format_description;

use super::{Balancer, Format, Request};

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
        crate::hex::random(24),
        timestamp(request.time),
        crate::hex::random(32),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::{Tls, parse_entry};

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
