//! One spool: its segment files, the append side (buffered, then one `write()` per flush), the
//! take side (an in-memory window of recent records, the files otherwise), and the done
//! frontier that lets whole segments go.
//!
//! File I/O here is blocking. Appends and reads hit the page cache and run inline; the slow
//! calls (fdatasync, the directory's fsync, unlink after a state write) are made by callers on
//! a blocking thread, and never while holding the lock that appends and takes need.
//!
//! Open files: the segment being written, the one being read, and the rotated segments whose
//! sync is still due (interval and strict; none under `off`), at most [`MAX_ROTATED`]. A
//! rotated segment is closed once synced, and at once when it is done, so no file descriptor
//! is held on a deleted segment (issue 21 item 1).
//!
//! By concern: [`recovery`] (open; [`judge`] reads and judges each segment), [`append`],
//! [`segments`] (rotation, sync, close, retire), [`take`] (the window and reads back),
//! [`frontier`] (done, the state, deletes), [`lease`] (sequence numbers leased ahead, never
//! given out twice).
//!
//! Invariants, under the `inner` lock (checked with `debug_assert!` by `check`):
//! - indices: `frontier <= next_take`, `frontier <= written_end <= next_index`; records in
//!   `[written_end, next_index)` are the buffered ones, one item each, and the buffer is empty
//!   exactly when nothing is buffered;
//! - `done_ahead` holds only indices above the frontier;
//! - segments are in index order, none overlapping, and none ends past `written_end`;
//! - the writer, when there is one, writes the last segment;
//! - every rotated file belongs to a segment still listed, never the writer's: a done
//!   segment's file is closed before the segment is deleted;
//! - no record is appended with a sequence number above `leased`, and `leased` is durable
//!   (stored and synced) before it is raised;
//! - the window holds a contiguous run of indices (those below `next_take`, skipped past as
//!   damaged, are dropped by the next take), and `window_bytes` is their size.
//!
//! Lock order: `state_file`, then `inner`; `syncing`, then `inner`. No fsync runs under
//! `inner`.

use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use super::disk::Disk;
use super::record::{self, RECORD_HEADER_BYTES, RecordMeta, SEGMENT_HEADER_BYTES, SegmentKind};
use super::state::{Loaded, State, StateFile};
use super::{Limits, SpoolError, SyncPolicy};

/// Buffered appends are written once they reach this size, even while input keeps coming.
const FLUSH_ABOVE_BYTES: usize = 256 * 1024;

/// Rotated segments waiting for their sync, at most: past this, appends wait as on a full
/// disk (a disk this slow to sync is as good as full), so open files stay bounded.
pub(crate) const MAX_ROTATED: usize = 16;

/// A record taken for delivery: from the window (the item as appended) or read back from disk.
#[derive(Debug)]
pub(crate) enum Body<T> {
    Item(T),
    Payload(Vec<u8>),
}

#[derive(Debug)]
pub(crate) struct Taken<T> {
    pub meta: RecordMeta,
    pub body: Body<T>,
}

/// What recovery found when the spool was opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// Records not yet done, to be delivered.
    pub pending: u64,
    /// Damaged stretches that failed their check and were skipped.
    pub corrupt: u64,
    /// Messages not yet done that those stretches held: lost (issue 21 item 9).
    pub lost: u64,
    /// Segments whose torn tail was cut off.
    pub torn: u64,
}

/// Open outcome of a spool directory.
pub(crate) enum Opened<T> {
    Spool(Box<Spool<T>>, Recovery),
    /// Written by a newer format: left alone.
    Future(u32),
}

#[derive(Debug)]
struct Segment {
    first: u64,
    /// One past the last record's index.
    end: u64,
    bytes: u64,
    path: PathBuf,
    /// Byte ranges holding no good record, passed over by reads: a damaged segment that a
    /// full disk kept recovery from rewriting (issue 21 item 14). Empty otherwise.
    skips: Vec<(u64, u64)>,
}

struct Writer {
    /// The segment's first index.
    first: u64,
    file: Arc<File>,
    offset: u64,
}

/// A rotated segment whose data is not yet synced: synced by the next sync, then closed.
struct Rotated {
    first: u64,
    file: Arc<File>,
}

