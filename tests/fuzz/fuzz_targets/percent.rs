//! Percent-encoding and strict percent-decoding of the message (`wire::encode_target`,
//! `wire::percent_decode_strict`, `wire::decode_query`).
//!
//! The input is used twice, as a message and as a query read from a log. Properties:
//! - as a message, it round-trips: its encoding holds only `encodeURIComponent`'s unescaped
//!   bytes and `%XX` with upper-case hex, is `encoded_len` long, and both decoders give the
//!   message back byte for byte;
//! - as a query, the strict decoder accepts it exactly when every `%` starts an escape of two
//!   hex digits, and then agrees with a reference decoder written here; it never keeps what a
//!   previous call left in its output buffer; the lenient reader's message is the part before
//!   the first `&`, decoded.

#![no_main]

use drifter_rsyslog::wire::{decode_query, encode_target, encoded_len, percent_decode_strict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    as_message(data);
    as_query(data);
});

fn is_unescaped(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte)
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).map(|digit| digit as u8)
}

/// The reference: `None` where a `%` is not followed by two hex digits.
fn reference_decode(query: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(query.len());
    let mut i = 0;
    while i < query.len() {
        if query[i] == b'%' {
            let high = hex_value(*query.get(i + 1)?)?;
            let low = hex_value(*query.get(i + 2)?)?;
            out.push(high * 16 + low);
            i += 3;
        } else {
            out.push(query[i]);
            i += 1;
        }
    }
    Some(out)
}

fn as_message(message: &[u8]) {
    let target = encode_target("/", message);
    let encoded = target
        .strip_prefix("/?")
        .expect("the target starts with the path and `?`")
        .as_bytes();
    assert_eq!(encoded.len(), encoded_len(message));
    let mut i = 0;
    while i < encoded.len() {
        if encoded[i] == b'%' {
            let escape = &encoded[i + 1..i + 3];
            let upper_hex = |b: &u8| b.is_ascii_digit() || (b'A'..=b'F').contains(b);
            assert!(
                escape.iter().all(upper_hex),
                "{}",
                String::from_utf8_lossy(escape)
            );
            // Only bytes that must be escaped are.
            let byte = reference_decode(&encoded[i..i + 3]).expect("two hex digits");
            assert!(
                !is_unescaped(byte[0]),
                "%{}",
                String::from_utf8_lossy(escape)
            );
            i += 3;
        } else {
            assert!(
                is_unescaped(encoded[i]),
                "byte {:#04x} left as is",
                encoded[i]
            );
            i += 1;
        }
    }
    let mut decoded = b"left over".to_vec();
    assert!(percent_decode_strict(encoded, &mut decoded));
    assert_eq!(decoded, message);
    assert_eq!(decode_query(encoded), message);
}

fn as_query(query: &[u8]) {
    let mut decoded = b"left over".to_vec();
    let accepted = percent_decode_strict(query, &mut decoded);
    let reference = reference_decode(query);
    assert_eq!(accepted, reference.is_some());
    if let Some(reference) = reference {
        assert_eq!(decoded, reference);
    }
    // The lenient reader: the part before the first `&`, a broken escape kept as it is.
    let message = query.split(|&b| b == b'&').next().unwrap_or_default();
    let lenient = decode_query(query);
    if let Some(strict) = reference_decode(message) {
        assert_eq!(lenient, strict);
    }
    assert!(lenient.len() <= message.len());
}
