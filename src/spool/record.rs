//! The bytes on disk: segment files of framed records, and the scan that recovers them.
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
    crc: u32,
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

impl Header {
    /// Whether `payload` is this header's, unchanged.
    pub(crate) fn matches(&self, header_bytes: &[u8; RECORD_HEADER_BYTES], payload: &[u8]) -> bool {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header_bytes[8..]);
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

/// The records found in one segment file's bytes.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Each good record: its meta, and where its frame starts and ends in the file.
    pub records: Vec<(RecordMeta, usize, usize)>,
    /// Damaged stretches skipped, with good records after them.
    pub corrupt: u64,
    /// The indices each damaged stretch held, `[from, to)`: the messages it cost.
    pub lost: Vec<(u64, u64)>,
    /// Where a torn tail starts: bad or incomplete bytes with no good record after them.
    pub torn_at: Option<usize>,
    /// Payload bytes checksummed while looking for the next good record past damage: the
    /// scan's work beyond one pass (a header costs the same at every position), bounded by
    /// [`RESYNC_BUDGET`] times the file's size.
    pub resync_hashed: u64,
}

/// How many times a file's size the search past damage may checksum, at most: only bytes
/// crafted to look like frames get that far (random bytes fail the index check first).
const RESYNC_BUDGET: u64 = 4;

/// Checks every record after the segment header; `first` is the index the segment started at
/// (its file name). Where a good record ends the next one starts, with a higher index (a gap
/// is left by records that recovery cut out of a damaged file). A bad record is skipped by
/// searching forward for the next good one, whose index must then be the next expected one
/// plus at most the records that fit in the bytes skipped: a frame inside a log line's bytes
/// is never taken for a record (issue 21 item 7), and random bytes almost never get as far as
/// a checksum, so the search is one pass. If no good record follows, the bad bytes are a torn
/// tail.
pub(crate) fn scan(bytes: &[u8], first: u64) -> Scan {
    let mut scan = Scan::default();
    let mut at = SEGMENT_HEADER_BYTES as usize;
    let mut expected = first;
    let budget = RESYNC_BUDGET.saturating_mul(bytes.len() as u64);
    while at < bytes.len() {
        if let Some((meta, end)) = record_at(bytes, at, expected..=u64::MAX, &mut 0) {
            scan.records.push((meta, at, end));
            expected = meta.index.saturating_add(1);
            at = end;
            continue;
        }
        let mut found = None;
        let mut exhausted = false;
        for next in at + 1..bytes.len() {
            if scan.resync_hashed > budget {
                exhausted = true;
                break;
            }
            let lost_at_most = ((next - at) / RECORD_HEADER_BYTES) as u64;
            let plausible = expected..=expected.saturating_add(lost_at_most);
            if let Some(found_here) = record_at(bytes, next, plausible, &mut scan.resync_hashed) {
                found = Some((next, found_here));
                break;
            }
        }
        match found {
            Some((next, (meta, _))) => {
                scan.corrupt += 1;
                scan.lost.push((expected, meta.index));
                at = next;
            }
            // Only bytes crafted to look like frames get here: the rest of the file is damage,
            // never a torn tail to cut (which would delete it, good records and all).
            None if exhausted => {
                scan.corrupt += 1;
                break;
            }
            None => {
                scan.torn_at = Some(at);
                break;
            }
        }
    }
    scan
}

/// The byte ranges of a scanned segment that hold no good record, between its header and its
/// last good record: what a read passes over when the segment could not be rewritten.
pub(crate) fn damaged_stretches(scan: &Scan, len: usize) -> Vec<(u64, u64)> {
    let mut stretches = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES as usize;
    for &(_, start, end) in &scan.records {
        if start > at {
            stretches.push((at as u64, start as u64));
        }
        at = end;
    }
    debug_assert!(at <= len);
    stretches
}

