//! Wire format v1: the query string parser (`wire::parse_query`: message, extensions, MAC)
//! against the encoder `send` uses (`wire::TargetFormat`: escaping, cutting, signing).
//!
//! The input is used twice. Properties:
//! - as a query read from a log: what the parser accepts is only what the encoder writes. The
//!   message is the part before the first `&` and holds no `=`; the extensions are exactly
//!   the ones the encoder writes for the fields found, in its order; the MAC, if any, ends the
//!   query as `&m=` and 32 lower-case hex digits, and covers everything before it;
//! - as a message to send (through `arbitrary`: text, path, id, sequence number, key, budget,
//!   log format): every request target stays within the budget, is written into an access-log
//!   line as the stand-in writes it, parsed back, and gives back its fields; signed, it
//!   verifies with the key and with no other, and not once a byte of what it covers changes;
//!   the pieces, percent-decoded and joined, are the message byte for byte, and a reader of
//!   the original format finds the first piece first.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use drifter_rsyslog::access_log::{Balancer, Format, Request, parse_entry, split_url, write_entry};
use drifter_rsyslog::wire::{
    Fields, Fragment, MAX_ID_BYTES, Sequence, Signer, TargetFormat, decode_query, encoded_len,
    parse_query, percent_decode_strict,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    as_query(data);
    if let Ok(sent) = Sent::arbitrary_take_rest(Unstructured::new(data)) {
        sent_and_read_back(&sent);
    }
});

/// The extensions the encoder writes for `fields`, MAC excluded.
fn written_extensions(fields: &Fields<'_>) -> String {
    let target = TargetFormat::new("", usize::MAX, None).target(b"", fields);
    target.strip_prefix('?').unwrap_or(&target).to_string()
}

fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn as_query(query: &[u8]) {
    let Ok(parsed) = parse_query(query) else {
        return;
    };
    assert!(query.starts_with(parsed.message));
    assert!(!parsed.message.contains(&b'&') && !parsed.message.contains(&b'='));
    let canonical = [
        parsed.message,
        written_extensions(&parsed.fields).as_bytes(),
    ]
    .concat();
    assert_eq!(
        parsed.signed,
        &canonical[..],
        "only what the encoder writes"
    );
    match parsed.mac {
        Some(mac) => {
            let signed = [parsed.signed, b"&m=", lower_hex(&mac).as_bytes()].concat();
            assert_eq!(query, &signed[..]);
        }
        None => assert_eq!(parsed.signed, query),
    }
    if let Some(fragment) = parsed.fields.fragment {
        assert!(1 <= fragment.index && fragment.index <= fragment.count);
    }
}

#[derive(Debug, Arbitrary)]
struct Sent {
    message: Vec<u8>,
    path: Vec<u8>,
    id: Vec<u8>,
    sequence: Option<(Vec<u8>, u64)>,
    key: Option<Vec<u8>>,
    budget: u16,
    alb: bool,
    /// Which byte of a signed query to change, and how.
    tamper: (u16, u8),
}

/// `bytes` mapped into `alphabet`, at most `max` of them.
fn from_alphabet(bytes: &[u8], alphabet: &[u8], max: usize) -> String {
    bytes
        .iter()
        .take(max)
        .map(|&b| char::from(alphabet[usize::from(b) % alphabet.len()]))
        .collect()
}

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
const PATH_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_./";

