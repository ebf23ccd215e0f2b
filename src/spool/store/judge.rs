//! Recovery's reading half: each segment file read through the disk seam, a chunk at a time,
//! and judged (kept, cut, rewritten, moved aside, deleted) with what it cost counted; nothing
//! is changed here. `recovery` applies the judgement; the recovery fuzz target
//! (`spool::fuzzing`) checks it on files in memory (issue 28).

use super::super::disk;
use super::super::scan::{self, Scan, SegmentFile};
use super::*;

/// What recovery does with a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Keep,
    /// Cut off at this size: a torn or zero tail.
    Cut(u64),
    /// Replaced by a copy of its good records, the original kept in `aside/`.
    Rewrite,
    /// Not a segment, or not a regular file: out of the spool's way, into `aside/`.
    MoveAside,
    /// A header and nothing else.
    Delete,
}

/// A segment file judged.
pub(crate) struct Judged {
    pub action: Action,
    /// The good records (none unless kept, cut or rewritten).
    pub scan: Scan,
    /// The file as opened, and its size.
    pub file: Option<File>,
    pub len: u64,
    /// What it costs, for [`Recovery`] (`pending` is counted from the records kept).
    pub corrupt: u64,
    pub lost: u64,
    pub torn: u64,
}

pub(crate) enum Examined {
    Judged(Judged),
    /// Written by a newer format: the whole spool is left alone.
    Future(u32),
}

/// The first indices of the segment files in `dir`, in order; a rewrite's temporary copy that
/// a crash left (the original is still in place) is removed.
pub(crate) fn segment_firsts(disk: &dyn Disk, dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let names = disk
        .list(dir)
        .map_err(|e| SpoolError::Io(format!("cannot list {}", dir.display()), e))?;
    let mut firsts = Vec::new();
    for name in names {
        if name.ends_with(".tmp") {
            let _ = disk.remove(&dir.join(&name));
        } else if let Some(first) = segment_first(&name) {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// Reads the segment at `path` (holding indices from `first`; the next segment starts at
/// `next`) and judges it; every index from `frontier` on that it cost is counted lost. Logs
/// what is wrong with it, one line.
pub(crate) fn judge(
    disk: &dyn Disk,
    path: &Path,
    first: u64,
    next: Option<u64>,
    frontier: u64,
) -> Result<Examined, SpoolError> {
    let error = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |e: io::Error| SpoolError::Io(what, e)
    };
    // The indices a segment held end where the next one starts: what a damaged header or a
    // cut tail of a segment that is not the last cost is known, and lost (issue 21 item 9).
    let lost_before_next =
        |from: u64| next.map_or(0, |next| next.saturating_sub(from.max(frontier)));
    let mut judged = Judged {
        action: Action::MoveAside,
        scan: Scan::default(),
        file: None,
        len: 0,
        corrupt: 1,
        lost: lost_before_next(first),
        torn: 0,
    };
    let file = match disk.open(path) {
        Ok(file) => file,
        Err(e) if disk::is_not_regular(&e) => {
            // Never read: it could block, or never end (issue 28: a link to /dev/zero).
            tracing::error!("spool file {} is {e}; moved aside", path.display());
            return Ok(Examined::Judged(judged));
        }
        Err(e) => return Err(error("cannot open")(e)),
    };
    let len = file.metadata().map_err(error("cannot read"))?.len();
    let source = SegmentFile {
        disk,
        file: &file,
        len,
    };
    match scan::segment_kind(&source).map_err(error("cannot read"))? {
        SegmentKind::Future(version) => return Ok(Examined::Future(version)),
        SegmentKind::Unknown => {
            tracing::error!(
                "spool file {} is not a spool segment; moved aside",
                path.display()
            );
            return Ok(Examined::Judged(judged));
        }
        SegmentKind::Current => {}
    }
    let scan = scan::scan(&source, first).map_err(error("cannot read"))?;
    judged.corrupt = 0;
    judged.len = len;
    judged.action = if scan.records.is_empty() && scan.corrupt == 0 {
        // Only a header (and maybe a torn first record): nothing to keep.
        Action::Delete
    } else if scan.corrupt > 0 {
        tracing::error!(
            "spool file {}: {} corrupt records skipped; the file is kept in aside/",
            path.display(),
            scan.corrupt
        );
        judged.corrupt = scan.corrupt;
        judged.lost = scan
            .lost
            .iter()
            .map(|&(from, to)| to.saturating_sub(from.max(frontier)))
            .sum::<u64>();
        if scan.torn_at.is_some() || scan.exhausted {
            // The copy ends at the last good record: what followed it is gone too.
            judged.lost += lost_before_next(scan.end(first));
        }
        Action::Rewrite
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
        judged.torn = 1;
        judged.lost = lost_before_next(scan.end(first));
        Action::Cut(torn_at)
    } else {
        // Ending where the next segment starts, or cut exactly at a record boundary: the two
        // look alike, and a gap that an earlier recovery left by cutting this file was
        // counted then. Not counted (the recovery fuzz target allows for it).
        judged.lost = 0;
        Action::Keep
    };
    judged.scan = scan;
    judged.file = Some(file);
    Ok(Examined::Judged(judged))
}
