//! The durable spool: a write-ahead log on local disk between reading and delivery, so that
//! nothing `send` acknowledged is lost when the process, the load balancer or the network
//! fails. Also the `spool` command, which shows what is in a spool directory.
//!
//! Under the spool directory each process claims one spool of its own, a directory named by
//! the spool's sender name and locked with `flock` for as long as the process lives (the
//! kernel drops the lock when the process dies, so a lock file never blocks anyone). A
//! starting process adopts the spools whose owners are gone: the first becomes its own, and it
//! keeps writing there under the same sender name; the others are delivered and removed.
//!
//! Hand-written rather than a crate: what is needed is a single-writer FIFO with per-record
//! checksums, acknowledgements out of order, recovery that never refuses to start, and an
//! explicit sync policy. redb rolls back non-durable commits on a crash, sled and okaywal warn
//! against production use, yaque never fsyncs; none counts bytes for backpressure.
//!
//! - [`record`]: segment files and record framing, and the recovery scan;
//! - [`state`]: the two-slot file holding the done frontier;
//! - [`store`]: one spool, append, take, done, reclaim;
//! - [`status`]: the `spool` command.

pub(crate) mod disk;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod files_tests;
mod record;
mod state;
pub mod status;
mod store;

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use record::is_full;
use store::Opened;
pub(crate) use store::{Body, Recovery, Refused, Spool};

/// When appended records are made durable against a host crash (a kill never loses them:
/// `write()` puts them in the kernel's page cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncPolicy {
    /// fdatasync every --spool-sync-interval: a host crash loses at most that interval.
    Interval,
    /// fdatasync before every acknowledgement rsyslog acts on (once per commit in
    /// transactions mode).
    Strict,
    /// Never fdatasync; the kernel writes back in its own time.
    Off,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_bytes: u64,
    pub segment_bytes: u64,
    /// Records kept in memory for delivery besides being written, at most.
    pub window_bytes: usize,
    pub sync: SyncPolicy,
}

/// Smallest --spool-max-bytes: room for a few segments.
pub(crate) const MIN_MAX_BYTES: u64 = 64 * 1024;

/// The largest record payload a spool of `max_bytes` takes: one that fits its bound with a
/// segment of its own (a larger one would wait for an empty spool, which never comes during
/// an outage), and that recovery accepts as a record.
pub(crate) fn largest_payload(max_bytes: u64) -> u64 {
    let framing = record::SEGMENT_HEADER_BYTES + record::RECORD_HEADER_BYTES as u64;
    max_bytes
        .saturating_sub(framing)
        .min(u64::from(record::MAX_PAYLOAD_BYTES))
}

