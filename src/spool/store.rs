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

use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
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
    /// Records that failed their check and were skipped.
    pub corrupt: u64,
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
    last_sequence: u64,
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

pub(crate) struct Spool<T> {
    pub(crate) name: String,
    dir: PathBuf,
    limits: Limits,
    writable: bool,
    /// Every file operation after recovery goes through here (faults in the unit tests).
    disk: Arc<dyn Disk>,
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
    /// Recovers the spool in `dir`, whose lock the caller holds.
    pub(crate) fn open(
        dir: &Path,
        name: String,
        lock: File,
        limits: Limits,
        writable: bool,
        disk: Arc<dyn Disk>,
    ) -> Result<Opened<T>, SpoolError> {
        let context = |what: &str, path: &Path| {
            let what = what.to_string();
            let path = path.to_path_buf();
            move |e: io::Error| SpoolError::Io(format!("{what} {}", path.display()), e)
        };
        let state_path = dir.join("state");
        let (state_file, loaded) =
            StateFile::open(&state_path).map_err(context("cannot open", &state_path))?;
        let persisted = match loaded {
            Loaded::State(state) => state,
            Loaded::Future(version) => return Ok(Opened::Future(version)),
        };
        let mut firsts = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(context("cannot list", dir))? {
            let entry = entry.map_err(context("cannot list", dir))?;
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            if file_name.ends_with(".tmp") {
                // A rewrite that a crash interrupted; the original is still in place.
                let _ = std::fs::remove_file(entry.path());
            } else if let Some(first) = segment_first(&file_name) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        let mut last_sequence = persisted.last_sequence;
        let mut next_index = persisted.frontier;
        for first in firsts {
            let path = segment_path(dir, first);
            let bytes = std::fs::read(&path).map_err(context("cannot read", &path))?;
            match record::segment_kind(&bytes) {
                SegmentKind::Future(version) => return Ok(Opened::Future(version)),
                SegmentKind::Unknown => {
                    tracing::error!(
                        "spool file {} is not a spool segment; moved aside",
                        path.display()
                    );
                    recovery.corrupt += 1;
                    move_aside(dir, &path).map_err(context("cannot move aside", &path))?;
                    continue;
                }
                SegmentKind::Current => {}
            }
            let scan = record::scan(&bytes);
            if scan.records.is_empty() && scan.corrupt == 0 {
                // Only a header (and maybe a torn first record): nothing to keep.
                std::fs::remove_file(&path).map_err(context("cannot delete", &path))?;
                continue;
            }
            let mut size = bytes.len() as u64;
            if scan.corrupt > 0 {
                tracing::error!(
                    "spool file {}: {} corrupt records skipped; the file is kept in aside/",
                    path.display(),
                    scan.corrupt
                );
                recovery.corrupt += scan.corrupt;
                size =
                    rewrite(dir, &path, &bytes, &scan).map_err(context("cannot rewrite", &path))?;
            } else if let Some(torn_at) = scan.torn_at {
                tracing::warn!(
                    "spool file {}: torn tail of {} bytes cut off (a crash during a write)",
                    path.display(),
                    bytes.len() - torn_at
                );
                recovery.torn += 1;
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(context("cannot open", &path))?;
                file.set_len(torn_at as u64)
                    .and_then(|()| file.sync_data())
                    .map_err(context("cannot truncate", &path))?;
                size = torn_at as u64;
            }
            let end = scan
                .records
                .last()
                .map_or(first, |(meta, _, _)| meta.index + 1);
            for (meta, _, _) in &scan.records {
                last_sequence = last_sequence.max(meta.sequence);
                if meta.index >= persisted.frontier {
                    recovery.pending += 1;
                }
            }
            next_index = next_index.max(end);
            segments.push_back(Segment {
                first,
                end,
                bytes: size,
                path,
            });
        }
        let bytes = segments.iter().map(|s| s.bytes).sum();
        let frontier = persisted.frontier;
        let inner = Inner {
            segments,
            writer: None,
            buffer: Vec::new(),
            buffered: Vec::new(),
            next_index,
            written_end: next_index,
            next_take: frontier,
            window: VecDeque::new(),
            window_bytes: 0,
            frontier,
            done_ahead: BTreeSet::new(),
            persisted,
            last_sequence,
            dirty: false,
            rotated: Vec::new(),
            dir_unsynced: false,
            doomed: Vec::new(),
            reader: None,
            failed: None,
            bytes,
            corrupt_at_runtime: 0,
        };
        let spool = Spool {
            name,
            dir: dir.to_path_buf(),
            limits,
            writable,
            disk,
            inner: Mutex::new(inner),
            state_file: Mutex::new(state_file),
            syncing: Mutex::new(()),
            readable: Notify::new(),
            room: Notify::new(),
            reclaimable: Notify::new(),
            rotated: Notify::new(),
            _lock: lock,
        };
        spool.retire_done_segments();
        Ok(Opened::Spool(Box::new(spool), recovery))
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        locked(&self.inner)
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

    /// Frames a record into the append buffer, written by the next [`flush`](Self::flush) (or
    /// now, if the buffer is large). `item` is what `take` gives back while it is in memory.
    pub(crate) fn append(&self, payload: &[u8], sequence: u64, item: T) -> Result<(), Refused<T>> {
        self.append_within(payload, sequence, item, true)
    }

    /// [`append`](Self::append) past `--spool-max-bytes`: at a stop, the one line already read
    /// goes in rather than being lost or holding the stop up (issue 21 item 2). Still refused
    /// when the disk is full.
    pub(crate) fn append_over_bound(
        &self,
        payload: &[u8],
        sequence: u64,
        item: T,
    ) -> Result<(), Refused<T>> {
        self.append_within(payload, sequence, item, false)
    }

    fn append_within(
        &self,
        payload: &[u8],
        sequence: u64,
        item: T,
        bounded: bool,
    ) -> Result<(), Refused<T>> {
        let mut inner = self.lock();
        if let Some(reason) = &inner.failed {
            return Err(Refused::Failed(SpoolError::Failed(reason.clone())));
        }
        let framed = (RECORD_HEADER_BYTES + payload.len()) as u64;
        let undone = inner.next_index > inner.frontier;
        if bounded && undone && inner.bytes + framed > self.limits.max_bytes {
            return Err(Refused::Full(item));
        }
        let projected = inner
            .writer
            .as_ref()
            .map(|w| w.offset + inner.buffer.len() as u64);
        let rotate = projected.is_some_and(|size| {
            size > SEGMENT_HEADER_BYTES && size + framed > self.limits.segment_bytes
        });
        if rotate && inner.rotated.len() >= MAX_ROTATED {
            return Err(Refused::Full(item));
        }
        if rotate || inner.writer.is_none() {
            let started = self
                .write_buffer(&mut inner)
                .and_then(|()| self.start_segment(&mut inner));
            match started {
                Ok(()) => {}
                Err(Refused::Full(())) => return Err(Refused::Full(item)),
                Err(Refused::Failed(e)) => return Err(Refused::Failed(e)),
            }
        }
        let meta = RecordMeta {
            index: inner.next_index,
            appended_ms: now_ms(),
            sequence,
        };
        record::frame(&mut inner.buffer, meta, payload);
        inner.buffered.push(Windowed {
            meta,
            item,
            bytes: payload.len(),
        });
        inner.next_index += 1;
        inner.bytes += framed;
        inner.last_sequence = inner.last_sequence.max(sequence);
        if inner.buffer.len() >= FLUSH_ABOVE_BYTES {
            // The record is in: a full disk here only delays the write to the next flush.
            if let Err(Refused::Failed(e)) = self.write_buffer(&mut inner) {
                return Err(Refused::Failed(e));
            }
        }
        Ok(())
    }

    /// Gives up the records appended but not yet written (a disk still full when the drain
    /// deadline passed): their items, to be accounted for by the caller.
    pub(crate) fn abandon_buffered(&self) -> Vec<T> {
        let mut inner = self.lock();
        let bytes = inner.buffer.len() as u64;
        inner.buffer.clear();
        inner.bytes -= bytes;
        inner.next_index = inner.written_end;
        inner.buffered.drain(..).map(|w| w.item).collect()
    }

    /// Writes what was appended, with one `write()`: from then on it survives a kill.
    pub(crate) fn flush(&self) -> Result<(), Refused> {
        let mut inner = self.lock();
        self.write_buffer(&mut inner)
    }

    fn write_buffer(&self, inner: &mut Inner<T>) -> Result<(), Refused> {
        if inner.buffer.is_empty() {
            return Ok(());
        }
        if inner.writer.is_none() {
            self.start_segment(inner)?;
        }
        let Some(writer) = &inner.writer else {
            return Err(self.fail(inner, "no segment to write to".into()));
        };
        let (file, offset) = (writer.file.clone(), writer.offset);
        let (records, bytes) = match self.disk.write_at(&file, &inner.buffer, offset) {
            Ok(()) => (inner.buffered.len(), inner.buffer.len()),
            Err(e) => {
                // Whatever part of the write landed is cut off, so a retry appends whole
                // records.
                if let Err(cut) = self.disk.truncate(&file, offset) {
                    let reason = format!("cannot undo a failed write ({e}): {cut}");
                    return Err(self.fail(inner, reason));
                }
                if !record::is_full(&e) {
                    return Err(self.fail(inner, format!("cannot write to the spool: {e}")));
                }
                // A full disk: as many whole records as fit, so that delivering them makes
                // room for the rest.
                let (records, bytes) = self.write_what_fits(inner, &file, offset);
                if records == 0 {
                    // The rest goes to a new segment once there is room, so that this one
                    // can be deleted when it is done: on a full disk, that is where the room
                    // comes from. A segment with no record yet stays the one written to.
                    if inner.segments.back().is_some_and(|s| s.end > s.first) {
                        self.close_writer(inner);
                    }
                    return Err(Refused::Full(()));
                }
                (records, bytes)
            }
        };
        self.written(inner, records, bytes);
        if inner.buffered.is_empty() {
            Ok(())
        } else {
            Err(Refused::Full(()))
        }
    }

    /// After a write failed for a full disk: writes the buffered records one by one until one
    /// does not fit. Returns how many records, and bytes, were written.
    fn write_what_fits(&self, inner: &Inner<T>, file: &File, offset: u64) -> (usize, usize) {
        let mut written = 0;
        for (records, windowed) in inner.buffered.iter().enumerate() {
            let frame = &inner.buffer[written..written + RECORD_HEADER_BYTES + windowed.bytes];
            if self
                .disk
                .write_at(file, frame, offset + written as u64)
                .is_err()
            {
                let _ = self.disk.truncate(file, offset + written as u64);
                return (records, written);
            }
            written += frame.len();
        }
        (inner.buffered.len(), written)
    }

    /// The first `records` buffered records (`bytes` of the buffer) are in the file.
    fn written(&self, inner: &mut Inner<T>, records: usize, bytes: usize) {
        inner.buffer.drain(..bytes);
        if let Some(writer) = &mut inner.writer {
            writer.offset += bytes as u64;
        }
        inner.dirty = true;
        inner.written_end += records as u64;
        let written_end = inner.written_end;
        if let Some(segment) = inner.segments.back_mut() {
            segment.end = written_end;
            segment.bytes += bytes as u64;
        }
        let buffered: Vec<Windowed<T>> = inner.buffered.drain(..records).collect();
        for windowed in buffered {
            // The window holds only a contiguous run; once it overflows, the rest is read
            // from the files until it has emptied.
            let contiguous = match inner.window.back() {
                Some(back) => back.meta.index + 1 == windowed.meta.index,
                None => windowed.meta.index >= inner.next_take,
            };
            if contiguous && inner.window_bytes + windowed.bytes <= self.limits.window_bytes {
                inner.window_bytes += windowed.bytes;
                inner.window.push_back(windowed);
            }
        }
        self.readable.notify_one();
    }

    fn start_segment(&self, inner: &mut Inner<T>) -> Result<(), Refused> {
        if !self.writable {
            return Err(self.fail(inner, "this spool is only being delivered".into()));
        }
        // Buffered records go into the new segment: it starts at the first of them.
        let first = inner.written_end;
        let path = segment_path(&self.dir, first);
        let created = self.disk.create(&path).and_then(|file| {
            self.disk.write_at(&file, &record::segment_header(), 0)?;
            Ok(file)
        });
        let file = match created {
            Ok(file) => file,
            Err(e) => {
                let _ = self.disk.remove(&path);
                if record::is_full(&e) {
                    return Err(Refused::Full(()));
                }
                if is_out_of_files(&e) {
                    // Other files (connections) may close: waited out like a full disk, so
                    // nothing read is lost and the spool is not given up.
                    tracing::warn!("spool {}: cannot create {}: {e}", self.name, path.display());
                    return Err(Refused::Full(()));
                }
                return Err(self.fail(inner, format!("cannot create {}: {e}", path.display())));
            }
        };
        self.close_writer(inner);
        // The new name must survive a crash along with the data written to it: the directory
        // is synced with the data, by the next sync, off this thread (issue 21 item 6).
        inner.dir_unsynced |= self.limits.sync != SyncPolicy::Off;
        inner.dirty = true;
        inner.writer = Some(Writer {
            first,
            file: Arc::new(file),
            offset: SEGMENT_HEADER_BYTES,
        });
        inner.segments.push_back(Segment {
            first,
            end: first,
            bytes: SEGMENT_HEADER_BYTES,
            path,
        });
        inner.bytes += SEGMENT_HEADER_BYTES;
        Ok(())
    }

    fn fail(&self, inner: &mut Inner<T>, reason: String) -> Refused {
        tracing::error!(
            "spool {}: {reason}; no more messages are acknowledged",
            self.name
        );
        inner.failed.get_or_insert(reason.clone());
        Refused::Failed(SpoolError::Failed(reason))
    }

    /// Stops writing to the current segment (rotation, or a full disk): its file is closed
    /// now under `off` or when nothing in it is unsynced, or else by the next sync, after
    /// syncing it (issue 21 item 1: a rotated file was kept open until a sync that `off`, and
    /// `strict` in plain mode, never made).
    fn close_writer(&self, inner: &mut Inner<T>) {
        let Some(writer) = inner.writer.take() else {
            return;
        };
        if std::mem::take(&mut inner.dirty) && self.limits.sync != SyncPolicy::Off {
            inner.rotated.push(Rotated {
                first: writer.first,
                file: writer.file,
            });
            self.rotated.notify_one();
        }
    }

    /// Something written is not yet durable (what `sync` would do).
    pub(crate) fn needs_sync(&self) -> bool {
        let inner = self.lock();
        inner.dirty || inner.dir_unsynced || !inner.rotated.is_empty()
    }

    /// fdatasync of every file written since the last sync (and of the directory, for new
    /// segments); the rotated ones are closed after. Returns once everything written before
    /// the call is durable. On failure the spool is failed for good: what the kernel could not
    /// write is not known, so it is never retried as success.
    pub(crate) fn sync(&self) -> Result<(), SpoolError> {
        self.sync_files(true)
    }

    /// Syncs and closes the rotated segments only (and the directory): what the maintenance
    /// task does at once after a rotation, so that files never pile up open.
    pub(crate) fn sync_rotated(&self) -> Result<(), SpoolError> {
        self.sync_files(false)
    }

    fn sync_files(&self, writer_too: bool) -> Result<(), SpoolError> {
        let _syncing = locked(&self.syncing);
        let (dir, files) = {
            let mut inner = self.lock();
            let mut files: Vec<Arc<File>> = inner.rotated.drain(..).map(|r| r.file).collect();
            if writer_too && std::mem::take(&mut inner.dirty) {
                files.extend(inner.writer.as_ref().map(|w| w.file.clone()));
            }
            (std::mem::take(&mut inner.dir_unsynced), files)
        };
        let rotated = !files.is_empty();
        let synced = if dir {
            self.disk.sync_dir(&self.dir)
        } else {
            Ok(())
        }
        .and_then(|()| files.iter().try_for_each(|file| self.disk.sync_data(file)));
        // The rotated files close here, synced or not.
        drop(files);
        if let Err(e) = synced {
            let reason = format!("cannot sync the spool: {e}");
            let mut inner = self.lock();
            let _ = self.fail(&mut inner, reason.clone());
            return Err(SpoolError::Failed(reason));
        }
        if rotated {
            // Appends held back by too many rotated files can go on.
            self.room.notify_waiters();
        }
        Ok(())
    }

    /// The next record for delivery, if one is written and not yet taken.
    pub(crate) fn take(&self) -> Option<Taken<T>> {
        let mut inner = self.lock();
        loop {
            if inner.next_take >= inner.written_end {
                return None;
            }
            let index = inner.next_take;
            while inner.window.front().is_some_and(|w| w.meta.index < index) {
                if let Some(stale) = inner.window.pop_front() {
                    inner.window_bytes -= stale.bytes;
                }
            }
            if inner.window.front().is_some_and(|w| w.meta.index == index)
                && let Some(windowed) = inner.window.pop_front()
            {
                inner.window_bytes -= windowed.bytes;
                inner.next_take = index + 1;
                return Some(Taken {
                    meta: windowed.meta,
                    body: Body::Item(windowed.item),
                });
            }
            match self.read_from_disk(&mut inner, index) {
                Ok((meta, payload)) => {
                    // Indices without a record (skipped as corrupt at recovery) count as done.
                    for missing in index..meta.index {
                        self.mark_done(&mut inner, missing);
                    }
                    inner.next_take = meta.index + 1;
                    return Some(Taken {
                        meta,
                        body: Body::Payload(payload),
                    });
                }
                Err(ReadFailure::Io(e)) => {
                    // Not the data's fault (say, out of file descriptors): try again later.
                    inner.reader = None;
                    tracing::error!("spool {}: cannot read record {index} back: {e}", self.name);
                    return None;
                }
                Err(ReadFailure::Corrupt) => {
                    // Damaged after it was written and checked: given up, counted, and never a
                    // reason to stop.
                    let skip_to = inner
                        .segments
                        .iter()
                        .find(|s| s.end > index)
                        .map_or(inner.written_end, |s| s.end.max(index + 1))
                        .min(inner.written_end);
                    tracing::error!(
                        "spool {}: records {index} to {} are damaged and cannot be read back; skipped",
                        self.name,
                        skip_to - 1
                    );
                    inner.corrupt_at_runtime += skip_to - index;
                    for missing in index..skip_to {
                        self.mark_done(&mut inner, missing);
                    }
                    inner.next_take = skip_to;
                    inner.reader = None;
                }
            }
        }
    }

    /// The first good record at or after `index`, from the segment files.
    fn read_from_disk(
        &self,
        inner: &mut Inner<T>,
        index: u64,
    ) -> Result<(RecordMeta, Vec<u8>), ReadFailure> {
        let segment = inner
            .segments
            .iter()
            .find(|s| s.end > index)
            .ok_or(ReadFailure::Corrupt)?;
        let (first, path) = (segment.first, segment.path.clone());
        let positioned = inner
            .reader
            .as_ref()
            .is_some_and(|r| r.segment_first == first && r.next <= index);
        if !positioned {
            let mut file = self.disk.open(&path).map_err(ReadFailure::Io)?;
            file.seek(SeekFrom::Start(SEGMENT_HEADER_BYTES))
                .map_err(ReadFailure::Io)?;
            inner.reader = Some(Reader {
                segment_first: first,
                file: BufReader::with_capacity(128 * 1024, file),
                next: first,
            });
        }
        let reader = inner.reader.as_mut().ok_or(ReadFailure::Corrupt)?;
        let read = |file: &mut BufReader<File>, buffer: &mut [u8]| {
            file.read_exact(buffer).map_err(|e| match e.kind() {
                // Records below written_end are whole in the file: short means damaged.
                io::ErrorKind::UnexpectedEof => ReadFailure::Corrupt,
                _ => ReadFailure::Io(e),
            })
        };
        loop {
            let mut header_bytes = [0u8; RECORD_HEADER_BYTES];
            read(&mut reader.file, &mut header_bytes)?;
            let header = record::parse_header(&header_bytes);
            if header.len > record::MAX_PAYLOAD_BYTES {
                return Err(ReadFailure::Corrupt);
            }
            let mut payload = vec![0; header.len as usize];
            read(&mut reader.file, &mut payload)?;
            if !header.matches(&header_bytes, &payload) {
                return Err(ReadFailure::Corrupt);
            }
            reader.next = header.meta.index + 1;
            if header.meta.index >= index {
                return Ok((header.meta, payload));
            }
        }
    }

    /// A record was delivered, or dead-lettered.
    pub(crate) fn done(&self, index: u64) {
        let mut inner = self.lock();
        self.mark_done(&mut inner, index);
    }

    fn mark_done(&self, inner: &mut Inner<T>, index: u64) {
        if index < inner.frontier {
            return;
        }
        if index > inner.frontier {
            inner.done_ahead.insert(index);
            return;
        }
        inner.frontier += 1;
        while inner.done_ahead.remove(&inner.frontier) {
            inner.frontier += 1;
        }
        if inner
            .segments
            .front()
            .is_some_and(|s| s.end <= inner.frontier)
        {
            self.reclaimable.notify_one();
        }
    }

    /// Stores the frontier (synced unless the policy is off), then deletes the segments below
    /// it, so a crash in between never brings a deleted record back as not done, nor makes one
    /// look done that is not. Blocking.
    pub(crate) fn reclaim(&self) -> Result<(), SpoolError> {
        let mut state_file = locked(&self.state_file);
        let (state, changed) = {
            let mut inner = self.lock();
            self.retire_locked(&mut inner);
            let state = State {
                frontier: inner.frontier,
                last_sequence: inner.last_sequence,
            };
            (state, state != inner.persisted || !inner.doomed.is_empty())
        };
        if !changed {
            return Ok(());
        }
        let sync = self.limits.sync != SyncPolicy::Off;
        let stored = state_file.store(state, sync, &*self.disk);
        if let Err(e) = stored {
            if record::is_full(&e) {
                // Tried again at the next reclaim; until then nothing is deleted.
                tracing::warn!("spool {}: cannot store its state yet: {e}", self.name);
                return Ok(());
            }
            let reason = format!("cannot store the spool state: {e}");
            let mut inner = self.lock();
            let _ = self.fail(&mut inner, reason.clone());
            return Err(SpoolError::Failed(reason));
        }
        let doomed = {
            let mut inner = self.lock();
            inner.persisted = state;
            let (gone, kept): (Vec<Segment>, Vec<Segment>) = std::mem::take(&mut inner.doomed)
                .into_iter()
                .partition(|s| s.end <= state.frontier);
            inner.doomed = kept;
            gone
        };
        if doomed.is_empty() {
            return Ok(());
        }
        let mut freed = 0;
        for segment in doomed {
            match self.disk.remove(&segment.path) {
                Ok(()) => freed += segment.bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => freed += segment.bytes,
                Err(e) => tracing::warn!(
                    "cannot delete delivered spool file {}: {e}",
                    segment.path.display()
                ),
            }
        }
        self.lock().bytes -= freed;
        self.room.notify_waiters();
        Ok(())
    }

    fn retire_done_segments(&self) {
        let mut inner = self.lock();
        self.retire_locked(&mut inner);
    }

    /// Moves fully done segments to `doomed`. The segment being written goes too once all of
    /// it is done and nothing is buffered: the next append starts a new one.
    fn retire_locked(&self, inner: &mut Inner<T>) {
        while let Some(front) = inner.segments.front() {
            if front.end > inner.frontier {
                break;
            }
            if inner.segments.len() == 1 && inner.writer.is_some() {
                // The segment being written: only once nothing more is coming for it.
                if !inner.buffer.is_empty() || inner.next_index > inner.frontier {
                    break;
                }
                // Done: nothing in it needs to be durable any more.
                inner.writer = None;
                inner.dirty = false;
            }
            if let Some(segment) = inner.segments.pop_front() {
                // Closed before it is deleted, so its blocks go with its name.
                inner.rotated.retain(|r| r.first != segment.first);
                if inner
                    .reader
                    .as_ref()
                    .is_some_and(|r| r.segment_first == segment.first)
                {
                    inner.reader = None;
                }
                inner.doomed.push(segment);
            }
        }
    }

    /// Records skipped at run time because they could not be read back.
    pub(crate) fn corrupt_at_runtime(&self) -> u64 {
        self.lock().corrupt_at_runtime
    }

    /// Deletes the spool's files and directory (an adopted spool with nothing left), under
    /// its lock, so no other process adopts it meanwhile.
    pub(crate) fn remove(&self) -> io::Result<()> {
        std::fs::remove_dir_all(&self.dir)
    }
}

/// Keeps a bad file for inspection under `aside/`, out of the spool's way.
fn move_aside(dir: &Path, path: &Path) -> io::Result<()> {
    let aside = dir.join("aside");
    std::fs::create_dir_all(&aside)?;
    let name = path.file_name().unwrap_or_default();
    std::fs::rename(path, aside.join(name))?;
    sync_dir(dir)
}

/// Replaces a segment with a copy of its good records; the original goes to `aside/`. A crash
/// at any point leaves either the original or the copy under the segment's name.
fn rewrite(dir: &Path, path: &Path, bytes: &[u8], scan: &record::Scan) -> io::Result<u64> {
    let mut copy = record::segment_header().to_vec();
    for &(_, start, end) in &scan.records {
        copy.extend_from_slice(&bytes[start..end]);
    }
    let temporary = path.with_extension("log.tmp");
    let file = File::create(&temporary)?;
    file.write_all_at(&copy, 0)?;
    file.sync_data()?;
    let aside = dir.join("aside");
    std::fs::create_dir_all(&aside)?;
    let kept = aside.join(path.file_name().unwrap_or_default());
    let _ = std::fs::remove_file(&kept);
    std::fs::hard_link(path, &kept)?;
    std::fs::rename(&temporary, path)?;
    sync_dir(dir)?;
    Ok(copy.len() as u64)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::super::{Limits, Spools, SyncPolicy};
    use super::*;

    fn limits(window_bytes: usize) -> Limits {
        Limits {
            max_bytes: 64 * 1024,
            segment_bytes: 8 * 1024,
            window_bytes,
            sync: SyncPolicy::Interval,
        }
    }

    fn payload(id: u64, len: usize) -> Vec<u8> {
        let mut bytes = id.to_le_bytes().to_vec();
        bytes.resize(8 + len, b'x');
        bytes
    }

    fn id_of(body: Body<Vec<u8>>) -> u64 {
        let bytes = match body {
            Body::Item(bytes) | Body::Payload(bytes) => bytes,
        };
        u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
    }

    fn open(dir: &Path, window_bytes: usize) -> Spools<Vec<u8>> {
        Spools::open(dir, limits(window_bytes)).expect("open spools")
    }

    fn append(spool: &Spool<Vec<u8>>, id: u64) {
        let bytes = payload(id, 100);
        match spool.append(&bytes, id, bytes.clone()) {
            Ok(()) => {}
            Err(Refused::Full(_)) => panic!("full"),
            Err(Refused::Failed(e)) => panic!("{e}"),
        }
    }

    /// Takes everything available, marking each done; the ids in order.
    fn drain(spool: &Spool<Vec<u8>>) -> Vec<u64> {
        let mut ids = Vec::new();
        while let Some(taken) = spool.take() {
            spool.done(taken.meta.index);
            ids.push(id_of(taken.body));
        }
        ids
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.to_string_lossy().ends_with(".log"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn a_restart_delivers_what_was_written_and_not_done() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spools = open(dir.path(), 1 << 20);
        for id in 1..=10 {
            append(&spools.own, id);
        }
        spools.own.flush().expect("flush");
        // Five delivered and recorded; two more delivered, not recorded; then a kill.
        for _ in 0..5 {
            let taken = spools.own.take().expect("taken");
            spools.own.done(taken.meta.index);
        }
        spools.own.reclaim().expect("reclaim");
        for _ in 0..2 {
            let taken = spools.own.take().expect("taken");
            spools.own.done(taken.meta.index);
        }
        append(&spools.own, 11); // buffered, never written: not acknowledged
        let name = spools.own.name.clone();
        drop(spools);

        let spools = open(dir.path(), 1 << 20);
        assert_eq!(
            spools.own.name, name,
            "the dead owner's spool is taken over"
        );
        assert_eq!(spools.recovered.pending, 5);
        assert_eq!(spools.own.last_sequence(), 10);
        assert_eq!(drain(&spools.own), [6, 7, 8, 9, 10]);
    }

    #[test]
    fn the_window_overflows_into_reads_from_the_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Room for three records in memory.
        let spools = open(dir.path(), 350);
        for id in 1..=300 {
            append(&spools.own, id);
            if id % 7 == 0 {
                spools.own.flush().expect("flush");
            }
        }
        spools.own.flush().expect("flush");
        let ids = drain(&spools.own);
        assert_eq!(ids, (1..=300).collect::<Vec<_>>());
        assert!(segment_files(dir.path().join(&spools.own.name).as_path()).len() > 1);
        spools.own.reclaim().expect("reclaim");
        assert_eq!(spools.own.pending(), 0);
        assert!(segment_files(dir.path().join(&spools.own.name).as_path()).is_empty());
        assert_eq!(spools.own.bytes(), 0);
    }

    #[test]
    fn a_full_spool_refuses_until_reclaimed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spools = open(dir.path(), 1 << 20);
        let bytes = payload(0, 1000);
        let mut accepted = 0u64;
        loop {
            match spools.own.append(&bytes, 0, bytes.clone()) {
                Ok(()) => accepted += 1,
                Err(Refused::Full(_)) => break,
                Err(Refused::Failed(e)) => panic!("{e}"),
            }
        }
        assert!(spools.own.bytes() <= 64 * 1024);
        assert!(accepted > 40, "{accepted}");
        spools.own.flush().expect("flush");
        assert_eq!(drain(&spools.own).len() as u64, accepted);
        spools.own.reclaim().expect("reclaim");
        assert!(spools.own.append(&bytes, 0, bytes.clone()).is_ok());
    }

    #[test]
    fn a_torn_tail_is_cut_and_a_corrupt_record_set_aside() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spools = open(dir.path(), 1 << 20);
        for id in 1..=5 {
            append(&spools.own, id);
        }
        spools.own.flush().expect("flush");
        let spool_dir = dir.path().join(&spools.own.name);
        drop(spools);
        let segment = segment_files(&spool_dir).pop().expect("one segment");
        let mut bytes = std::fs::read(&segment).expect("read");
        // Record 2 damaged; half a record at the end.
        let scan = record::scan(&bytes);
        let (_, second, _) = scan.records[1];
        bytes[second + RECORD_HEADER_BYTES + 3] ^= 1;
        let (_, last, end) = scan.records[4];
        let half = bytes[last..end - 10].to_owned();
        bytes.extend_from_slice(&half);
        std::fs::write(&segment, &bytes).expect("write");

        let spools = open(dir.path(), 1 << 20);
        assert_eq!(
            spools.recovered,
            Recovery {
                pending: 4,
                corrupt: 1,
                torn: 0
            }
        );
        assert_eq!(drain(&spools.own), [1, 3, 4, 5]);
        assert!(
            spool_dir
                .join("aside")
                .join(segment.file_name().expect("name"))
                .exists()
        );
        spools.own.reclaim().expect("reclaim");
        drop(spools);

        // Only a torn tail: cut off, nothing set aside.
        let spools = open(dir.path(), 1 << 20);
        append(&spools.own, 6);
        spools.own.flush().expect("flush");
        drop(spools);
        let segment = segment_files(&spool_dir).pop().expect("segment");
        let mut bytes = std::fs::read(&segment).expect("read");
        bytes.extend_from_slice(&[0x55; 20]);
        std::fs::write(&segment, &bytes).expect("write");
        let spools = open(dir.path(), 1 << 20);
        assert_eq!(spools.recovered.torn, 1);
        assert_eq!(drain(&spools.own), [6]);
    }

