//! Sequence numbers: leased ahead in the state file, so that no number is ever given out twice,
//! even after a host crash that loses the unsynced tail (issue 21 item 8).
//!
//! The numbers are given out by the labeler, and reach the outside only through a record
//! appended here. A block of numbers is leased (stored and synced in the state file's lease
//! slots, on a blocking thread and under the `state_file` lock only, never under `inner`)
//! before any number in it is appended; [`append`](Spool::append) refuses a number above the
//! lease. A restart carries on:
//! - within the same boot (the process was killed, the host did not crash): after the highest
//!   number in the files and in the stored state (which holds the highest one appended
//!   before any segment is deleted; when it cannot be stored, the newest segment is kept). A
//!   kill loses nothing written, so every number that reached a file is seen, and the numbers
//!   of lines read but never written, which never left the process, are given out again:
//!   `decode` sees no gap;
//! - after another boot: after the lease, which from then on is the floor that a restart in
//!   the new boot never goes below (stored with the next lease). The numbers between the last
//!   one that reached the disk and the end of the lease are never given out again: `decode`
//!   reports them missing, the lost tail (true losses) together with numbers that were never
//!   used (at most one block). A gap is reported, never a number used for two messages.
//!
//! Chosen over "a crashed spool is only delivered, and new messages get a fresh sender": a
//! new sender name at every crash would make each crash's loss invisible to `decode` (a new
//! sender starts at 1 with no link to the old one), and names would pile up.
//!
//! The block grows when leases come fast (less than a second apart, up to [`MAX_AHEAD`]) and
//! shrinks when they come slowly, so that a lease is stored about once a second at most, and
//! a crash shows about a second's worth of unused numbers at most. A clean stop gives the
//! unused rest back, so a reboot after one shows no gap.

use std::time::{Duration, Instant};

use super::super::state::Lease;
use super::*;

/// The smallest block of numbers leased at once.
pub(super) const MIN_AHEAD: u64 = 1024;
pub(super) const MAX_AHEAD: u64 = 1 << 20;
/// Leases closer together than this grow the block; farther apart than 30 times this shrink it.
const LEASE_PACE: Duration = Duration::from_secs(1);

/// Where numbering resumes at open, from the stored state's number, the highest number
/// found in the records, and the lease: (the last number given out, the lease, the floor).
pub(super) fn resumed(stored: u64, found: u64, lease: Lease, disk: &dyn Disk) -> (u64, u64, u64) {
    let same_boot = disk.boot_id().is_some_and(|boot| boot == lease.boot);
    let written = stored.max(found);
    let (last, floor) = if same_boot {
        (written.max(lease.floor), lease.floor)
    } else {
        // Whatever the crash took was numbered at most up to the lease.
        let last = written.max(lease.sequence);
        (last, last)
    };
    (last, lease.sequence.max(last), floor)
}

/// Numbers are appended (`--sequence`), and fewer than half a block is left.
pub(super) fn running_low<T>(inner: &Inner<T>) -> bool {
    inner.sequencing && inner.leased.saturating_sub(inner.last_sequence) < inner.lease_ahead / 2
}

impl<T> Spool<T> {
    /// Numbers up to this one may be appended.
    pub(crate) fn leased(&self) -> u64 {
        self.lock().leased
    }

    /// Leases numbers through `through` and a block beyond, durably, if needed or running low.
    /// Blocking (an fdatasync). `Full`: the disk has no room for it now (copy-on-write
    /// filesystems allocate for a write in place): try again once there is room.
    pub(crate) fn extend_lease(&self, through: u64) -> Result<(), Refused> {
        let mut state_file = locked(&self.state_file);
        let sequence = {
            let mut inner = self.lock();
            if through <= inner.leased && !running_low(&inner) {
                return Ok(());
            }
            if let Some(previous) = inner.leased_at {
                let since = previous.elapsed();
                if since < LEASE_PACE {
                    inner.lease_ahead = (inner.lease_ahead * 2).min(MAX_AHEAD);
                } else if since > LEASE_PACE * 30 {
                    inner.lease_ahead = (inner.lease_ahead / 2).max(MIN_AHEAD);
                }
            }
            inner.leased_at = Some(Instant::now());
            through.max(inner.last_sequence).max(inner.leased) + inner.lease_ahead
        };
        match self.store_lease(&mut state_file, sequence) {
            Ok(()) => {
                let mut inner = self.lock();
                inner.leased = inner.leased.max(sequence);
                Ok(())
            }
            Err(e) if record::is_full(&e) => {
                tracing::warn!(
                    "spool {}: cannot store its sequence lease yet: {e}",
                    self.name
                );
                Err(Refused::Full(()))
            }
            Err(e) => {
                // What the failed sync left on disk is not known: never taken for a lease.
                let mut inner = self.lock();
                Err(self.fail(&mut inner, format!("cannot store the sequence lease: {e}")))
            }
        }
    }

    /// At a clean stop: the numbers leased but not given out are given back, so the next
    /// start, even after a reboot, carries on without a gap. Blocking. A failure only leaves
    /// the larger lease in place (a gap after a reboot, never a reuse).
    pub(crate) fn release_lease(&self) -> io::Result<()> {
        let mut state_file = locked(&self.state_file);
        let sequence = {
            let mut inner = self.lock();
            if !self.writable || inner.leased <= inner.last_sequence {
                return Ok(());
            }
            // Lowered before it is stored: nothing above is appended from now on.
            inner.leased = inner.last_sequence;
            inner.last_sequence
        };
        self.store_lease(&mut state_file, sequence)
    }

    fn store_lease(&self, state_file: &mut StateFile, sequence: u64) -> io::Result<()> {
        let lease = Lease {
            sequence,
            boot: self.disk.boot_id().unwrap_or_default(),
            floor: self.lock().floor,
        };
        state_file.store_lease(lease, &*self.disk)
    }
}