fn sent_and_read_back(sent: &Sent) {
    // send never sends an empty message.
    if sent.message.is_empty() {
        return;
    }
    let path = format!("/{}", from_alphabet(&sent.path, PATH_ALPHABET, 32));
    let id = from_alphabet(&sent.id, ID_ALPHABET, MAX_ID_BYTES);
    // A sender name holds no dot: the number follows the last one.
    let sender = sent.sequence.as_ref().map(|(name, number)| {
        let name = from_alphabet(name, &ID_ALPHABET[..ID_ALPHABET.len() - 1], MAX_ID_BYTES);
        (name, *number)
    });
    let sequence = match &sender {
        Some((name, number)) if !name.is_empty() => Some(Sequence {
            sender: name,
            number: *number,
        }),
        _ => None,
    };
    let signer = sent.key.as_deref().map(Signer::new);
    let budget = usize::from(sent.budget);
    let format = TargetFormat::new(&path, budget, signer.clone());
    let mut fields = Fields {
        id: (!id.is_empty()).then_some(id.as_str()),
        sequence,
        fragment: None,
    };
    let encoded = encoded_len(&sent.message);
    let targets: Vec<(String, Option<Fragment>)> = if format.fits(encoded, &fields) {
        vec![(format.target(&sent.message, &fields), None)]
    } else {
        // Fragments carry an id; send makes one up when the line has none.
        fields.id = fields.id.or(Some("made-up-1"));
        let Ok(split) = format.split(&sent.message, encoded, &fields) else {
            return;
        };
        let pieces: Vec<&[u8]> = split.pieces(&sent.message).collect();
        assert_eq!(pieces.len() as u64, split.count);
        assert!(pieces.iter().all(|piece| !piece.is_empty()));
        let fragment = |i: usize| Fragment {
            index: i as u64 + 1,
            count: split.count,
        };
        pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| {
                let fields = Fields {
                    fragment: Some(fragment(i)),
                    ..fields
                };
                (format.target(piece, &fields), fields.fragment)
            })
            .collect()
    };
    let mut joined = Vec::new();
    for (i, (target, fragment)) in targets.iter().enumerate() {
        assert!(target.len() <= budget, "{} > {budget}", target.len());
        let query = read_back(target, sent.alb);
        assert_eq!(split_url(&query.url).0, path.as_bytes());
        let parsed = parse_query(&query.query).expect("a target the encoder wrote parses");
        let expected = Fields {
            fragment: *fragment,
            ..fields
        };
        assert_eq!(parsed.fields, expected);
        match (&signer, parsed.mac) {
            (Some(signer), Some(mac)) => {
                assert!(signer.verify(parsed.signed, &mac));
                // HMAC pads a short key with zeros: another key differs in a non-zero byte.
                let mut other_key = sent.key.clone().unwrap_or_default();
                other_key.push(1);
                assert!(!Signer::new(&other_key).verify(parsed.signed, &mac));
                let (at, change) = sent.tamper;
                let mut tampered = parsed.signed.to_vec();
                let at = usize::from(at) % tampered.len();
                tampered[at] ^= change.max(1);
                assert!(!signer.verify(&tampered, &mac));
            }
            (None, None) => assert_eq!(parsed.signed, &query.query[..]),
            (signer, mac) => panic!("signer {:?}, MAC {mac:?}", signer.is_some()),
        }
        let mut piece = Vec::new();
        assert!(percent_decode_strict(parsed.message, &mut piece));
        if i == 0 {
            assert!(sent.message.starts_with(&decode_query(&query.query)));
        }
        joined.extend_from_slice(&piece);
    }
    assert_eq!(joined, sent.message);
}

struct ReadBack {
    url: Vec<u8>,
    query: Vec<u8>,
}

/// The target as the stand-in logs it and `decode` reads it back: the URL and its query.
fn read_back(target: &str, alb: bool) -> ReadBack {
    let url = format!("http://elb.example.com:80{target}").into_bytes();
    let balancer = Balancer {
        name: "fuzz".into(),
        id: "0123456789abcdef".into(),
        account: "123456789012".into(),
        region: "us-east-1".into(),
        node_ip: "127.0.0.1".into(),
    };
    let request = Request {
        time: time::OffsetDateTime::UNIX_EPOCH,
        client: ([127, 0, 0, 1], 40000).into(),
        method: "GET".into(),
        url: url.clone(),
        version: "HTTP/1.1".into(),
        user_agent: Some(b"drifter-rsyslog/fuzz".to_vec()),
        status: 503,
        received_bytes: 0,
        sent_bytes: 0,
        tls: None,
        unreadable: false,
    };
    let format = if alb { Format::Alb } else { Format::Classic };
    let mut line = Vec::new();
    write_entry(format, &balancer, &request, &mut line);
    let line = line.strip_suffix(b"\n").expect("an entry ends with its LF");
    let entry = parse_entry(line).expect("a written entry parses");
    let raw = entry.raw_url().into_owned();
    assert_eq!(raw, url);
    let query = split_url(&raw).1.expect("a target has a query").to_vec();
    ReadBack { url: raw, query }
}
