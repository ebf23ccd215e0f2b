//! Message ⇄ request target: wire format v1.
//!
//! A request target is `<path>?<query>`, and the query is the percent-encoded message followed
//! by optional extensions, each `&<key>=<value>`, always in this order:
//!
//! | key | value | present when |
//! |---|---|---|
//! | `i` | message id: 1–64 bytes of `A-Z a-z 0-9 - _ .` | `--ids`, and on every fragment |
//! | `q` | `<sender>.<number>`: the sending process and its message counter | `--sequence` |
//! | `f` | `<index>.<count>`: this fragment's place, from 1 | the message is split |
//! | `m` | 32 lower-case hex digits: HMAC-SHA256 truncated to 128 bits | `--sign-key` |
//!
//! The message is encoded as JavaScript's `encodeURIComponent` does: every byte outside
//! `A-Z a-z 0-9 - _ . ! ~ * ' ( )` becomes `%XX` with upper-case hex, bytes that are not UTF-8
//! included. So the encoded message never contains `&` or `=`: a reader that knows only the
//! original format takes the part before the first `&` and still finds the message, and with no
//! extension the target is byte-identical to the original drifter-rsyslog's.
//!
//! ```
//! use drifter_rsyslog::wire::{Fields, TargetFormat};
//!
//! let format = TargetFormat::new("/", 8192, None);
//! assert_eq!(
//!     format.target(b"disk full: /var (98%)", &Fields::default()),
//!     "/?disk%20full%3A%20%2Fvar%20(98%25)"
//! );
//! ```
//!
//! A message whose target would exceed the budget (`--max-url-bytes`) is split into fragments,
//! each its own request within the budget. The split falls between bytes of the message, never
//! inside a `%XX` escape (and not necessarily between UTF-8 characters: the decoder joins bytes).
//! Every fragment carries the message's id (one is made up when `--ids` is off), its sequence
//! number if any, and `f`; `m` signs each fragment on its own:
//!
//! ```
//! use drifter_rsyslog::wire::{Fields, Fragment, Sequence, Signer, TargetFormat};
//!
//! let signer = Signer::new(b"correct horse battery staple");
//! let format = TargetFormat::new("/app", 48, Some(signer));
//! let fields = Fields {
//!     id: Some("6F1C"),
//!     sequence: Some(Sequence { sender: "a1b2", number: 7 }),
//!     fragment: Some(Fragment { index: 1, count: 2 }),
//! };
//! assert_eq!(
//!     format.target(b"hello ", &fields),
//!     "/app?hello%20&i=6F1C&q=a1b2.7&f=1.2&m=b1b6561b78b14ba3de5081d403a4030a"
//! );
//! ```
//!
//! The MAC covers the query up to (not including) `&m=`: the encoded piece of the message, the
//! id, the sequence number and the fragment position. The path is not covered, so the same key
//! verifies requests sent to any path.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};
use sha2::Sha256;

/// Bytes `encodeURIComponent` escapes: everything except alphanumerics and `-_.!~*'()`.
const ENCODE_URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Longest message id.
pub const MAX_ID_BYTES: usize = 64;
/// Bytes of the HMAC kept in `m`; written as twice as many hex digits.
pub const MAC_BYTES: usize = 16;
/// An escaped byte: the least a fragment must be able to carry.
const LARGEST_ENCODED_BYTE: usize = 3;

/// Encoded length of every byte value: 1 for the bytes left as they are, 3 for `%XX`. A table,
/// because lengths are counted for every byte of every message.
const ENCODED_BYTE_LEN: [u8; 256] = {
    let mut table = [3u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        let unescaped = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            );
        if unescaped {
            table[byte] = 1;
        }
        byte += 1;
    }
    table
};

fn encoded_byte_len(byte: u8) -> usize {
    usize::from(ENCODED_BYTE_LEN[usize::from(byte)])
}

/// Length of `message` once percent-encoded, without encoding it.
pub fn encoded_len(message: &[u8]) -> usize {
    message.iter().map(|&b| encoded_byte_len(b)).sum()
}

/// Length of the target `encode_target` builds.
pub fn target_len(path: &str, message: &[u8]) -> usize {
    path.len() + 1 + encoded_len(message)
}