    #[test]
    fn a_spool_from_a_newer_format_is_left_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spools = open(dir.path(), 1 << 20);
        append(&spools.own, 1);
        spools.own.flush().expect("flush");
        let old = spools.own.name.clone();
        drop(spools);
        let segment = segment_files(&dir.path().join(&old))
            .pop()
            .expect("segment");
        let mut bytes = std::fs::read(&segment).expect("read");
        bytes[8] = 9;
        std::fs::write(&segment, &bytes).expect("write");
        let spools = open(dir.path(), 1 << 20);
        assert_ne!(spools.own.name, old);
        assert!(spools.adopted.is_empty());
        assert_eq!(std::fs::read(&segment).expect("untouched"), bytes);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(usize),
        Flush,
        Sync,
        Take,
        /// Marks the n-th (mod count) taken, undone record done.
        Done(usize),
        Reclaim,
        Kill,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0usize..600).prop_map(Op::Append),
            2 => Just(Op::Flush),
            1 => Just(Op::Sync),
            4 => Just(Op::Take),
            4 => (0usize..64).prop_map(Op::Done),
            1 => Just(Op::Reclaim),
            1 => Just(Op::Kill),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever happens, a record written (flushed) is delivered (marked done) or still
        /// comes out after a restart; nothing comes out that was never appended.
        #[test]
        fn nothing_written_is_lost(ops in proptest::collection::vec(op(), 1..200), window in prop_oneof![Just(300usize), Just(1 << 20)]) {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut spools = open(dir.path(), window);
            let mut next_id = 0u64;
            let mut appended = BTreeSet::new();
            let mut buffered = Vec::new();
            let mut written = BTreeSet::new();
            let mut delivered = BTreeSet::new();
            let mut taken: Vec<(u64, u64)> = Vec::new();
            for op in ops {
                match op {
                    Op::Append(len) => {
                        next_id += 1;
                        let bytes = payload(next_id, len);
                        match spools.own.append(&bytes, next_id, bytes.clone()) {
                            Ok(()) => {
                                appended.insert(next_id);
                                buffered.push(next_id);
                            }
                            Err(Refused::Full(_)) => {}
                            Err(Refused::Failed(e)) => panic!("{e}"),
                        }
                        // A large buffer is written at once.
                        if spools.own.lock().buffer.is_empty() {
                            written.extend(buffered.drain(..));
                        }
                    }
                    Op::Flush => {
                        spools.own.flush().expect("flush");
                        written.extend(buffered.drain(..));
                    }
                    Op::Sync => spools.own.sync().expect("sync"),
                    Op::Take => {
                        if let Some(t) = spools.own.take() {
                            let id = id_of(t.body);
                            prop_assert!(appended.contains(&id), "{id} never appended");
                            taken.push((t.meta.index, id));
                        }
                    }
                    Op::Done(n) => {
                        if !taken.is_empty() {
                            let (index, id) = taken.remove(n % taken.len());
                            spools.own.done(index);
                            delivered.insert(id);
                        }
                    }
                    Op::Reclaim => spools.own.reclaim().expect("reclaim"),
                    Op::Kill => {
                        drop(spools);
                        spools = open(dir.path(), window);
                        buffered.clear();
                        taken.clear();
                    }
                }
            }
            drop(spools);
            let spools = open(dir.path(), window);
            let rest: BTreeSet<u64> = drain(&spools.own).into_iter().collect();
            for id in &written {
                prop_assert!(delivered.contains(id) || rest.contains(id), "{id} was lost");
            }
            for id in &rest {
                prop_assert!(appended.contains(id), "{id} never appended");
            }
        }
    }
}
