//! The recovery scan: every good record of a segment file, found by reading the file in
//! bounded chunks, so that memory depends on what the file holds, never on its size (issue 28:
//! a segment padded with zeros to 1 GiB cost 1 GiB at start, one linked to /dev/zero grew
//! without end). Holes are passed over without reading them (SEEK_DATA), and zeros up to the
//! end, what a crash leaves after the file grew and before its data was written, are told
//! apart from a torn record.

use std::fs::File;
use std::io;
use std::ops::RangeInclusive;

use super::disk::Disk;
use super::record::{
    self, MAX_PAYLOAD_BYTES, RECORD_HEADER_BYTES, RecordMeta, SEGMENT_HEADER_BYTES, SegmentKind,
};

/// Bytes read at a time; the scan holds two such buffers, whatever the file's size.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// Bytes that a scan reads from: a segment file through the disk seam, or bytes in memory.
pub(crate) trait Source {
    fn len(&self) -> u64;
    /// Reads at `offset` until `buffer` is full or the source ends: the bytes read.
    fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize>;
    /// The first offset at or after `offset` that may hold anything but zeros; `None` when
    /// only zeros follow.
    fn next_data(&self, offset: u64) -> io::Result<Option<u64>>;
}

/// A segment file, read through the seam.
pub(crate) struct SegmentFile<'a> {
    pub disk: &'a dyn Disk,
    pub file: &'a File,
    pub len: u64,
}

impl Source for SegmentFile<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
        self.disk.read_at(self.file, buffer, offset)
    }

    fn next_data(&self, offset: u64) -> io::Result<Option<u64>> {
        self.disk.next_data(self.file, offset)
    }
}

impl Source for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
        let from = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let read = buffer.len().min(self.len() - from);
        buffer[..read].copy_from_slice(&self[from..from + read]);
        Ok(read)
    }

    fn next_data(&self, offset: u64) -> io::Result<Option<u64>> {
        Ok((offset < Source::len(self)).then_some(offset))
    }
}

/// What the first bytes of a segment say it is.
pub(crate) fn segment_kind(source: &(impl Source + ?Sized)) -> io::Result<SegmentKind> {
    let mut header = [0; SEGMENT_HEADER_BYTES as usize];
    let read = source.read_at(&mut header, 0)?;
    Ok(record::segment_kind(&header[..read]))
}

/// The records found in one segment file.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Each good record: its meta, and where its frame starts and ends in the file.
    pub records: Vec<(RecordMeta, u64, u64)>,
    /// Damaged stretches skipped, with good records after them.
    pub corrupt: u64,
    /// The indices each damaged stretch held, `[from, to)`: the messages it cost.
    pub lost: Vec<(u64, u64)>,
    /// Where a torn tail starts: bad or incomplete bytes with no good record after them.
    pub torn_at: Option<u64>,
    /// The torn tail is zeros only: the file grew (preallocation, or a crash after the size
    /// was written and before the data) and nothing was written there.
    pub zero_tail: bool,
    /// Past damage, the rest of the file was given up as damage (the work budget ran out).
    pub exhausted: bool,
    /// Payload bytes checksummed while looking for the next good record past damage: the
    /// scan's work beyond one pass (a header costs the same at every position), bounded by
    /// [`RESYNC_BUDGET`] times the file's size.
    pub resync_hashed: u64,
}

impl Scan {
    /// One past the index of the last good record, or `first` without one.
    pub(crate) fn end(&self, first: u64) -> u64 {
        self.records
            .last()
            .map_or(first, |(meta, _, _)| meta.index + 1)
    }

