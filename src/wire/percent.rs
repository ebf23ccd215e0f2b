//! Percent-decoding of the message: lenient as an original-format reader would be, and strict
//! as `decode` is.

use percent_encoding::percent_decode;

use crate::hex;

/// The message of a query string as a reader of the original format sees it: the part before
/// the first `&`, percent-decoded.
pub fn decode_query(query: &[u8]) -> Vec<u8> {
    let message = query.split(|&b| b == b'&').next().unwrap_or_default();
    percent_decode(message).collect()
}

/// Percent-decodes `query` into `out`, refusing a `%` not followed by two hex digits rather
/// than passing it through: such a query was not written by drifter.
pub fn percent_decode_strict(query: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut rest = query;
    while let Some(at) = memchr::memchr(b'%', rest) {
        out.extend_from_slice(&rest[..at]);
        let digit = |i: usize| rest.get(at + i).and_then(|&c| hex::value(c));
        let (Some(high), Some(low)) = (digit(1), digit(2)) else {
            return false;
        };
        out.push(high << 4 | low);
        rest = &rest[at + 3..];
    }
    out.extend_from_slice(rest);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_percent_decoding() {
        let mut out = Vec::new();
        assert!(percent_decode_strict(b"a%41%c3%A9z", &mut out));
        assert_eq!(out, "aAéz".as_bytes());
        for bad in [&b"%"[..], b"%4", b"%zz", b"a%4g"] {
            assert!(!percent_decode_strict(bad, &mut out), "{bad:?}");
        }
    }
}
