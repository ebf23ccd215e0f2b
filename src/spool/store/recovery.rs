//! Recovery at open: the state read, segments scanned, torn tails cut, corrupt records set aside.

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
        let (state_file, loaded) =
            StateFile::open(&state_path).map_err(context("cannot open", &state_path))?;
        let (persisted, lease) = match loaded {
            Loaded::State(state, lease) => (state, lease),
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
        let mut last_sequence = 0;
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
            let bytes = std::fs::read(&path).map_err(context("cannot read", &path))?;
            match record::segment_kind(&bytes) {
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
            let scan = record::scan(&bytes, first);
            if scan.records.is_empty() && scan.corrupt == 0 {
                // Only a header (and maybe a torn first record): nothing to keep.
                recovery.lost += lost_before_next(first, next);
                std::fs::remove_file(&path).map_err(context("cannot delete", &path))?;
                continue;
            }
            let mut size = bytes.len() as u64;
            let mut skips = Vec::new();
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
                match rewrite(dir, &path, &bytes, &scan, &*disk) {
                    Ok(rewritten) => size = rewritten,
                    // A full disk: the damage stays where it is and reads pass over it, so
                    // recovery needs no room to go on (issue 21 item 14).
                    Err(e) if record::is_full(&e) => {
                        tracing::warn!(
                            "spool file {}: no room to rewrite it ({e}); its damaged stretches are passed over in place",
                            path.display()
                        );
                        skips = record::damaged_stretches(&scan, bytes.len());
                    }
                    Err(e) => return Err(context("cannot rewrite", &path)(e)),
                }
            } else if let Some(torn_at) = scan.torn_at {
                tracing::warn!(
                    "spool file {}: torn tail of {} bytes cut off (a crash during a write)",
                    path.display(),
                    bytes.len() - torn_at
                );
                recovery.torn += 1;
                let kept_end = scan
                    .records
                    .last()
                    .map_or(first, |(meta, _, _)| meta.index + 1);
                recovery.lost += lost_before_next(kept_end, next);
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
    bytes: &[u8],
    scan: &record::Scan,
    disk: &dyn Disk,
) -> io::Result<u64> {
    let mut copy = record::segment_header().to_vec();
    for &(_, start, end) in &scan.records {
        copy.extend_from_slice(&bytes[start..end]);
    }
    let temporary = path.with_extension("log.tmp");
    let _ = std::fs::remove_file(&temporary);
    let written = disk.create(&temporary).and_then(|file| {
        disk.write_at(&file, &copy, 0)?;
        disk.sync_data(&file)
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    let aside = dir.join("aside");
    super::super::trust::create_dir_all(&aside)?;
    let kept = aside.join(path.file_name().unwrap_or_default());
    let _ = std::fs::remove_file(&kept);
    std::fs::hard_link(path, &kept)?;
    std::fs::rename(&temporary, path)?;
    sync_dir(dir)?;
    Ok(copy.len() as u64)
}
