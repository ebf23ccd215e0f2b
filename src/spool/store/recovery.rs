//! Recovery at open: the state read, segments scanned, torn tails cut, corrupt records set aside.

use super::super::scan::{CHUNK_BYTES, Scan, SegmentFile, Source as _};
use super::judge::{self, Action, Examined};
use super::*;

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
        let (state_file, loaded) = disk
            .open_state(&state_path)
            .and_then(StateFile::from_file)
            .map_err(context("cannot open", &state_path))?;
        let (persisted, lease) = match loaded {
            Loaded::State(state, lease) => (state, lease),
            Loaded::Future(version) => return Ok(Opened::Future(version)),
        };
        let firsts = judge::segment_firsts(&*disk, dir)?;
        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        let mut last_sequence = 0;
        let mut next_index = persisted.frontier;
        let nexts: Vec<Option<u64>> = (0..firsts.len())
            .map(|i| firsts.get(i + 1).copied())
            .collect();
        for (first, next) in firsts.into_iter().zip(nexts) {
            let path = segment_path(dir, first);
            let judged = match judge::judge(&*disk, &path, first, next, persisted.frontier)? {
                Examined::Judged(judged) => judged,
                Examined::Future(version) => return Ok(Opened::Future(version)),
            };
            recovery.corrupt += judged.corrupt;
            recovery.lost += judged.lost;
            recovery.torn += judged.torn;
            let scan = &judged.scan;
            let mut skips = Vec::new();
            let size = match (judged.action, &judged.file) {
                (Action::MoveAside, _) => {
                    move_aside(dir, &path).map_err(context("cannot move aside", &path))?;
                    continue;
                }
                (Action::Delete, _) => {
                    std::fs::remove_file(&path).map_err(context("cannot delete", &path))?;
                    continue;
                }
                (Action::Rewrite, Some(file)) => {
                    let source = SegmentFile {
                        disk: &*disk,
                        file,
                        len: judged.len,
                    };
                    match rewrite(dir, &path, &source, scan) {
                        Ok(rewritten) => rewritten,
                        // A full disk: the damage stays where it is and reads pass over it, so
                        // recovery needs no room to go on (issue 21 item 14).
                        Err(e) if record::is_full(&e) => {
                            tracing::warn!(
                                "spool file {}: no room to rewrite it ({e}); its damaged stretches are passed over in place",
                                path.display()
                            );
                            skips = scan.damaged_stretches();
                            judged.len
                        }
                        Err(e) => return Err(context("cannot rewrite", &path)(e)),
                    }
                }
                (Action::Cut(torn_at), _) => {
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(context("cannot open", &path))?;
                    file.set_len(torn_at)
                        .and_then(|()| file.sync_data())
                        .map_err(context("cannot truncate", &path))?;
                    torn_at
                }
                _ => judged.len,
            };
            let end = scan.end(first);
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
                skips,
            });
        }
        let bytes = segments.iter().map(|s| s.bytes).sum();
        let frontier = persisted.frontier;
        let (last_sequence, leased, floor) =
            lease::resumed(persisted.last_sequence, last_sequence, lease, &*disk);
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
            leased,
            floor,
            lease_ahead: lease::MIN_AHEAD,
            leased_at: None,
            sequencing: false,
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
            budget: std::sync::OnceLock::new(),
            inner: Mutex::new(inner),
            state_file: Mutex::new(state_file),
            syncing: Mutex::new(()),
            readable: Notify::new(),
            room: Notify::new(),
            reclaimable: Notify::new(),
            rotated: Notify::new(),
            lease_low: Notify::new(),
            _lock: lock,
        };
        spool.retire_done_segments();
        Ok(Opened::Spool(Box::new(spool), recovery))
    }
}

/// Keeps a bad file for inspection under `aside/`, out of the spool's way.
pub(super) fn move_aside(dir: &Path, path: &Path) -> io::Result<()> {
    let aside = dir.join("aside");
    super::super::trust::create_dir_all(&aside)?;
    let name = path.file_name().unwrap_or_default();
    std::fs::rename(path, aside.join(name))?;
    sync_dir(dir)
}

/// Replaces a segment with a copy of its good records; the original goes to `aside/`. A crash
/// at any point leaves either the original or the copy under the segment's name. The copy is
/// written through `disk`; on failure it is removed, so a full disk is left as it was.
pub(super) fn rewrite(
    dir: &Path,
    path: &Path,
    source: &SegmentFile,
    scan: &Scan,
) -> io::Result<u64> {
    let temporary = path.with_extension("log.tmp");
    let _ = std::fs::remove_file(&temporary);
    let disk = source.disk;
    let written = disk.create(&temporary).and_then(|file| {
        let copied = copy_records(source, scan, &file)?;
        disk.sync_data(&file)?;
        Ok(copied)
    });
    let copied = match written {
        Ok(copied) => copied,
        Err(e) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(e);
        }
    };
    let aside = dir.join("aside");
    super::super::trust::create_dir_all(&aside)?;
    let kept = aside.join(path.file_name().unwrap_or_default());
    let _ = std::fs::remove_file(&kept);
    std::fs::hard_link(path, &kept)?;
    std::fs::rename(&temporary, path)?;
    sync_dir(dir)?;
    Ok(copied)
}

/// Writes the segment header and `scan`'s good records from `source` to `file`, a chunk at
/// a time: the size written.
fn copy_records(source: &SegmentFile, scan: &Scan, file: &File) -> io::Result<u64> {
    source.disk.write_at(file, &record::segment_header(), 0)?;
    let mut written = SEGMENT_HEADER_BYTES;
    let mut chunk = Vec::new();
    for &(_, start, end) in &scan.records {
        let mut at = start;
        while at < end {
            let size = usize::try_from(end - at).map_or(CHUNK_BYTES, |n| n.min(CHUNK_BYTES));
            chunk.resize(size, 0);
            if source.read_at(&mut chunk, at)? < size {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            source.disk.write_at(file, &chunk, written)?;
            written += size as u64;
            at += size as u64;
        }
    }
    Ok(written)
}
