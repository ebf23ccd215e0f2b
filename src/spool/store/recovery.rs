//! Recovery at open: the state read, segments scanned, torn tails cut, corrupt records set aside.

use super::super::disk;
use super::super::scan::{self, CHUNK_BYTES, Scan, SegmentFile, Source as _};
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
        let persisted = match loaded {
            Loaded::State(state) => state,
            Loaded::Future(version) => return Ok(Opened::Future(version)),
        };
        let mut firsts = Vec::new();
        for file_name in disk.list(dir).map_err(context("cannot list", dir))? {
            if file_name.ends_with(".tmp") {
                // A rewrite that a crash interrupted; the original is still in place.
                let _ = disk.remove(&dir.join(&file_name));
            } else if let Some(first) = segment_first(&file_name) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        let mut last_sequence = persisted.last_sequence;
        let mut next_index = persisted.frontier;
        // The indices a segment held end where the next one starts: what a damaged header or
        // a cut tail of a segment that is not the last cost is known, and lost (issue 21 item 9).
        let nexts: Vec<Option<u64>> = (0..firsts.len())
            .map(|i| firsts.get(i + 1).copied())
            .collect();
        let lost_before_next = |from: u64, next: Option<u64>| {
            next.map_or(0, |next| next.saturating_sub(from.max(persisted.frontier)))
        };
        for (first, next) in firsts.into_iter().zip(nexts) {
            let path = segment_path(dir, first);
            let file = match disk.open(&path) {
                Ok(file) => file,
                Err(e) if disk::is_not_regular(&e) => {
                    // Never read: it could block, or never end (issue 28: a link to /dev/zero).
                    tracing::error!("spool file {} is {e}; moved aside", path.display());
                    recovery.corrupt += 1;
                    recovery.lost += lost_before_next(first, next);
                    move_aside(dir, &path).map_err(context("cannot move aside", &path))?;
                    continue;
                }
                Err(e) => return Err(context("cannot open", &path)(e)),
            };
            let len = file
                .metadata()
                .map_err(context("cannot read", &path))?
                .len();
            let source = SegmentFile {
                disk: &*disk,
                file: &file,
                len,
            };
            match scan::segment_kind(&source).map_err(context("cannot read", &path))? {
                SegmentKind::Future(version) => return Ok(Opened::Future(version)),
                SegmentKind::Unknown => {
                    tracing::error!(
                        "spool file {} is not a spool segment; moved aside",
                        path.display()
                    );
                    recovery.corrupt += 1;
                    recovery.lost += lost_before_next(first, next);
                    move_aside(dir, &path).map_err(context("cannot move aside", &path))?;
                    continue;
                }
                SegmentKind::Current => {}
            }
            let scan = scan::scan(&source, first).map_err(context("cannot read", &path))?;
            if scan.records.is_empty() && scan.corrupt == 0 {
                // Only a header (and maybe a torn first record): nothing to keep.
                recovery.lost += lost_before_next(first, next);
                std::fs::remove_file(&path).map_err(context("cannot delete", &path))?;
                continue;
            }
            let mut size = len;
            if scan.corrupt > 0 {
                tracing::error!(
                    "spool file {}: {} corrupt records skipped; the file is kept in aside/",
                    path.display(),
                    scan.corrupt
                );
                recovery.corrupt += scan.corrupt;
                recovery.lost += scan
                    .lost
                    .iter()
                    .map(|&(from, to)| to.saturating_sub(from.max(persisted.frontier)))
                    .sum::<u64>();
                if scan.torn_at.is_some() || scan.exhausted {
                    // The copy ends at the last good record: what followed it is gone too.
                    recovery.lost += lost_before_next(scan.end(first), next);
                }
                size = rewrite(dir, &path, &source, &scan)
                    .map_err(context("cannot rewrite", &path))?;
            } else if let Some(torn_at) = scan.torn_at {
                if scan.zero_tail {
                    tracing::warn!(
                        "spool file {}: zero tail of {} bytes cut off (the file grew, and a crash came before its data was written)",
                        path.display(),
                        len - torn_at
                    );
                } else {
                    tracing::warn!(
                        "spool file {}: torn tail of {} bytes cut off (a crash during a write)",
                        path.display(),
                        len - torn_at
                    );
                }
                recovery.torn += 1;
                recovery.lost += lost_before_next(scan.end(first), next);
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(context("cannot open", &path))?;
                file.set_len(torn_at)
                    .and_then(|()| file.sync_data())
                    .map_err(context("cannot truncate", &path))?;
                size = torn_at;
            }
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
/// at any point leaves either the original or the copy under the segment's name.
pub(super) fn rewrite(
    dir: &Path,
    path: &Path,
    source: &SegmentFile,
    scan: &Scan,
) -> io::Result<u64> {
    let temporary = path.with_extension("log.tmp");
    let file = super::super::trust::file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)?;
    let copied = copy_records(source, scan, &file)?;
    file.sync_data()?;
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
    file.write_all_at(&record::segment_header(), 0)?;
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
            file.write_all_at(&chunk, written)?;
            written += size as u64;
            at += size as u64;
        }
    }
    Ok(written)
}
