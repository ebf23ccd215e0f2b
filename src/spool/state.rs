//! The spool's small state file: the contiguous done frontier (every record below it was
//! delivered or dead-lettered) with the highest sequence number given out when it was stored,
//! and the sequence lease.
//!
//! Two pairs of 64-byte slots, each pair written in turn, each slot with a generation and a
//! CRC: a write torn by a crash spoils only the slot being written, and the other one of its
//! pair still holds the previous value. A file with no good state slot means "nothing known
//! done": everything left is sent again, as duplicates that ids remove, never lost.
//!
//! The state pair (slots 0 and 1) is synced per policy. The lease pair (slots 2 and 3, which
//! earlier versions never read) is always synced before its numbers are used, and apart from
//! the state so that an unsynced state store can never overwrite the one durable copy of a
//! lease (see [`super::store`]'s module doc, "Sequence numbers").

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::disk::Disk;
use super::record::{FORMAT_VERSION, u32_at, u64_at};

const SLOT_BYTES: u64 = 64;
const SLOT_MAGIC: &[u8; 4] = b"DSST";
const LEASE_MAGIC: &[u8; 4] = b"DSLS";
/// Where the lease pair starts.
const LEASE_SLOTS_AT: u64 = 2 * SLOT_BYTES;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct State {
    pub frontier: u64,
    pub last_sequence: u64,
}

/// Sequence numbers up to `sequence` may have been given out; none above it was. Stored, and
/// synced, before a number above the previous lease is used. `boot` is the host's boot id when
/// it was stored: a restart within the same boot finds every record written in that boot in
/// the files (a kill loses nothing written), so it carries on from the highest number found
/// there, but never below `floor`, where numbering resumed after the last host crash (the
/// numbers below may have been given to records that crash took).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Lease {
    pub sequence: u64,
    pub boot: [u8; 16],
    pub floor: u64,
}

/// What the state file held.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Loaded {
    State(State, Lease),
    /// A slot written by a newer format.
    Future(u32),
}

pub(crate) struct StateFile {
    file: File,
    generation: u64,
    lease_generation: u64,
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
        let (lease_generation, lease) = newest_lease(&file);
        let len = file.metadata()?.len();
        if len < 4 * SLOT_BYTES {
            // Every slot takes its space now, so storing a state later never needs more of
            // it (a full disk then still lets delivered segments go). Best effort: a full disk
            // now only means the first store may have to wait.
            let zeros = [0; 4 * SLOT_BYTES as usize];
            let _ = file.write_all_at(&zeros[len as usize..], len);
        }
        let loaded = match loaded {
            Loaded::State(state, _) => Loaded::State(state, lease),
            future => future,
        };
        let file = StateFile {
            file,
            generation,
            lease_generation,
        };
        Ok((file, loaded))
    }

    /// Reads the state without taking the file over (the `spool` command); a missing file is
    /// the empty state.
    pub(crate) fn read(path: &Path) -> io::Result<Loaded> {
        match File::open(path) {
            Ok(file) => Ok(match newest_slot(&file).1 {
                Loaded::State(state, _) => Loaded::State(state, newest_lease(&file).1),
                future => future,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Ok(Loaded::State(State::default(), Lease::default()))
            }
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

    /// Writes `lease` into the older lease slot and makes it durable before returning,
    /// whatever the sync policy: a number is used only once a lease covering it is durable.
    pub(crate) fn store_lease(&mut self, lease: Lease, disk: &dyn Disk) -> io::Result<()> {
        let generation = self.lease_generation + 1;
        let mut bytes = [0u8; SLOT_BYTES as usize];
        bytes[..4].copy_from_slice(LEASE_MAGIC);
        bytes[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[8..16].copy_from_slice(&generation.to_le_bytes());
        bytes[16..24].copy_from_slice(&lease.sequence.to_le_bytes());
        bytes[24..40].copy_from_slice(&lease.boot);
        bytes[40..48].copy_from_slice(&lease.floor.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..48]);
        bytes[48..52].copy_from_slice(&crc.to_le_bytes());
        let at = LEASE_SLOTS_AT + (generation % 2) * SLOT_BYTES;
        disk.write_at(&self.file, &bytes, at)?;
        disk.sync_data(&self.file)?;
        self.lease_generation = generation;
        Ok(())
    }
}

/// The newest good lease slot (generation, lease); none is the zero lease (an older version's
/// file, or a new one).
fn newest_lease(file: &File) -> (u64, Lease) {
    let mut newest: Option<(u64, Lease)> = None;
    for slot in 0..2 {
        let mut bytes = [0u8; SLOT_BYTES as usize];
        if file
            .read_exact_at(&mut bytes, LEASE_SLOTS_AT + slot * SLOT_BYTES)
            .is_err()
        {
            continue;
        }
        if &bytes[..4] != LEASE_MAGIC || crc32fast::hash(&bytes[..48]) != u32_at(&bytes, 48) {
            continue;
        }
        let generation = u64_at(&bytes, 8);
        if newest.is_some_and(|(newest, _)| newest >= generation) {
            continue;
        }
        let mut boot = [0u8; 16];
        boot.copy_from_slice(&bytes[24..40]);
        let lease = Lease {
            sequence: u64_at(&bytes, 16),
            boot,
            floor: u64_at(&bytes, 40),
        };
        newest = Some((generation, lease));
    }
    newest.unwrap_or_default()
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
    (generation, Loaded::State(state, Lease::default()))
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
        assert_eq!(loaded, Loaded::State(State::default(), Lease::default()));
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
        assert_eq!(loaded, Loaded::State(third, Lease::default()));
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
        assert_eq!(loaded, Loaded::State(second, Lease::default()));
        // The next write goes over the torn slot, not over the good one.
        file.store(third, false, &Real).expect("store again");
        let (_, loaded) = StateFile::open(&path).expect("reopen after");
        assert_eq!(loaded, Loaded::State(third, Lease::default()));
    }

    #[test]
    fn the_lease_is_kept_apart_from_the_state_and_survives_its_stores() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state");
        let (mut file, _) = StateFile::open(&path).expect("open");
        let lease = |sequence| Lease {
            sequence,
            boot: [7; 16],
            floor: 3,
        };
        file.store_lease(lease(100), &Real).expect("lease");
        // State stores (unsynced under `off`) never touch the lease slots.
        for frontier in 1..=5 {
            let state = State {
                frontier,
                last_sequence: frontier,
            };
            file.store(state, false, &Real).expect("store");
        }
        file.store_lease(lease(200), &Real).expect("lease again");
        let state = State {
            frontier: 5,
            last_sequence: 5,
        };
        let (_, loaded) = StateFile::open(&path).expect("reopen");
        assert_eq!(loaded, Loaded::State(state, lease(200)));
        // The newer lease slot torn: the older lease is read, never none.
        let raw = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open raw");
        raw.write_all_at(&[0xff; 8], LEASE_SLOTS_AT + 16)
            .expect("tear");
        let (_, loaded) = StateFile::open(&path).expect("reopen torn");
        assert_eq!(loaded, Loaded::State(state, lease(100)));
    }
}