/// The good record starting at `at` whose index is in `indices`, and where it ends. Bytes
/// checksummed are added to `hashed`.
fn record_at(
    bytes: &[u8],
    at: usize,
    indices: std::ops::RangeInclusive<u64>,
    hashed: &mut u64,
) -> Option<(RecordMeta, usize)> {
    let header_bytes: &[u8; RECORD_HEADER_BYTES] =
        bytes.get(at..at + RECORD_HEADER_BYTES)?.try_into().ok()?;
    let header = parse_header(header_bytes);
    if header.len > MAX_PAYLOAD_BYTES || !indices.contains(&header.meta.index) {
        return None;
    }
    let end = at + RECORD_HEADER_BYTES + header.len as usize;
    let payload = bytes.get(at + RECORD_HEADER_BYTES..end)?;
    *hashed += payload.len() as u64;
    header
        .matches(header_bytes, payload)
        .then_some((header.meta, end))
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

    fn meta(index: u64) -> RecordMeta {
        RecordMeta {
            index,
            appended_ms: 7,
            sequence: index * 10,
        }
    }

    fn segment(indices: &[u64]) -> Vec<u8> {
        let mut bytes = segment_header().to_vec();
        for &index in indices {
            frame(
                &mut bytes,
                meta(index),
                format!("payload {index}").as_bytes(),
            );
        }
        bytes
    }

    fn indices(scan: &Scan) -> Vec<u64> {
        scan.records.iter().map(|(meta, _, _)| meta.index).collect()
    }

    #[test]
    fn good_records_scan_back() {
        let bytes = segment(&[5, 6, 7]);
        let scan = scan(&bytes, 5);
        assert_eq!(indices(&scan), [5, 6, 7]);
        assert_eq!((scan.corrupt, scan.torn_at), (0, None));
        assert_eq!(scan.records[1].0, meta(6));
        assert_eq!(segment_kind(&bytes), SegmentKind::Current);
    }

    #[test]
    fn a_torn_tail_is_found_wherever_the_cut_is() {
        let whole = segment(&[1, 2]);
        let second_starts = scan(&whole, 1).records[1].1;
        for cut in second_starts..whole.len() {
            let scan = scan(&whole[..cut], 1);
            assert_eq!(indices(&scan), [1], "cut at {cut}");
            let expected = (cut > second_starts).then_some(second_starts);
            assert_eq!(scan.torn_at, expected, "cut at {cut}");
        }
        // Zeros where a crash left the file longer than what was written.
        let mut zeroed = whole.clone();
        zeroed.extend_from_slice(&[0; 100]);
        assert_eq!(scan(&zeroed, 1).torn_at, Some(whole.len()));
    }

    #[test]
    fn a_corrupt_record_in_the_middle_is_skipped() {
        let mut bytes = segment(&[1, 2, 3]);
        let (_, start, _) = scan(&bytes, 1).records[1];
        bytes[start + RECORD_HEADER_BYTES + 2] ^= 0x40;
        let scan = scan(&bytes, 1);
        assert_eq!(indices(&scan), [1, 3]);
        assert_eq!((scan.corrupt, scan.torn_at), (1, None));
        assert_eq!(scan.lost, [(2, 3)]);
    }

    /// Issue 28 finding 2: damage across two records costs two messages, and says so.
    #[test]
    fn damage_across_records_counts_every_message_it_cost() {
        let mut bytes = segment(&[1, 2, 3, 4]);
        let records = scan(&bytes, 1).records;
        let (from, to) = (records[1].1 + 10, records[2].2 - 5);
        bytes[from..to].fill(0);
        let scan = scan(&bytes, 1);
        assert_eq!(indices(&scan), [1, 4]);
        assert_eq!(scan.lost, [(2, 4)], "records 2 and 3");
    }

    /// Issue 21 item 7: a frame inside a log line is not a record, even where the record that
    /// holds it is damaged and the search for the next good one passes through it.
    #[test]
    fn a_frame_inside_a_damaged_record_is_never_taken_for_a_record() {
        let mut planted = Vec::new();
        frame(&mut planted, meta(1_000_000), b"never appended");
        let mut line = b"user text: ".to_vec();
        line.extend_from_slice(&planted);
        let mut bytes = segment_header().to_vec();
        frame(&mut bytes, meta(1), b"payload 1");
        let second = bytes.len();
        frame(&mut bytes, meta(2), &line);
        frame(&mut bytes, meta(3), b"payload 3");
        bytes[second + 5] ^= 1; // The second record's checksum.
        let scan = scan(&bytes, 1);
        assert_eq!(indices(&scan), [1, 3]);
        assert_eq!((scan.corrupt, scan.torn_at), (1, None));
    }

    #[test]
    fn a_gap_left_by_a_rewrite_is_read_through() {
        let bytes = segment(&[4, 5, 9, 10]);
        assert_eq!(indices(&scan(&bytes, 3)), [4, 5, 9, 10]);
    }

    /// A zeroed stretch from the first record on (zeros read as index 0, length 0) is one pass,
    /// and every good record after it is kept.
    #[test]
    fn a_long_zeroed_stretch_at_the_start_keeps_the_records_after_it() {
        let indices_in: Vec<u64> = (0..2000).collect();
        let mut bytes = segment(&indices_in);
        let records = scan(&bytes, 0).records;
        let (from, to) = (records[0].1, records[300].1);
        bytes[from..to].fill(0);
        let scan = scan(&bytes, 0);
        assert_eq!(indices(&scan), (300..2000).collect::<Vec<_>>());
        assert_eq!(scan.lost, [(0, 300)]);
    }

    /// Issue 21 item 7: a torn 4 MiB record costs one pass, not a checksum per byte after it.
    #[test]
    fn a_torn_large_record_is_found_in_one_pass() {
        for filler in [0u8, b'x', 0x01, 0xff] {
            let mut bytes = segment(&[1]);
            let big = vec![filler; 4 << 20];
            let torn_at = bytes.len();
            frame(&mut bytes, meta(2), &big);
            bytes.truncate(bytes.len() - 100);
            let scan = scan(&bytes, 1);
            assert_eq!(indices(&scan), [1], "filler {filler:#x}");
            assert_eq!(scan.torn_at, Some(torn_at), "filler {filler:#x}");
            assert!(
                scan.resync_hashed <= RESYNC_BUDGET * bytes.len() as u64,
                "filler {filler:#x}: {} bytes checksummed",
                scan.resync_hashed
            );
        }
    }

    /// Frames crafted to pass every check but the checksum cost a bounded amount of work.
    #[test]
    fn crafted_frames_after_damage_cost_bounded_work() {
        let mut bytes = segment(&[1]);
        let damaged = bytes.len();
        // A long stretch of headers that claim the next index and the rest of the file.
        let count = 20_000;
        for n in 0..count {
            // Exactly the rest of the file: every one of them is checksummed in full.
            let remaining = (count - n - 1) * RECORD_HEADER_BYTES as u32;
            let mut header = [0u8; RECORD_HEADER_BYTES];
            header[..4].copy_from_slice(&remaining.to_le_bytes());
            header[8..16].copy_from_slice(&2u64.to_le_bytes());
            bytes.extend_from_slice(&header);
        }
        let scan = scan(&bytes, 1);
        assert!(scan.resync_hashed <= (RESYNC_BUDGET + 1) * bytes.len() as u64);
        assert_eq!(indices(&scan), [1]);
        assert_eq!(
            (scan.torn_at, scan.corrupt),
            (None, 1),
            "damage, kept: not a tail to cut {damaged}"
        );
    }

    #[test]
    fn headers_tell_future_and_foreign_files() {
        let mut bytes = segment(&[1]);
        bytes[8] = 2;
        assert_eq!(segment_kind(&bytes), SegmentKind::Future(2));
        assert_eq!(
            segment_kind(b"hello world, not a spool"),
            SegmentKind::Unknown
        );
    }
}