/// The original format: `<path>?<encoded message>`, no extensions.
pub fn encode_target(path: &str, message: &[u8]) -> String {
    TargetFormat::new(path, usize::MAX, None).target(message, &Fields::default())
}

/// The message of a query string as a reader of the original format sees it: the part before
/// the first `&`, percent-decoded.
pub fn decode_query(query: &[u8]) -> Vec<u8> {
    let message = query.split(|&b| b == b'&').next().unwrap_or_default();
    percent_decode(message).collect()
}

/// Whether `id` can be a message id: it is then never escaped and never holds `&` or `=`.
pub fn is_valid_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The sending process (random per process) and its message counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequence<'a> {
    pub sender: &'a str,
    pub number: u64,
}

/// A fragment's place in its message, `index` from 1 to `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    pub index: u64,
    pub count: u64,
}

/// What a request carries besides (a piece of) its message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    pub id: Option<&'a str>,
    pub sequence: Option<Sequence<'a>>,
    pub fragment: Option<Fragment>,
}

fn decimal_len(mut n: u64) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

impl Fields<'_> {
    /// Length of the extensions this adds to a query, the MAC excluded.
    fn len(&self) -> usize {
        let id = self.id.map_or(0, |id| "&i=".len() + id.len());
        let sequence = self.sequence.map_or(0, |s| {
            "&q=".len() + s.sender.len() + 1 + decimal_len(s.number)
        });
        let fragment = self.fragment.map_or(0, |f| {
            "&f=".len() + decimal_len(f.index) + 1 + decimal_len(f.count)
        });
        id + sequence + fragment
    }

    fn write(&self, out: &mut String) {
        // Writing to a String cannot fail.
        if let Some(id) = self.id {
            let _ = write!(out, "&i={id}");
        }
        if let Some(Sequence { sender, number }) = self.sequence {
            let _ = write!(out, "&q={sender}.{number}");
        }
        if let Some(Fragment { index, count }) = self.fragment {
            let _ = write!(out, "&f={index}.{count}");
        }
    }
}

/// HMAC-SHA256 with the shared key, truncated to [`MAC_BYTES`].
#[derive(Clone)]
pub struct Signer(Hmac<Sha256>);

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

const MAC_LEN: usize = "&m=".len() + 2 * MAC_BYTES;

impl Signer {
    pub fn new(key: &[u8]) -> Self {
        // HMAC takes keys of any length (a long one is hashed first), so this cannot fail.
        match <Hmac<Sha256> as Mac>::new_from_slice(key) {
            Ok(mac) => Signer(mac),
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        }
    }

    fn tag(&self, signed: &[u8]) -> [u8; MAC_BYTES] {
        let mut mac = self.0.clone();
        mac.update(signed);
        let full = mac.finalize().into_bytes();
        let mut tag = [0; MAC_BYTES];
        tag.copy_from_slice(&full[..MAC_BYTES]);
        tag
    }

    /// Whether `tag` is the MAC of `signed`, compared in constant time.
    pub fn verify(&self, signed: &[u8], tag: &[u8; MAC_BYTES]) -> bool {
        let mut mac = self.0.clone();
        mac.update(signed);
        mac.verify_truncated_left(tag).is_ok()
    }
}

/// Appends `bytes` as lower-case hex digits.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

fn parse_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut bytes = [0; N];
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(bytes)
}

/// The message is too long for the budget even in fragments: the budget leaves no room for
/// one escaped byte next to the extensions.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "--max-url-bytes {budget} leaves no room for the message: the path and extensions of a fragment take up to {overhead} bytes (raise it, or lower --max-line-bytes)"
)]
pub struct BudgetError {
    pub budget: usize,
    pub overhead: usize,
}

/// How a message too long for one request is cut: `count` pieces, each at most `capacity`
/// bytes once encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub count: u64,
    capacity: usize,
}

impl Split {
    /// The pieces, in order; the same cut every time.
    pub fn pieces<'t>(&self, text: &'t [u8]) -> Pieces<'t> {
        Pieces {
            rest: text,
            capacity: self.capacity,
        }
    }
}

/// Greedy cut of a message into pieces that each encode to at most `capacity` bytes.
pub struct Pieces<'t> {
    rest: &'t [u8],
    capacity: usize,
}