    /// The byte ranges that hold no good record, between the segment header and the last good
    /// record: what reads pass over when a full disk kept the segment from being rewritten
    /// (issue 21 item 14). Taken from the scan's offsets, so nothing more is read.
    pub(crate) fn damaged_stretches(&self) -> Vec<(u64, u64)> {
        let mut stretches = Vec::new();
        let mut at = SEGMENT_HEADER_BYTES;
        for &(_, start, end) in &self.records {
            if start > at {
                stretches.push((at, start));
            }
            at = end;
        }
        stretches
    }
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
/// a checksum, so the search is one pass. Zeros are passed over at once (an all-zero header is
/// never a record). If no good record follows, the bad bytes are a torn tail.
pub(crate) fn scan(source: &(impl Source + ?Sized), first: u64) -> io::Result<Scan> {
    let mut reader = Chunked::new(source);
    let mut scan = Scan::default();
    let len = source.len();
    let mut at = SEGMENT_HEADER_BYTES;
    let mut expected = first;
    let budget = RESYNC_BUDGET.saturating_mul(len);
    while at < len {
        if let Some((meta, end)) = reader.record_at(at, expected..=u64::MAX, &mut 0)? {
            scan.records.push((meta, at, end));
            expected = meta.index.saturating_add(1);
            at = end;
            continue;
        }
        if reader.first_nonzero(at)?.is_none() {
            scan.torn_at = Some(at);
            scan.zero_tail = true;
            break;
        }
        let mut found = None;
        let mut next = at + 1;
        while next < len {
            if scan.resync_hashed > budget {
                scan.exhausted = true;
                break;
            }
            if reader.zero_header_at(next)? {
                // No record starts where its 32 header bytes are all zeros: go to 31 bytes
                // before the next byte that is not zero.
                match reader.first_nonzero(next)? {
                    Some(nonzero) => {
                        next =
                            (next + 1).max(nonzero.saturating_sub(RECORD_HEADER_BYTES as u64 - 1));
                        continue;
                    }
                    None => break,
                }
            }
            let lost_at_most = (next - at) / RECORD_HEADER_BYTES as u64;
            let plausible = expected..=expected.saturating_add(lost_at_most);
            if let Some(found_here) = reader.record_at(next, plausible, &mut scan.resync_hashed)? {
                found = Some((next, found_here));
                break;
            }
            next += 1;
        }
        match found {
            Some((next, (meta, _))) => {
                scan.corrupt += 1;
                scan.lost.push((expected, meta.index));
                at = next;
            }
            // Only bytes crafted to look like frames get here: the rest of the file is damage,
            // never a torn tail to cut (which would delete it, good records and all).
            None if scan.exhausted => {
                scan.corrupt += 1;
                break;
            }
            None => {
                scan.torn_at = Some(at);
                break;
            }
        }
    }
    Ok(scan)
}

/// Reads a source through a window of [`CHUNK_BYTES`], and checksums payloads through a
/// second buffer of that size, so a large payload never moves the window.
struct Chunked<'a, S: Source + ?Sized> {
    source: &'a S,
    window: Vec<u8>,
    /// The source offset of `window[0]`.
    start: u64,
    payload: Vec<u8>,
}

impl<'a, S: Source + ?Sized> Chunked<'a, S> {
    fn new(source: &'a S) -> Self {
        Chunked {
            source,
            window: Vec::new(),
            start: 0,
            payload: Vec::new(),
        }
    }

    /// Up to `want` bytes (at most [`CHUNK_BYTES`]) at `offset`; fewer only at the end.
    fn bytes_at(&mut self, offset: u64, want: usize) -> io::Result<&[u8]> {
        let want = want.min(CHUNK_BYTES);
        let held = self.start + self.window.len() as u64;
        let end = offset.saturating_add(want as u64).min(self.source.len());
        if offset < self.start || end > held {
            let size = usize::try_from(self.source.len().saturating_sub(offset))
                .unwrap_or(usize::MAX)
                .min(CHUNK_BYTES);
            self.window.resize(size, 0);
            let read = self.source.read_at(&mut self.window, offset)?;
            self.window.truncate(read);
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        let to = (from + want).min(self.window.len());
        Ok(&self.window[from.min(to)..to])
    }

    fn zero_header_at(&mut self, offset: u64) -> io::Result<bool> {
        let header = self.bytes_at(offset, RECORD_HEADER_BYTES)?;
        Ok(header.len() == RECORD_HEADER_BYTES && header.iter().all(|&b| b == 0))
    }

    /// The first byte at or after `from` that is not zero; holes are skipped unread.
    fn first_nonzero(&mut self, from: u64) -> io::Result<Option<u64>> {
        let len = self.source.len();
        let mut at = from;
        while at < len {
            match self.source.next_data(at)? {
                Some(data) => at = at.max(data),
                None => return Ok(None),
            }
            if at >= len {
                break;
            }
            let chunk = self.bytes_at(at, CHUNK_BYTES)?;
            if chunk.is_empty() {
                break;
            }
            if let Some(nonzero) = chunk.iter().position(|&b| b != 0) {
                return Ok(Some(at + nonzero as u64));
            }
            at += chunk.len() as u64;
        }
        Ok(None)
    }

    /// The good record at `at` whose index is in `indices`, and where it ends. Payload bytes
    /// checksummed are added to `hashed`.
    fn record_at(
        &mut self,
        at: u64,
        indices: RangeInclusive<u64>,
        hashed: &mut u64,
    ) -> io::Result<Option<(RecordMeta, u64)>> {
        let Ok(header_bytes) =
            <[u8; RECORD_HEADER_BYTES]>::try_from(self.bytes_at(at, RECORD_HEADER_BYTES)?)
        else {
            return Ok(None);
        };
        let header = record::parse_header(&header_bytes);
        let payload_at = at + RECORD_HEADER_BYTES as u64;
        let end = payload_at + u64::from(header.len);
        if header.len > MAX_PAYLOAD_BYTES
            || !indices.contains(&header.meta.index)
            || end > self.source.len()
        {
            return Ok(None);
        }
        *hashed += u64::from(header.len);
        let mut hasher = record::checksum_of_header(&header_bytes);
        let mut offset = payload_at;
        while offset < end {
            let size = usize::try_from(end - offset).map_or(CHUNK_BYTES, |n| n.min(CHUNK_BYTES));
            self.payload.resize(size, 0);
            let read = self.source.read_at(&mut self.payload, offset)?;
            if read < size {
                // The file ended meanwhile.
                return Ok(None);
            }
            hasher.update(&self.payload);
            offset += size as u64;
        }
        Ok((hasher.finalize() == header.crc).then_some((header.meta, end)))
    }
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
