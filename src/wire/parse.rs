//! A query string taken apart, strictly: what `decode` accepts is only what `send` writes.

use super::fields::{Fields, Fragment, Sequence, is_valid_id};
use super::mac::MAC_BYTES;
use crate::hex;

/// A query string taken apart; the message is still percent-encoded.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedQuery<'a> {
    pub message: &'a [u8],
    pub fields: Fields<'a>,
    /// The bytes the MAC covers, and the MAC if there is one.
    pub signed: &'a [u8],
    pub mac: Option<[u8; MAC_BYTES]>,
}

/// Why a query string is not one drifter wrote.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("the message holds `=`")]
    EqualsInMessage,
    #[error("extension `{0}` is unknown")]
    UnknownExtension(String),
    #[error("extension `{0}` is repeated or out of order")]
    OutOfOrder(String),
    #[error("extension `{0}` has an invalid value")]
    InvalidValue(String),
}

const EXTENSION_ORDER: [&[u8]; 4] = [b"i", b"q", b"f", b"m"];

/// Takes a query string apart into message, extensions and MAC. Strict: an unknown, repeated
/// or misplaced extension, or a value drifter would not write, is an error.
pub fn parse_query(query: &[u8]) -> Result<ParsedQuery<'_>, WireError> {
    let mut parts = query.split(|&b| b == b'&');
    let message = parts.next().unwrap_or_default();
    if message.contains(&b'=') {
        return Err(WireError::EqualsInMessage);
    }
    let mut parsed = ParsedQuery {
        message,
        fields: Fields::default(),
        signed: query,
        mac: None,
    };
    let mut offset = message.len();
    let mut next_rank = 0;
    for part in parts {
        let start = offset;
        offset += 1 + part.len();
        let (key, value) = match memchr::memchr(b'=', part) {
            Some(at) => (&part[..at], &part[at + 1..]),
            None => (part, &b""[..]),
        };
        let name = || String::from_utf8_lossy(key).into_owned();
        let rank = EXTENSION_ORDER
            .iter()
            .position(|&known| known == key)
            .ok_or_else(|| WireError::UnknownExtension(name()))?;
        if rank < next_rank {
            return Err(WireError::OutOfOrder(name()));
        }
        next_rank = rank + 1;
        let invalid = || WireError::InvalidValue(name());
        match key {
            b"i" => parsed.fields.id = Some(parse_id(value).ok_or_else(invalid)?),
            b"q" => {
                let (sender, number) = parse_pair(value).ok_or_else(invalid)?;
                let sender = parse_id(sender).filter(|s| !s.contains('.'));
                parsed.fields.sequence = Some(Sequence {
                    sender: sender.ok_or_else(invalid)?,
                    number: parse_decimal(number).ok_or_else(invalid)?,
                });
            }
            b"f" => {
                let (index, count) = parse_pair(value).ok_or_else(invalid)?;
                let index = parse_decimal(index).ok_or_else(invalid)?;
                let count = parse_decimal(count).ok_or_else(invalid)?;
                if index == 0 || index > count {
                    return Err(invalid());
                }
                parsed.fields.fragment = Some(Fragment { index, count });
            }
            _ => {
                parsed.mac = Some(hex::parse::<MAC_BYTES>(value).ok_or_else(invalid)?);
                parsed.signed = &query[..start];
            }
        }
    }
    Ok(parsed)
}

fn parse_id(value: &[u8]) -> Option<&str> {
    if !is_valid_id(value) {
        return None;
    }
    std::str::from_utf8(value).ok()
}

/// `a.b`, split at the last dot (a sender never holds one; an index never does).
fn parse_pair(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = memchr::memrchr(b'.', value)?;
    Some((&value[..at], &value[at + 1..]))
}

/// Digits drifter writes: no sign, no leading zero, fits in a u64.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Signer, TargetFormat};

    fn query_of(target: &str) -> &[u8] {
        target
            .split_once('?')
            .map_or(&b""[..], |(_, q)| q.as_bytes())
    }

    #[test]
    fn parses_what_it_writes() {
        let signer = Signer::new(b"secret");
        let format = TargetFormat::new("/", 8192, Some(signer.clone()));
        let fields = Fields {
            id: Some("ID-1.x"),
            sequence: Some(Sequence {
                sender: "0a1b",
                number: 0,
            }),
            fragment: Some(Fragment {
                index: 10,
                count: 10,
            }),
        };
        let target = format.target(b"a&b=c", &fields);
        let parsed = parse_query(query_of(&target)).expect("parses");
        assert_eq!(parsed.message, b"a%26b%3Dc");
        assert_eq!(parsed.fields, fields);
        let mac = parsed.mac.expect("signed");
        assert!(signer.verify(parsed.signed, &mac));
        assert!(!Signer::new(b"other").verify(parsed.signed, &mac));
    }

    #[test]
    fn rejects_what_it_would_not_write() {
        for query in [
            &b"a=b"[..],
            b"a&x=1",
            b"a&q=s.1&i=id",
            b"a&i=id&i=id",
            b"a&i=",
            b"a&i=has%20space",
            b"a&f=0.2",
            b"a&f=3.2",
            b"a&f=01.2",
            b"a&f=1",
            b"a&q=s.-1",
            b"a&q=s.t.1",
            b"a&m=00",
            b"a&m=0123456789ABCDEF0123456789ABCDEF",
            b"a&m=0123456789abcdef0123456789abcdef&i=x",
        ] {
            assert!(
                parse_query(query).is_err(),
                "{}",
                String::from_utf8_lossy(query)
            );
        }
        assert_eq!(
            parse_query(b"just%20text"),
            Ok(ParsedQuery {
                message: b"just%20text",
                fields: Fields::default(),
                signed: b"just%20text",
                mac: None,
            })
        );
    }
}