impl Limits {
    pub(crate) fn new(max_bytes: u64, sync: SyncPolicy) -> Self {
        Limits {
            max_bytes,
            // Eight or more segments, so room comes back in steps while a backlog drains.
            segment_bytes: (max_bytes / 8).clamp(8 * 1024, 4 << 20),
            window_bytes: 2 << 20,
            sync,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{0}: {1}")]
    Io(String, #[source] io::Error),
    #[error("{0}")]
    Failed(String),
}

/// Hex digits of a spool's (and so a sender's) name.
const NAME_DIGITS: usize = 12;

fn is_spool_name(name: &str) -> bool {
    name.len() == NAME_DIGITS && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The names in `dir`, sorted (the spools' order of adoption and of `spool`'s rows).
fn entry_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Takes `dir`'s lock if no live process holds it. `None`: its owner is alive (or the spool
/// is being removed).
fn try_claim(dir: &Path) -> io::Result<Option<File>> {
    let path = dir.join("lock");
    let lock = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    {
        Ok(lock) => lock,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    // The owner may have removed the spool between our open and our lock.
    let locked = lock.metadata()?;
    match std::fs::metadata(&path) {
        Ok(now) if now.ino() == locked.ino() && now.dev() == locked.dev() => Ok(Some(lock)),
        _ => Ok(None),
    }
}

/// The spools of one process: its own, written and delivered, and the adopted ones, only
/// delivered.
pub(crate) struct Spools<T> {
    pub own: Arc<Spool<T>>,
    pub adopted: Vec<Arc<Spool<T>>>,
    pub recovered: Recovery,
}

impl<T> Spools<T> {
    /// Claims a spool under `dir` (created if missing), adopting the spools of dead owners.
    pub(crate) fn open(dir: &Path, limits: Limits) -> anyhow::Result<Self> {
        Self::open_on(dir, limits, Arc::new(disk::Real))
    }

    /// [`open`](Self::open), with the spools' file operations going through `disk`.
    pub(crate) fn open_on(
        dir: &Path,
        limits: Limits,
        disk: Arc<dyn disk::Disk>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create spool directory {}", dir.display()))?;
        let all = entry_names(dir)
            .with_context(|| format!("cannot list spool directory {}", dir.display()))?;
        for hidden in all.iter().filter(|name| name.starts_with(".new-")) {
            // A creation that a crash interrupted: never used, so nothing in it.
            let path = dir.join(hidden);
            if let Ok(Some(_lock)) = try_claim(&path) {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
        let names: Vec<String> = all.into_iter().filter(|name| is_spool_name(name)).collect();
        let mut own: Option<Arc<Spool<T>>> = None;
        let mut adopted = Vec::new();
        let mut recovered = Recovery::default();
        for name in names {
            let path = dir.join(&name);
            let lock = try_claim(&path)
                .with_context(|| format!("cannot lock spool {}", path.display()))?;
            let Some(lock) = lock else { continue };
            let writable = own.is_none();
            let opened =
                match Spool::open(&path, name.clone(), lock, limits, writable, disk.clone()) {
                    Ok(opened) => opened,
                    Err(e) => {
                        // Never a reason not to start: what can be read is delivered next time.
                        tracing::error!("cannot recover spool {}: {e}; left alone", path.display());
                        continue;
                    }
                };
            match opened {
                Opened::Future(version) => {
                    tracing::error!(
                        "spool {} was written by a newer drifter-rsyslog (format {version}); left alone",
                        path.display()
                    );
                }
                Opened::Spool(spool, recovery) => {
                    if recovery.pending > 0 {
                        tracing::info!(
                            spool = %name,
                            "{} messages left in the spool by an earlier process; delivering them",
                            recovery.pending
                        );
                    }
                    recovered.pending += recovery.pending;
                    recovered.corrupt += recovery.corrupt;
                    recovered.torn += recovery.torn;
                    if writable {
                        own = Some(Arc::from(spool));
                    } else if recovery.pending == 0 {
                        spool.remove().with_context(|| {
                            format!("cannot remove empty spool {}", path.display())
                        })?;
                    } else {
                        adopted.push(Arc::from(spool));
                    }
                }
            }
        }
        let own = match own {
            Some(own) => own,
            None => Arc::new(create(dir, limits, disk)?),
        };
        Ok(Spools {
            own,
            adopted,
            recovered,
        })
    }

    /// Own first for writing; adopted first for delivery (they hold the older messages).
    pub(crate) fn delivery_order(&self) -> impl Iterator<Item = &Arc<Spool<T>>> {
        self.adopted.iter().chain(std::iter::once(&self.own))
    }

    pub(crate) fn pending(&self) -> u64 {
        self.delivery_order().map(|spool| spool.pending()).sum()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.delivery_order().map(|spool| spool.bytes()).sum()
    }
}

/// A new spool: made under a hidden name, locked, then renamed into place, so no other process
/// ever sees it unlocked.
fn create<T>(dir: &Path, limits: Limits, disk: Arc<dyn disk::Disk>) -> anyhow::Result<Spool<T>> {
    use anyhow::Context;
    let name = crate::hex::random(NAME_DIGITS);
    let hidden = dir.join(format!(".new-{name}"));
    let path: PathBuf = dir.join(&name);
    std::fs::create_dir(&hidden)
        .with_context(|| format!("cannot create spool {}", hidden.display()))?;
    let lock = try_claim(&hidden)
        .with_context(|| format!("cannot lock spool {}", hidden.display()))?
        .with_context(|| format!("spool {} is locked by another process", hidden.display()))?;
    std::fs::rename(&hidden, &path)
        .and_then(|()| store::sync_dir(dir))
        .with_context(|| format!("cannot create spool {}", path.display()))?;
    match Spool::open(&path, name, lock, limits, true, disk)? {
        Opened::Spool(spool, _) => Ok(*spool),
        Opened::Future(_) => anyhow::bail!("new spool {} is not empty", path.display()),
    }
}

/// A short pause before retrying after the disk filled up.
pub(crate) const FULL_RETRY: Duration = Duration::from_secs(1);
