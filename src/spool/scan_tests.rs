//! The recovery scan's tests: damage, torn and zero tails, bounded work and bounded reads.

use super::super::record::{frame, segment_header};
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
    let scan = run(&bytes, 5);
    assert_eq!(indices(&scan), [5, 6, 7]);
    assert_eq!((scan.corrupt, scan.torn_at), (0, None));
    assert_eq!(scan.records[1].0, meta(6));
    let kind = segment_kind(bytes.as_slice()).expect("in memory");
    assert_eq!(kind, SegmentKind::Current);
}

#[test]
fn a_torn_tail_is_found_wherever_the_cut_is() {
    let whole = segment(&[1, 2]);
    let second_starts = run(&whole, 1).records[1].1;
    for cut in second_starts..whole.len() as u64 {
        let scan = run(&whole[..cut as usize], 1);
        assert_eq!(indices(&scan), [1], "cut at {cut}");
        let expected = (cut > second_starts).then_some(second_starts);
        assert_eq!(scan.torn_at, expected, "cut at {cut}");
    }
    // Zeros where a crash left the file longer than what was written.
    let mut zeroed = whole.clone();
    zeroed.extend_from_slice(&[0; 100]);
    let scan = run(&zeroed, 1);
    assert_eq!(scan.torn_at, Some(whole.len() as u64));
    assert!(scan.zero_tail);
}

#[test]
fn a_corrupt_record_in_the_middle_is_skipped() {
    let mut bytes = segment(&[1, 2, 3]);
    let (_, start, _) = run(&bytes, 1).records[1];
    bytes[start as usize + RECORD_HEADER_BYTES + 2] ^= 0x40;
    let scan = run(&bytes, 1);
    assert_eq!(indices(&scan), [1, 3]);
    assert_eq!((scan.corrupt, scan.torn_at), (1, None));
    assert_eq!(scan.lost, [(2, 3)]);
}

/// Issue 28 finding 2: damage across two records costs two messages, and says so.
#[test]
fn damage_across_records_counts_every_message_it_cost() {
    let mut bytes = segment(&[1, 2, 3, 4]);
    let records = run(&bytes, 1).records;
    let (from, to) = (records[1].1 as usize + 10, records[2].2 as usize - 5);
    bytes[from..to].fill(0);
    let scan = run(&bytes, 1);
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
    let scan = run(&bytes, 1);
    assert_eq!(indices(&scan), [1, 3]);
    assert_eq!((scan.corrupt, scan.torn_at), (1, None));
}

#[test]
fn a_gap_left_by_a_rewrite_is_read_through() {
    let bytes = segment(&[4, 5, 9, 10]);
    assert_eq!(indices(&run(&bytes, 3)), [4, 5, 9, 10]);
}

/// A zeroed stretch from the first record on (zeros read as index 0, length 0) is one pass,
/// and every good record after it is kept.
#[test]
fn a_long_zeroed_stretch_at_the_start_keeps_the_records_after_it() {
    let indices_in: Vec<u64> = (0..2000).collect();
    let mut bytes = segment(&indices_in);
    let records = run(&bytes, 0).records;
    let (from, to) = (records[0].1 as usize, records[300].1 as usize);
    bytes[from..to].fill(0);
    let scan = run(&bytes, 0);
    assert_eq!(indices(&scan), (300..2000).collect::<Vec<_>>());
    assert_eq!(scan.lost, [(0, 300)]);
}

/// Issue 21 item 7: a torn 4 MiB record costs one pass, not a checksum per byte after it.
#[test]
fn a_torn_large_record_is_found_in_one_pass() {
    for filler in [0u8, b'x', 0x01, 0xff] {
        let mut bytes = segment(&[1]);
        let big = vec![filler; 4 << 20];
        let torn_at = bytes.len() as u64;
        frame(&mut bytes, meta(2), &big);
        bytes.truncate(bytes.len() - 100);
        let scan = run(&bytes, 1);
        assert_eq!(indices(&scan), [1], "filler {filler:#x}");
        assert_eq!(scan.torn_at, Some(torn_at), "filler {filler:#x}");
        assert!(!scan.zero_tail, "a record header is not zeros");
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
    let scan = run(&bytes, 1);
    assert!(scan.resync_hashed <= (RESYNC_BUDGET + 1) * bytes.len() as u64);
    assert_eq!(indices(&scan), [1]);
    assert_eq!(
        (scan.torn_at, scan.corrupt),
        (None, 1),
        "damage, kept: not a tail to cut {damaged}"
    );
}

/// Issue 28: zeros after the last record are a zero tail, found without a checksum per byte;
/// a torn record followed by zeros is not.
#[test]
fn zeros_after_the_last_record_are_a_zero_tail() {
    let records = segment(&[1, 2, 3]);
    let mut padded = records.clone();
    padded.resize(records.len() + (3 << 20), 0);
    let scan = run(&padded, 1);
    assert_eq!(indices(&scan), [1, 2, 3]);
    assert_eq!(scan.torn_at, Some(records.len() as u64));
    assert!(scan.zero_tail);
    assert_eq!((scan.corrupt, scan.resync_hashed), (0, 0));

    let mut torn = segment(&[1, 2, 3, 4]);
    let fourth = run(&torn, 1).records[3].1;
    torn.truncate(fourth as usize + 20);
    torn.resize(torn.len() + 4096, 0);
    let scan = run(&torn, 1);
    assert_eq!((scan.torn_at, scan.zero_tail), (Some(fourth), false));
}

/// A long run of zeros between damage and the next good record is passed over, and the record
/// after it is kept.
#[test]
fn zeros_inside_a_segment_are_passed_over_to_the_next_record() {
    let mut bytes = segment(&[1]);
    let damaged = bytes.len();
    bytes.resize(damaged + (2 << 20), 0);
    bytes[damaged + 3] = 0x55; // Not a zero tail.
    frame(&mut bytes, meta(2), b"after the zeros");
    let scan = run(&bytes, 1);
    assert_eq!(indices(&scan), [1, 2]);
    assert_eq!((scan.corrupt, scan.torn_at), (1, None));
}

/// Issue 28 finding 1: a 1 GiB sparse segment holding 3 records is scanned with reads of at
/// most one chunk, and a few chunks in all: the hole is never read.
#[test]
fn a_sparse_gigabyte_segment_is_scanned_in_a_few_bounded_reads() {
    use super::super::disk::faults::Faulty;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("seg-00000000000000000001.log");
    let records = segment(&[1, 2, 3]);
    std::fs::write(&path, &records).expect("write");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    file.set_len(1 << 30).expect("sparse");
    let disk = Faulty::default();
    let source = SegmentFile {
        disk: &disk,
        file: &file,
        len: 1 << 30,
    };
    let scan = scan(&source, 1).expect("scan");
    assert_eq!(indices(&scan), [1, 2, 3]);
    assert_eq!(
        (scan.torn_at, scan.zero_tail),
        (Some(records.len() as u64), true)
    );
    let (bytes_read, largest_read) = disk.reads();
    assert!(
        largest_read <= CHUNK_BYTES,
        "{largest_read} bytes in one read"
    );
    assert!(
        bytes_read <= 4 * CHUNK_BYTES as u64,
        "{bytes_read} bytes read"
    );
}

fn run(bytes: &[u8], first: u64) -> Scan {
    scan(bytes, first).expect("bytes in memory never fail to read")
}
