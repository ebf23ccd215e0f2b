//! The spool's small state file: the contiguous done frontier (every record below it was
//! delivered or dead-lettered) and the highest sequence number given out.
//!
//! Two 64-byte slots, written in turn, each with a generation and a CRC: a write torn by a
//! crash spoils only the slot being written, and the other one still holds the previous state.
//! A file with no good slot means "nothing known done": everything left is sent again, as
//! duplicates that ids remove, never lost.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::disk::Disk;
use super::record::{FORMAT_VERSION, u32_at, u64_at};

const SLOT_BYTES: u64 = 64;
const SLOT_MAGIC: &[u8; 4] = b"DSST";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct State {
    pub frontier: u64,
    pub last_sequence: u64,
}

/// What the state file held.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Loaded {
    State(State),
    /// A slot written by a newer format.
    Future(u32),
}

pub(crate) struct StateFile {
    file: File,
    generation: u64,
}

impl StateFile {
    /// Opens (creating) the state file and reads its newest good slot.
    #[cfg(test)]
    pub(crate) fn open(path: &Path) -> io::Result<(Self, Loaded)> {
        use super::disk::Disk as _;
        Self::from_file(super::disk::Real.open_state(path)?)
    }

    /// The state file opened (through the disk seam, as [`super::disk::Disk::open_state`]
    /// does), and its newest good slot read.
    pub(crate) fn from_file(file: File) -> io::Result<(Self, Loaded)> {
        let (generation, loaded) = newest_slot(&file);
        let len = file.metadata()?.len();
        if len < 2 * SLOT_BYTES {
            // Both slots take their space now, so storing a state later never needs more of
            // it (a full disk then still lets delivered segments go). Best effort: a full disk
            // now only means the first store may have to wait.
            let zeros = [0; 2 * SLOT_BYTES as usize];
            let _ = file.write_all_at(&zeros[len as usize..], len);
        }
        Ok((StateFile { file, generation }, loaded))
    }

    /// Reads the state without taking the file over (the `spool` command); a missing file is
    /// the empty state.
    pub(crate) fn read(path: &Path) -> io::Result<Loaded> {
        match File::open(path) {
            Ok(file) => Ok(newest_slot(&file).1),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Loaded::State(State::default())),
            Err(e) => Err(e),
        }
    }

    /// Writes `state` into the older slot; with `sync`, makes it durable before returning.
    pub(crate) fn store(&mut self, state: State, sync: bool, disk: &dyn Disk) -> io::Result<()> {
        let generation = self.generation + 1;
        let mut bytes = [0u8; SLOT_BYTES as usize];
        bytes[..4].copy_from_slice(SLOT_MAGIC);
        bytes[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[8..16].copy_from_slice(&generation.to_le_bytes());
        bytes[16..24].copy_from_slice(&state.frontier.to_le_bytes());
        bytes[24..32].copy_from_slice(&state.last_sequence.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..32]);
        bytes[32..36].copy_from_slice(&crc.to_le_bytes());
        disk.write_at(&self.file, &bytes, (generation % 2) * SLOT_BYTES)?;
        if sync {
            disk.sync_data(&self.file)?;
        }
        self.generation = generation;
        Ok(())
    }
}

fn newest_slot(file: &File) -> (u64, Loaded) {
    let mut newest: Option<(u64, State)> = None;
    for slot in 0..2 {
        let mut bytes = [0u8; SLOT_BYTES as usize];
        if file.read_exact_at(&mut bytes, slot * SLOT_BYTES).is_err() {
            continue;
        }
        match parse_slot(&bytes) {
            Some(Slot::Good(generation, state))
                if newest.is_none_or(|(newest, _)| generation > newest) =>
            {
                newest = Some((generation, state));
            }
            Some(Slot::Good(..)) => {}
            Some(Slot::Future(version)) => return (0, Loaded::Future(version)),
            None => {}
        }
    }
    let (generation, state) = newest.unwrap_or_default();
    (generation, Loaded::State(state))
}

enum Slot {
    Good(u64, State),
    Future(u32),
}

fn parse_slot(bytes: &[u8; SLOT_BYTES as usize]) -> Option<Slot> {
    if &bytes[..4] != SLOT_MAGIC || crc32fast::hash(&bytes[..32]) != u32_at(bytes, 32) {
        return None;
    }
    let version = u32_at(bytes, 4);
    if version > FORMAT_VERSION {
        return Some(Slot::Future(version));
    }
    Some(Slot::Good(
        u64_at(bytes, 8),
        State {
            frontier: u64_at(bytes, 16),
            last_sequence: u64_at(bytes, 24),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::super::disk::Real;
    use super::*;

    #[test]
    fn the_newest_good_slot_wins_and_a_torn_one_is_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state");
        let (mut file, loaded) = StateFile::open(&path).expect("open");
        assert_eq!(loaded, Loaded::State(State::default()));
        for frontier in 1..=3 {
            let state = State {
                frontier,
                last_sequence: frontier * 2,
            };
            file.store(state, true, &Real).expect("store");
        }
        drop(file);
        let (_, loaded) = StateFile::open(&path).expect("reopen");
        let third = State {
            frontier: 3,
            last_sequence: 6,
        };
        assert_eq!(loaded, Loaded::State(third));
        // Generation 3 is in slot 1; tear it, and generation 2 is read.
        let raw = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open raw");
        raw.write_all_at(&[0xff; 8], SLOT_BYTES + 16).expect("tear");
        let (mut file, loaded) = StateFile::open(&path).expect("reopen torn");
        let second = State {
            frontier: 2,
            last_sequence: 4,
        };
        assert_eq!(loaded, Loaded::State(second));
        // The next write goes over the torn slot, not over the good one.
        file.store(third, false, &Real).expect("store again");
        let (_, loaded) = StateFile::open(&path).expect("reopen after");
        assert_eq!(loaded, Loaded::State(third));
    }
}
