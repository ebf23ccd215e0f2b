//! Recovery's reading half over a spool built in memory: what the recovery fuzz target
//! (`tests/fuzz/fuzz_targets/spool_recovery.rs`, issue 28) drives, through the disk seam on
//! [`Memory`] files, so no real file is needed. Only for fuzzing (the `fuzzing` feature) and
//! this crate's tests; not an interface.

use std::io;
use std::path::Path;

use super::disk::Disk as _;
use super::memory_disk::Memory;
use super::record::{self, RECORD_HEADER_BYTES, RecordMeta};
use super::scan::{SegmentFile, Source as _};
use super::state::{Loaded, State, StateFile};
use super::store::judge::{self, Action, Examined};
use super::store::segment_path;

/// A framed segment holding `records` (index, sequence, payload), as the spool writes it.
pub fn segment_bytes(records: &[(u64, u64, &[u8])]) -> Vec<u8> {
    let mut bytes = record::segment_header().to_vec();
    for &(index, sequence, payload) in records {
        let meta = RecordMeta {
            index,
            appended_ms: 1,
            sequence,
        };
        record::frame(&mut bytes, meta, payload);
    }
    bytes
}

/// The file name of the segment that starts at `first`.
pub fn segment_name(first: u64) -> String {
    format!("seg-{first:020}.log")
}

/// The state file of a spool in memory.
#[derive(Debug, Clone)]
pub enum StateInput {
    Missing,
    /// Stored as the spool stores it.
    Stored {
        frontier: u64,
        last_sequence: u64,
    },
    /// These bytes, whatever they are.
    Bytes(Vec<u8>),
}

/// A file of a spool in memory.
#[derive(Debug, Clone)]
pub enum FileInput {
    /// These bytes, the file then made `len` long (a hole after the bytes, if longer).
    Regular { bytes: Vec<u8>, len: u64 },
    /// A symbolic link, device or such under this name.
    NotRegular,
}

/// What happened to one segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Kept,
    Cut { zero_tail: bool },
    Rewritten,
    MovedAside,
    Deleted,
}

/// What recovery made of a spool in memory.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Written by a newer format: left alone, nothing else is filled in.
    pub future: Option<u32>,
    /// The frontier read from the state: every index below it was delivered.
    pub frontier: u64,
    /// As [`super::Recovery`] counts them.
    pub pending: u64,
    pub corrupt: u64,
    pub lost: u64,
    pub torn: u64,
    /// Every record recovery keeps, in order: (index, payload).
    pub records: Vec<(u64, Vec<u8>)>,
    /// Each segment file by first index, in order, and what happened to it.
    pub segments: Vec<(u64, Outcome)>,
}

/// Judges every segment of a spool made of `state` and `files` (by name) the way recovery
/// does at start, and reads back every record it keeps.
pub fn recover(state: &StateInput, files: &[(String, FileInput)]) -> io::Result<Recovered> {
    let memory = Memory::default();
    let dir = Path::new("/memory/spool");
    let state_path = dir.join("state");
    match state {
        StateInput::Missing => {}
        StateInput::Bytes(bytes) => memory.put(&state_path, bytes, 0)?,
        &StateInput::Stored {
            frontier,
            last_sequence,
        } => {
            let (mut file, _) = StateFile::from_file(memory.open_state(&state_path)?)?;
            let stored = State {
                frontier,
                last_sequence,
            };
            file.store(stored, false, &memory)?;
        }
    }
    for (name, file) in files {
        let path = dir.join(name);
        match file {
            FileInput::Regular { bytes, len } => memory.put(&path, bytes, *len)?,
            FileInput::NotRegular => memory.put_not_regular(&path),
        }
    }
    let mut recovered = Recovered::default();
    let (_, loaded) = StateFile::from_file(memory.open_state(&state_path)?)?;
    recovered.frontier = match loaded {
        Loaded::State(state, _lease) => state.frontier,
        Loaded::Future(version) => {
            recovered.future = Some(version);
            return Ok(recovered);
        }
    };
    let failed = |e: super::SpoolError| io::Error::other(e.to_string());
    let firsts = judge::segment_firsts(&memory, dir).map_err(failed)?;
    for (at, &first) in firsts.iter().enumerate() {
        let next = firsts.get(at + 1).copied();
        let path = segment_path(dir, first);
        let judged =
            match judge::judge(&memory, &path, first, next, recovered.frontier).map_err(failed)? {
                Examined::Judged(judged) => judged,
                Examined::Future(version) => {
                    recovered.future = Some(version);
                    return Ok(recovered);
                }
            };
        recovered.corrupt += judged.corrupt;
        recovered.lost += judged.lost;
        recovered.torn += judged.torn;
        let outcome = match judged.action {
            Action::Keep => Outcome::Kept,
            Action::Cut(_) => Outcome::Cut {
                zero_tail: judged.scan.zero_tail,
            },
            Action::Rewrite => Outcome::Rewritten,
            Action::MoveAside => Outcome::MovedAside,
            Action::Delete => Outcome::Deleted,
        };
        recovered.segments.push((first, outcome));
        let Some(file) = &judged.file else {
            continue;
        };
        if matches!(judged.action, Action::MoveAside | Action::Delete) {
            continue;
        }
        let source = SegmentFile {
            disk: &memory,
            file,
            len: judged.len,
        };
        for &(meta, start, end) in &judged.scan.records {
            let payload_at = start + RECORD_HEADER_BYTES as u64;
            let mut payload = vec![0; (end - payload_at) as usize];
            source.read_at(&mut payload, payload_at)?;
            recovered.pending += u64::from(meta.index >= recovered.frontier);
            recovered.records.push((meta.index, payload));
        }
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regular(bytes: Vec<u8>) -> FileInput {
        let len = bytes.len() as u64;
        FileInput::Regular { bytes, len }
    }

    #[test]
    fn recovery_in_memory_keeps_good_records_and_counts_the_rest() {
        let first = segment_bytes(&[(0, 0, b"zero"), (1, 0, b"one"), (2, 0, b"two")]);
        let mut second = segment_bytes(&[(3, 0, b"three"), (4, 0, b"four")]);
        let third = segment_bytes(&[(5, 0, b"five")]);
        // The damaged record 3, a link where a segment should be, and a 1 GiB zero tail.
        second[16 + RECORD_HEADER_BYTES] ^= 1;
        let files = [
            (segment_name(0), regular(first)),
            (segment_name(3), regular(second)),
            (segment_name(5), {
                let len = third.len() as u64 + (1 << 30);
                FileInput::Regular { bytes: third, len }
            }),
            (segment_name(6), FileInput::NotRegular),
        ];
        let state = StateInput::Stored {
            frontier: 1,
            last_sequence: 0,
        };
        let recovered = recover(&state, &files).expect("recover");
        let indices: Vec<u64> = recovered.records.iter().map(|(i, _)| *i).collect();
        assert_eq!(indices, [0, 1, 2, 4, 5]);
        assert_eq!(recovered.records[3].1, b"four");
        assert_eq!(
            recovered.segments,
            [
                (0, Outcome::Kept),
                (3, Outcome::Rewritten),
                (5, Outcome::Cut { zero_tail: true }),
                (6, Outcome::MovedAside)
            ]
        );
        assert_eq!(
            (
                recovered.pending,
                recovered.lost,
                recovered.corrupt,
                recovered.torn
            ),
            (4, 1, 2, 1)
        );
    }
}
