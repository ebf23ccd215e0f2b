//! Spool recovery over arbitrary segment and state bytes (`spool::fuzzing`: recovery's
//! reading and judging, through the disk seam, on files in memory; nothing touches the
//! filesystem).
//!
//! The input builds a spool: records appended with consecutive indices from a start, spread
//! over segments as the spool writes them, then damaged the ways a crash or a disk damages
//! them: bits flipped (at most three per segment), stretches zeroed, files cut short, zeros
//! added at the end (a hole, as a sparse file has), a segment replaced by something that is
//! not a regular file; a state stored with any frontier, or any bytes at all; stray files.
//! Damage never writes chosen bytes: a checksum is no defence against forged records (a
//! signing key is), only against damage.
//!
//! Format (little-endian; missing bytes read as zeros): state kind u8 (0 missing, 1 stored:
//! frontier offset u16 and last sequence u8, 2 bytes: length u8 and the bytes), start index
//! u16, segment count u8 (1 to 6); per segment: flags u8 (bit 0: not a regular file), record
//! count u8 (up to 32, at least 1 but in the last), per record a length u8 (up to 96) and the payload, damage count u8
//! (up to 4), per damage a kind u8, a position u16 and an amount u16; last, a stray-files u8.
//!
//! Properties (what recovery guarantees, `spool::Recovery`):
//! - nothing recovered was not appended: every record kept has the index and payload of an
//!   appended record, in increasing index order;
//! - the counts add up: `pending` is the records kept at or above the frontier, and
//!   `pending + lost` is every index at or above the frontier that a segment other than the
//!   last held, plus those of the last up to its last good record (what follows that is a torn
//!   tail, never counted: a crash during a write). The one exception, found by this target: a
//!   segment other than the last cut exactly at a record boundary reads as a whole segment
//!   (recovery cannot tell it from one whose gap an earlier recovery already counted), so
//!   then `pending + lost` is only at most that;
//! - a segment without damage keeps every record, and one damaged only by zeros added at its
//!   end is cut back as a zero tail, losing nothing.

#![no_main]

use std::collections::BTreeMap;

use drifter_rsyslog::spool::fuzzing::{
    self, FileInput, Outcome, StateInput, segment_bytes, segment_name,
};
use libfuzzer_sys::fuzz_target;

/// Reads the input front to back; zeros once it runs out.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        first
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken.to_vec()
    }
}

#[derive(Debug)]
enum Damage {
    FlipBit { at: u16, bit: u8 },
    Zero { at: u16, len: u16 },
    Cut { at: u16 },
    ZeroTail { len: u64 },
}

struct Segment {
    first: u64,
    /// Appended (index, payload).
    records: Vec<(u64, Vec<u8>)>,
    not_regular: bool,
    damage: Vec<Damage>,
}

