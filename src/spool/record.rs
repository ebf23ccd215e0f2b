//! The bytes on disk: segment files of framed records (the scan that recovers them is `scan`).
//!
//! A segment starts with a 16-byte header (magic, format version). Each record is a 32-byte
//! header and its payload:
//!
//! ```text
//! len u32 | crc u32 | index u64 | appended_ms u64 | sequence u64 | payload (len bytes)
//! ```
//!
//! The CRC-32 covers everything after it, payload included, so a record is accepted only whole. All integers are little-endian.

use std::io;

/// Segment magic: "drifter spool", then the format version.
pub(crate) const MAGIC: &[u8; 8] = b"DRFTSPL\n";
/// The format this build writes and reads; a spool with a higher one is left alone.
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 16;
pub(crate) const RECORD_HEADER_BYTES: usize = 32;
/// Longest payload accepted when scanning: a length above this is corruption, not a record.
pub(crate) const MAX_PAYLOAD_BYTES: u32 = 1 << 30;

/// What the store keeps with every payload, outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordMeta {
    pub index: u64,
    pub appended_ms: u64,
    /// 0 when the message has none; the store only remembers the highest.
    pub sequence: u64,
}

pub(crate) fn segment_header() -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut header = [0; SEGMENT_HEADER_BYTES as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// Appends one framed record to `out`.
pub(crate) fn frame(out: &mut Vec<u8>, meta: RecordMeta, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&meta.index.to_le_bytes());
    out.extend_from_slice(&meta.appended_ms.to_le_bytes());
    out.extend_from_slice(&meta.sequence.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// A record header read back, before its payload is checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub len: u32,
    pub crc: u32,
    pub meta: RecordMeta,
}

pub(crate) fn parse_header(bytes: &[u8; RECORD_HEADER_BYTES]) -> Header {
    Header {
        len: u32_at(bytes, 0),
        crc: u32_at(bytes, 4),
        meta: RecordMeta {
            index: u64_at(bytes, 8),
            appended_ms: u64_at(bytes, 16),
            sequence: u64_at(bytes, 24),
        },
    }
}

/// A checksum started over a record header's fields, for its payload to be added to.
pub(crate) fn checksum_of_header(header_bytes: &[u8; RECORD_HEADER_BYTES]) -> crc32fast::Hasher {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header_bytes[8..]);
    hasher
}

impl Header {
    /// Whether `payload` is this header's, unchanged.
    pub(crate) fn matches(&self, header_bytes: &[u8; RECORD_HEADER_BYTES], payload: &[u8]) -> bool {
        let mut hasher = checksum_of_header(header_bytes);
        hasher.update(payload);
        payload.len() == self.len as usize && hasher.finalize() == self.crc
    }
}

/// What a segment file's header says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SegmentKind {
    Current,
    /// Written by a newer format; this build must not touch it.
    Future(u32),
    /// Not a segment at all (or an older header torn by a crash).
    Unknown,
}

pub(crate) fn segment_kind(bytes: &[u8]) -> SegmentKind {
    if bytes.len() < SEGMENT_HEADER_BYTES as usize || &bytes[..8] != MAGIC {
        return SegmentKind::Unknown;
    }
    match u32_at(bytes, 8) {
        FORMAT_VERSION => SegmentKind::Current,
        newer if newer > FORMAT_VERSION => SegmentKind::Future(newer),
        _ => SegmentKind::Unknown,
    }
}

/// Whether an error means "the disk is full": waited out, never a reason to drop data.
pub(crate) fn is_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_tell_future_and_foreign_files() {
        let mut bytes = segment_header().to_vec();
        assert_eq!(segment_kind(&bytes), SegmentKind::Current);
        bytes[8] = 2;
        assert_eq!(segment_kind(&bytes), SegmentKind::Future(2));
        assert_eq!(
            segment_kind(b"hello world, not a spool"),
            SegmentKind::Unknown
        );
    }

    /// The recovery scan passes over zeros because of this.
    #[test]
    fn an_all_zero_header_never_checks_out() {
        let zeros = [0u8; RECORD_HEADER_BYTES];
        assert!(!parse_header(&zeros).matches(&zeros, &[]));
    }
}