impl<'t> Pieces<'t> {
    /// The whole message as one piece: the target of a message that fits.
    pub fn whole(text: &'t [u8]) -> Self {
        Pieces {
            rest: text,
            capacity: usize::MAX,
        }
    }
}

impl<'t> Iterator for Pieces<'t> {
    type Item = &'t [u8];

    fn next(&mut self) -> Option<&'t [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let mut used = 0;
        let end = self
            .rest
            .iter()
            .position(|&b| {
                used = usize::saturating_add(used, encoded_byte_len(b));
                used > self.capacity
            })
            .unwrap_or(self.rest.len());
        let (piece, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(piece)
    }
}

/// Builds request targets for one endpoint path within one budget, signing them if a key is
/// set.
#[derive(Debug, Clone)]
pub struct TargetFormat {
    path: String,
    max_target: usize,
    signer: Option<Signer>,
}

impl TargetFormat {
    pub fn new(path: &str, max_target: usize, signer: Option<Signer>) -> Self {
        TargetFormat {
            path: path.to_string(),
            max_target,
            signer,
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn is_signed(&self) -> bool {
        self.signer.is_some()
    }

    /// Everything in a target but the message: path, `?`, extensions and MAC.
    fn overhead(&self, fields: &Fields<'_>) -> usize {
        let mac = if self.signer.is_some() { MAC_LEN } else { 0 };
        self.path.len() + 1 + fields.len() + mac
    }

    /// Length of the single target for `message` with `fields`.
    pub fn target_len(&self, message: &[u8], fields: &Fields<'_>) -> usize {
        self.overhead(fields) + encoded_len(message)
    }

    /// Whether a message of `encoded_len` bytes once encoded goes in one request.
    pub fn fits(&self, encoded_len: usize, fields: &Fields<'_>) -> bool {
        self.overhead(fields) + encoded_len <= self.max_target
    }

    /// Checks that a message of `max_message` bytes can be sent in fragments with fields as
    /// long as `longest` (the fragment field is added here).
    pub fn check_budget(&self, max_message: u64, longest: &Fields<'_>) -> Result<(), BudgetError> {
        let worst = Fields {
            fragment: Some(Fragment {
                index: max_message,
                count: max_message,
            }),
            ..*longest
        };
        let overhead = self.overhead(&worst);
        if self.max_target < overhead + LARGEST_ENCODED_BYTE {
            return Err(BudgetError {
                budget: self.max_target,
                overhead,
            });
        }
        Ok(())
    }

    /// Cuts `message`, `encoded_len` bytes once encoded, into fragments that each fit with
    /// `fields` (whose own `fragment` is ignored). The count is found by trying one more digit
    /// for it until it fits.
    pub fn split(
        &self,
        message: &[u8],
        encoded_len: usize,
        fields: &Fields<'_>,
    ) -> Result<Split, BudgetError> {
        // Start from the fewest fragments the encoded length allows, so the message is usually
        // counted once.
        let capacity_estimate = self.max_target.saturating_sub(self.overhead(fields)).max(1);
        let fewest = encoded_len.div_ceil(capacity_estimate) as u64;
        let mut digits_guess: u64 = 9;
        while digits_guess < fewest {
            digits_guess = digits_guess.saturating_mul(10).saturating_add(9);
        }
        loop {
            let widest = Fields {
                fragment: Some(Fragment {
                    index: digits_guess,
                    count: digits_guess,
                }),
                ..*fields
            };
            let overhead = self.overhead(&widest);
            let capacity = self
                .max_target
                .checked_sub(overhead)
                .filter(|&capacity| capacity >= LARGEST_ENCODED_BYTE)
                .ok_or(BudgetError {
                    budget: self.max_target,
                    overhead,
                })?;
            let mut split = Split { count: 0, capacity };
            split.count = split.pieces(message).count() as u64;
            if split.count <= digits_guess || digits_guess == u64::MAX {
                return Ok(split);
            }
            digits_guess = digits_guess.saturating_mul(10).saturating_add(9);
        }
    }

    /// `<path>?<encoded message>` and the extensions; the MAC last if signing.
    pub fn target(&self, message: &[u8], fields: &Fields<'_>) -> String {
        let mut target = String::with_capacity(self.target_len(message, fields));
        target.push_str(&self.path);
        target.push('?');
        let query_start = target.len();
        target.extend(percent_encode(message, ENCODE_URI_COMPONENT));
        fields.write(&mut target);
        if let Some(signer) = &self.signer {
            let tag = signer.tag(&target.as_bytes()[query_start..]);
            target.push_str("&m=");
            push_hex(&mut target, &tag);
        }
        target
    }
}

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
                parsed.mac = Some(parse_hex::<MAC_BYTES>(value).ok_or_else(invalid)?);
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

    #[test]
    fn matches_encode_uri_component() {
        // Expected values are what node's encodeURIComponent returns for the same strings.
        let cases: &[(&str, &str)] = &[
            ("hello world", "hello%20world"),
            ("a&b=c?d#e%f+g/h;i", "a%26b%3Dc%3Fd%23e%25f%2Bg%2Fh%3Bi"),
            ("-_.!~*'()", "-_.!~*'()"),
            ("\"quoted\" \\ back", "%22quoted%22%20%5C%20back"),
            ("tab\there", "tab%09here"),
            ("é☃😀", "%C3%A9%E2%98%83%F0%9F%98%80"),
            ("<>[]{}|^`$,:@", "%3C%3E%5B%5D%7B%7D%7C%5E%60%24%2C%3A%40"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                encode_target("/", input.as_bytes()),
                format!("/?{expected}")
            );
        }
    }

    #[test]
    fn encodes_bytes_that_are_not_utf8() {
        assert_eq!(encode_target("/p", b"\xff\x00\x80"), "/p?%FF%00%80");
    }

    #[test]
    fn length_is_computed_exactly() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(target_len("/x", &all), encode_target("/x", &all).len());
        let format = TargetFormat::new("/x", usize::MAX, Some(Signer::new(b"k")));
        let fields = Fields {
            id: Some("abc"),
            sequence: Some(Sequence {
                sender: "ff00",
                number: 12345,
            }),
            fragment: Some(Fragment {
                index: 3,
                count: 10,
            }),
        };
        assert_eq!(
            format.target_len(&all, &fields),
            format.target(&all, &fields).len()
        );
    }