fuzz_target!(|data: &[u8]| {
    let mut input = Reader(data);
    let state = match input.u8() % 3 {
        0 => StateInput::Missing,
        1 => {
            let offset = u64::from(input.u16());
            let last_sequence = u64::from(input.u8());
            // Filled in once the start is known.
            StateInput::Stored {
                frontier: offset,
                last_sequence,
            }
        }
        _ => {
            let len = usize::from(input.u8());
            StateInput::Bytes(input.bytes(len))
        }
    };
    let start = u64::from(input.u16());
    let state = match state {
        StateInput::Stored {
            frontier,
            last_sequence,
        } => StateInput::Stored {
            // Around the start: below it, among the records, past them.
            frontier: (start + frontier % 256).saturating_sub(64),
            last_sequence,
        },
        other => other,
    };
    let segment_count = 1 + usize::from(input.u8() % 6);
    let mut segments = Vec::new();
    let mut next_index = start;
    for number in 1..=segment_count {
        let flags = input.u8();
        // Only the last segment can be empty: one is made when its first record comes.
        let least = u8::from(number < segment_count);
        let count = u64::from((input.u8() % 33).max(least));
        let records = (next_index..next_index + count)
            .map(|index| {
                let len = usize::from(input.u8() % 97);
                (index, input.bytes(len))
            })
            .collect();
        let damage_count = input.u8() % 5;
        let mut flips = 0;
        let damage = (0..damage_count)
            .filter_map(|_| {
                let (kind, at, amount) = (input.u8(), input.u16(), input.u16());
                match kind % 4 {
                    0 if flips < 3 => {
                        flips += 1;
                        Some(Damage::FlipBit {
                            at,
                            bit: (amount % 8) as u8,
                        })
                    }
                    0 => None,
                    1 => Some(Damage::Zero { at, len: amount }),
                    2 => Some(Damage::Cut { at }),
                    _ => Some(Damage::ZeroTail {
                        // Up to 4 GiB of hole.
                        len: u64::from(amount) << (at % 17),
                    }),
                }
            })
            .collect();
        segments.push(Segment {
            first: next_index,
            records,
            not_regular: flags & 1 == 1,
            damage,
        });
        next_index += count;
    }
    let strays = input.u8();

    let mut files = Vec::new();
    for segment in &segments {
        let name = segment_name(segment.first);
        if segment.not_regular {
            files.push((name, FileInput::NotRegular));
            continue;
        }
        let framed: Vec<(u64, u64, &[u8])> = segment
            .records
            .iter()
            .map(|(index, payload)| (*index, *index, payload.as_slice()))
            .collect();
        let mut bytes = segment_bytes(&framed);
        let mut extra = 0u64;
        for damage in &segment.damage {
            let position = |at: u16, bytes: &Vec<u8>| usize::from(at) % bytes.len().max(1);
            match *damage {
                Damage::FlipBit { at, bit } if !bytes.is_empty() => {
                    let at = position(at, &bytes);
                    bytes[at] ^= 1 << bit;
                }
                Damage::Zero { at, len } if !bytes.is_empty() => {
                    let from = position(at, &bytes);
                    let to = (from + usize::from(len)).min(bytes.len());
                    bytes[from..to].fill(0);
                }
                Damage::Cut { at } => bytes.truncate(position(at, &bytes)),
                Damage::ZeroTail { len } => extra = extra.saturating_add(len),
                _ => {}
            }
        }
        let len = bytes.len() as u64 + extra;
        files.push((name, FileInput::Regular { bytes, len }));
    }
    if strays & 1 == 1 {
        // A rewrite's copy that a crash left: removed, never read.
        let name = format!("{}.tmp", segment_name(start));
        let bytes = segment_bytes(&[(start, 0, b"a copy, never delivered")]);
        let len = bytes.len() as u64;
        files.push((name, FileInput::Regular { bytes, len }));
    }
    if strays & 2 == 2 {
        files.push(("aside".into(), FileInput::NotRegular));
    }

    let recovered = fuzzing::recover(&state, &files).expect("files in memory never fail");
    if recovered.future.is_some() {
        // A flipped format version: the spool is left alone, nothing to check.
        return;
    }
    let frontier = recovered.frontier;
    let appended: BTreeMap<u64, &[u8]> = segments
        .iter()
        .flat_map(|s| s.records.iter().map(|(i, p)| (*i, p.as_slice())))
        .collect();

    // Nothing recovered was not appended, in order.
    let mut previous = None;
    for (index, payload) in &recovered.records {
        assert_eq!(
            appended.get(index).copied(),
            Some(payload.as_slice()),
            "record {index} was never appended so"
        );
        assert!(previous < Some(*index), "record {index} out of order");
        previous = Some(*index);
    }

    // The counts add up.
    let kept_from_frontier = recovered
        .records
        .iter()
        .filter(|(index, _)| *index >= frontier)
        .count() as u64;
    assert_eq!(recovered.pending, kept_from_frontier);
    let from_frontier = |from: u64, to: u64| to.saturating_sub(from.max(frontier));
    let mut accounted = 0;
    for (at, segment) in segments.iter().enumerate() {
        let end = match segments.get(at + 1) {
            Some(next) => next.first,
            // The last: up to its last good record.
            None => recovered
                .records
                .iter()
                .map(|(index, _)| *index)
                .filter(|&index| index >= segment.first)
                .max()
                .map_or(segment.first, |last| last + 1),
        };
        accounted += from_frontier(segment.first, end);
    }
    // A segment other than the last cut exactly at a record boundary reads as whole: what
    // it lost cannot be told from a clean end (nor from a gap an earlier recovery counted).
    let cut_before_the_last = segments
        .iter()
        .rev()
        .skip(1)
        .any(|s| s.damage.iter().any(|d| matches!(d, Damage::Cut { .. })));
    assert!(recovered.pending + recovered.lost <= accounted);
    assert!(
        cut_before_the_last || recovered.pending + recovered.lost == accounted,
        "pending {} + lost {} against {accounted} indices from the frontier {frontier}: {:?}",
        recovered.pending,
        recovered.lost,
        recovered.segments
    );

    // Undamaged segments keep everything; zeros added at the end are a zero tail.
    for segment in &segments {
        if segment.not_regular || segment.records.is_empty() {
            continue;
        }
        let zero_tail_only = segment
            .damage
            .iter()
            .all(|d| matches!(d, Damage::ZeroTail { .. }));
        if !zero_tail_only {
            continue;
        }
        let outcome = recovered
            .segments
            .iter()
            .find(|(first, _)| *first == segment.first)
            .map(|(_, outcome)| *outcome);
        let grown = segment
            .damage
            .iter()
            .any(|d| matches!(d, Damage::ZeroTail { len } if *len > 0));
        let expected = if grown {
            Outcome::Cut { zero_tail: true }
        } else {
            Outcome::Kept
        };
        assert_eq!(outcome, Some(expected), "segment {}", segment.first);
        for (index, _) in &segment.records {
            assert!(
                recovered.records.iter().any(|(kept, _)| kept == index),
                "record {index} of an undamaged segment was not kept"
            );
        }
    }
});