struct Windowed<T> {
    meta: RecordMeta,
    item: T,
    bytes: usize,
}

enum ReadFailure {
    Corrupt,
    Io(io::Error),
}

struct Reader {
    segment_first: u64,
    file: BufReader<File>,
    /// The index the next record read should have (at least).
    next: u64,
    /// Where the next read starts in the file.
    offset: u64,
}

struct Inner<T> {
    segments: VecDeque<Segment>,
    writer: Option<Writer>,
    /// Records framed but not yet written, and the items that go into the window once they are.
    buffer: Vec<u8>,
    buffered: Vec<Windowed<T>>,
    next_index: u64,
    /// Records below this are in a file (written, maybe not synced).
    written_end: u64,
    next_take: u64,
    window: VecDeque<Windowed<T>>,
    window_bytes: usize,
    frontier: u64,
    done_ahead: BTreeSet<u64>,
    persisted: State,
    /// The highest sequence number appended (or resumed from at open).
    last_sequence: u64,
    /// Numbers up to this one may be appended: a durable lease covers them.
    leased: u64,
    /// Numbering never resumes below this within this boot (see [`lease`]).
    floor: u64,
    /// How many numbers the next lease reaches beyond what is needed, and when the last one
    /// was stored (see [`lease`]).
    lease_ahead: u64,
    leased_at: Option<std::time::Instant>,
    /// Records carry sequence numbers (`--sequence`): the lease is kept ahead.
    sequencing: bool,
    /// The writer's file was written since the last sync.
    dirty: bool,
    /// Rotated segments to sync before they are closed (never under `off`).
    rotated: Vec<Rotated>,
    /// A segment was created since the directory was last synced.
    dir_unsynced: bool,
    /// Segments fully done and closed, to unlink once the frontier is stored.
    doomed: Vec<Segment>,
    reader: Option<Reader>,
    failed: Option<String>,
    /// Bytes of every segment file and of the buffer.
    bytes: u64,
    corrupt_at_runtime: u64,
}

/// One spool directory's durable queue of records (`T` is the item appended, kept in memory
/// while it is in the window so a take needs no read back): appended by the reader, taken by
/// delivery, reclaimed a whole segment at a time once every record in it is done. Shared between the async side and blocking threads;
/// see the module documentation for its locks and invariants.
pub(crate) struct Spool<T> {
    pub(crate) name: String,
    dir: PathBuf,
    limits: Limits,
    writable: bool,
    /// Every file operation after recovery goes through here (faults in the unit tests).
    disk: Arc<dyn Disk>,
    /// The spool directory's bound, shared with the process's other spools; set for the
    /// spool written to (see [`super::budget`]).
    pub(crate) budget: std::sync::OnceLock<Arc<super::budget::Budget>>,
    inner: Mutex<Inner<T>>,
    /// Apart from `inner`, so that storing (and syncing) the state never holds up appends
    /// and takes (issue 21 item 6); held across a whole `reclaim`, so stores stay in order.
    state_file: Mutex<StateFile>,
    /// Held across a whole `sync`, so that a sync returns only once everything written before
    /// it was called is durable, even when another sync took those files first.
    syncing: Mutex<()>,
    /// Woken when records become available to take.
    pub(crate) readable: Notify,
    /// Woken when room is freed (segments deleted).
    pub(crate) room: Notify,
    /// Woken when a segment became fully done, so it can go.
    pub(crate) reclaimable: Notify,
    /// Woken when a segment was rotated with its sync due.
    pub(crate) rotated: Notify,
    /// Woken when the sequence lease runs low.
    pub(crate) lease_low: Notify,
    _lock: File,
}

/// Appending or flushing: why it did not happen.
#[derive(Debug)]
pub(crate) enum Refused<T = ()> {
    /// No room (the size bound, or the disk is full): wait for `room` and try again with
    /// what is given back.
    Full(T),
    Failed(SpoolError),
}

impl<T> std::fmt::Debug for Spool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("name", &self.name).finish()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

pub(crate) fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("seg-{first:020}.log"))
}

/// The first index a segment file's name says it holds.
pub(crate) fn segment_first(name: &str) -> Option<u64> {
    name.strip_prefix("seg-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// Out of file descriptors, for the process (EMFILE) or the system (ENFILE).
fn is_out_of_files(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc_errno::EMFILE | libc_errno::ENFILE)
    )
}

