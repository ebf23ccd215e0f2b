//! Message ⇄ request target.
//!
//! The compatible format is the original drifter-rsyslog's: `<path>?<encodeURIComponent(line)>`.
//! Every byte outside `A-Z a-z 0-9 - _ . ! ~ * ' ( )` is percent-encoded with upper-case hex,
//! including bytes that are not UTF-8, so for a UTF-8 line the request target is byte-identical
//! to JavaScript's `encodeURIComponent`. The encoded message never contains `&` or `=`, which
//! leaves room for extensions after it in the query string.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};

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

fn is_unescaped(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte)
}

/// Length of `message` once percent-encoded, without encoding it.
pub fn encoded_len(message: &[u8]) -> usize {
    message
        .iter()
        .map(|&b| if is_unescaped(b) { 1 } else { 3 })
        .sum()
}

/// Length of the request target `encode_target` would build.
pub fn target_len(path: &str, message: &[u8]) -> usize {
    path.len() + 1 + encoded_len(message)
}

/// Builds `<path>?<encoded message>`.
pub fn encode_target(path: &str, message: &[u8]) -> String {
    let mut target = String::with_capacity(target_len(path, message));
    target.push_str(path);
    target.push('?');
    target.extend(percent_encode(message, ENCODE_URI_COMPONENT));
    target
}

/// The message carried by a compatible query string: the part before the first `&`,
/// percent-decoded.
pub fn decode_query(query: &[u8]) -> Vec<u8> {
    let message = query.split(|&b| b == b'&').next().unwrap_or_default();
    percent_decode(message).collect()
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
    }

    #[test]
    fn round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let target = encode_target("/", &all);
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
        assert!(!query.contains('&') && !query.contains('='));
        assert_eq!(decode_query(query.as_bytes()), all);
    }
}