    #[test]
    fn round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let target = encode_target("/", &all);
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
        assert!(!query.contains('&') && !query.contains('='));
        assert_eq!(decode_query(query.as_bytes()), all);
    }

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

    #[test]
    fn splits_within_the_budget_without_cutting_an_escape() {
        let message: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let format = TargetFormat::new("/log", 200, Some(Signer::new(b"k")));
        let fields = Fields {
            id: Some("some-id"),
            ..Fields::default()
        };
        let encoded = encoded_len(&message);
        assert!(!format.fits(encoded, &fields));
        let split = format.split(&message, encoded, &fields).expect("splits");
        let mut joined = Vec::new();
        let mut count = 0;
        for (i, piece) in split.pieces(&message).enumerate() {
            let fields = Fields {
                fragment: Some(Fragment {
                    index: i as u64 + 1,
                    count: split.count,
                }),
                ..fields
            };
            let target = format.target(piece, &fields);
            assert!(target.len() <= 200, "{} bytes: {target}", target.len());
            let parsed = parse_query(query_of(&target)).expect("parses");
            joined.extend(percent_decode(parsed.message));
            count += 1;
        }
        assert_eq!(count, split.count);
        assert!(count >= 10, "two-digit counts are exercised");
        assert_eq!(joined, message);
    }

    #[test]
    fn refuses_a_budget_without_room() {
        let format = TargetFormat::new("/log", 40, Some(Signer::new(b"k")));
        assert!(format.split(b"x", 1, &Fields::default()).is_err());
        assert!(format.check_budget(1 << 24, &Fields::default()).is_err());
        let roomy = TargetFormat::new("/log", 8192, Some(Signer::new(b"k")));
        let longest = Fields {
            id: Some(&"x".repeat(MAX_ID_BYTES)),
            sequence: Some(Sequence {
                sender: "0123456789ab",
                number: u64::MAX,
            }),
            fragment: None,
        };
        assert_eq!(roomy.check_budget(1 << 24, &longest), Ok(()));
    }
}
