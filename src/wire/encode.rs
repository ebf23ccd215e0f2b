//! The message as a request target: `encodeURIComponent`'s escaping, exact lengths without
//! encoding, the cut into fragments, and the target with its extensions and MAC.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};

use super::Fragment;
use super::fields::Fields;
use super::mac::{MAC_LEN, Signer};
use crate::hex;

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
            hex::push(&mut target, &tag);
        }
        target
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fields::MAX_ID_BYTES;
    use crate::wire::{Sequence, decode_query, parse_query};
    use percent_encoding::percent_decode;

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
