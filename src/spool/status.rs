//! `drifter-rsyslog spool DIR`: what each spool under DIR holds, without disturbing it.

use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use super::disk::{self, Disk as _, Real};
use super::record::SegmentKind;
use super::scan::{self, SegmentFile};
use super::state::{Loaded, StateFile};
use super::store::{segment_first, segment_path};
use crate::exit::{self, Fatal, Status};

/// One spool, as the `spool` command reports it.
#[derive(Debug, Default)]
struct Summary {
    name: String,
    owner_alive: bool,
    entries: u64,
    bytes: u64,
    oldest_ms: Option<u64>,
    corrupt: u64,
    newer_format: Option<u32>,
    /// The spool directory's user and permission bits.
    uid: u32,
    mode: u32,
    /// Why a `send` of this user would not adopt it, if it would not.
    untrusted: Option<String>,
}

pub fn run(dir: &std::path::Path) -> exit::Outcome {
    let summaries = summarize(dir).map_err(Fatal::usage)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let mut out = std::io::stdout().lock();
    let printed = (|| -> std::io::Result<()> {
        writeln!(
            out,
            "{:<14}{:<8}{:>10}{:>14}{:>8}{:>6}  {:<6}OLDEST",
            "SPOOL", "OWNER", "ENTRIES", "BYTES", "USER", "MODE", "ADOPT"
        )?;
        for summary in &summaries {
            let owner = if summary.owner_alive { "alive" } else { "gone" };
            let oldest = match (summary.newer_format, summary.oldest_ms) {
                (Some(version), _) => format!("written by a newer version (format {version})"),
                (None, Some(ms)) => format!("{}s ago", now_ms.saturating_sub(ms) / 1000),
                (None, None) => "-".into(),
            };
            let corrupt = if summary.corrupt > 0 {
                format!(", {} corrupt records", summary.corrupt)
            } else {
                String::new()
            };
            let (adopt, why) = match &summary.untrusted {
                None => ("yes", String::new()),
                Some(reason) => ("no", format!(" (not adopted: {reason})")),
            };
            writeln!(
                out,
                "{:<14}{:<8}{:>10}{:>14}{:>8}{:>6o}  {adopt:<6}{oldest}{corrupt}{why}",
                summary.name, owner, summary.entries, summary.bytes, summary.uid, summary.mode
            )?;
        }
        out.flush()
    })();
    match printed {
        Ok(()) => Ok(Status::Success),
        Err(e) if exit::reader_went_away(&e) => Ok(Status::Success),
        Err(e) => Err(Fatal::lost(e)),
    }
}

fn summarize(dir: &Path) -> anyhow::Result<Vec<Summary>> {
    let names = super::entry_names(dir)
        .with_context(|| format!("cannot list spool directory {}", dir.display()))?;
    names
        .into_iter()
        .filter(|name| super::is_spool_name(name))
        .map(|name| {
            let path = dir.join(&name);
            summarize_one(&path, name)
                .with_context(|| format!("cannot read spool {}", path.display()))
        })
        .collect()
}

fn summarize_one(path: &Path, name: String) -> std::io::Result<Summary> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    let mut summary = Summary {
        name,
        owner_alive: owner_alive(path)?,
        uid: meta.uid(),
        mode: meta.mode() & 0o7777,
        untrusted: super::trust::untrusted(path),
        ..Summary::default()
    };
    let frontier = match StateFile::read(&path.join("state"))? {
        Loaded::State(state, _) => state.frontier,
        Loaded::Future(version) => {
            summary.newer_format = Some(version);
            return Ok(summary);
        }
    };
    let mut firsts: Vec<u64> = std::fs::read_dir(path)?
        .filter_map(|entry| segment_first(entry.ok()?.file_name().to_str()?))
        .collect();
    firsts.sort_unstable();
    for first in firsts {
        let segment = segment_path(path, first);
        // Read a chunk at a time, and only if it is a regular file (issue 28).
        let file = match Real.open(&segment) {
            Ok(file) => file,
            // Deleted by its owner meanwhile: delivered.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if disk::is_not_regular(&e) => {
                tracing::warn!("spool file {} is {e}; not read", segment.display());
                continue;
            }
            Err(e) => return Err(e),
        };
        let source = SegmentFile {
            disk: &Real,
            file: &file,
            len: file.metadata()?.len(),
        };
        if let SegmentKind::Future(version) = scan::segment_kind(&source)? {
            summary.newer_format = Some(version);
            return Ok(summary);
        }
        summary.bytes += source.len;
        // A live owner may be writing the last record: its torn tail is not counted.
        let scan = scan::scan(&source, first)?;
        summary.corrupt += scan.corrupt;
        for (meta, _, _) in scan.records.iter().filter(|(m, _, _)| m.index >= frontier) {
            summary.entries += 1;
            summary.oldest_ms.get_or_insert(meta.appended_ms);
        }
    }
    Ok(summary)
}

/// A shared lock succeeds only when no process holds the spool; it is dropped at once.
fn owner_alive(path: &Path) -> std::io::Result<bool> {
    let lock = match std::fs::File::open(path.join("lock")) {
        Ok(lock) => lock,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match lock.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}