/// The two errno values, without a libc dependency for them.
mod libc_errno {
    pub(super) const ENFILE: i32 = 23;
    pub(super) const EMFILE: i32 = 24;
}

/// A panic elsewhere leaves the data consistent (every change is made whole under the lock).
fn locked<U>(mutex: &Mutex<U>) -> MutexGuard<'_, U> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl<T> Spool<T> {
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        locked(&self.inner)
    }

    /// The module's invariants (see the module doc), in debug builds.
    fn check(&self, inner: &Inner<T>) {
        if !cfg!(debug_assertions) {
            return;
        }
        debug_assert!(inner.frontier <= inner.next_take, "frontier past next_take");
        debug_assert!(
            inner.frontier <= inner.written_end,
            "frontier past written_end"
        );
        debug_assert!(
            inner.written_end <= inner.next_index,
            "written_end past next_index"
        );
        debug_assert_eq!(
            inner.buffered.len() as u64,
            inner.next_index - inner.written_end,
            "one buffered item per unwritten record"
        );
        debug_assert_eq!(inner.buffer.is_empty(), inner.buffered.is_empty());
        debug_assert!(
            inner.done_ahead.first().is_none_or(|&i| i > inner.frontier),
            "done_ahead at or below the frontier"
        );
        let mut end = 0;
        for segment in &inner.segments {
            debug_assert!(segment.first >= end && segment.end >= segment.first);
            end = segment.end;
        }
        debug_assert!(end <= inner.written_end, "a segment ends past written_end");
        if let Some(writer) = &inner.writer {
            debug_assert_eq!(
                inner.segments.back().map(|s| s.first),
                Some(writer.first),
                "the writer writes the last segment"
            );
        }
        for rotated in &inner.rotated {
            debug_assert!(
                inner.segments.iter().any(|s| s.first == rotated.first),
                "a rotated file of a segment no longer listed"
            );
            debug_assert!(
                inner
                    .writer
                    .as_ref()
                    .is_none_or(|w| w.first != rotated.first),
                "the writer's file among the rotated"
            );
        }
        let mut window_bytes = 0;
        for (at, windowed) in inner.window.iter().enumerate() {
            if let Some(next) = inner.window.get(at + 1) {
                debug_assert_eq!(
                    windowed.meta.index + 1,
                    next.meta.index,
                    "window not contiguous"
                );
            }
            window_bytes += windowed.bytes;
        }
        debug_assert_eq!(window_bytes, inner.window_bytes);
    }

    pub(crate) fn last_sequence(&self) -> u64 {
        self.lock().last_sequence
    }

    /// Records not yet done.
    pub(crate) fn pending(&self) -> u64 {
        let inner = self.lock();
        (inner.next_index - inner.frontier).saturating_sub(inner.done_ahead.len() as u64)
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Every record appended so far was taken for delivery.
    pub(crate) fn all_taken(&self) -> bool {
        let inner = self.lock();
        inner.next_take >= inner.next_index
    }

    pub(crate) fn failure(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    fn fail(&self, inner: &mut Inner<T>, reason: String) -> Refused {
        tracing::error!(
            "spool {}: {reason}; no more messages are acknowledged",
            self.name
        );
        inner.failed.get_or_insert(reason.clone());
        Refused::Failed(SpoolError::Failed(reason))
    }

    /// Records skipped at run time because they could not be read back.
    pub(crate) fn corrupt_at_runtime(&self) -> u64 {
        self.lock().corrupt_at_runtime
    }

    /// Deletes the spool's files and directory (an adopted spool with nothing left): renamed
    /// out of the namespace first, still locked, so a process that starts meanwhile never
    /// claims a half-deleted spool (issue 21 item 5).
    pub(crate) fn remove(&self) -> io::Result<()> {
        let leaving = super::removal_path(&self.dir);
        std::fs::rename(&self.dir, &leaving)?;
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        std::fs::remove_dir_all(&leaving)
    }
}

mod append;
mod frontier;
pub(crate) mod judge;
mod lease;
mod recovery;
mod segments;
mod take;
#[cfg(test)]
mod tests;
