//! The extensions a request carries after its message: id, sequence number, fragment.

use std::fmt::Write as _;

/// Longest message id.
pub const MAX_ID_BYTES: usize = 64;

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
    pub(super) fn len(&self) -> usize {
        let id = self.id.map_or(0, |id| "&i=".len() + id.len());
        let sequence = self.sequence.map_or(0, |s| {
            "&q=".len() + s.sender.len() + 1 + decimal_len(s.number)
        });
        let fragment = self.fragment.map_or(0, |f| {
            "&f=".len() + decimal_len(f.index) + 1 + decimal_len(f.count)
        });
        id + sequence + fragment
    }

    pub(super) fn write(&self, out: &mut String) {
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
