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
//! - [`trust`]: owner-only files, and adopting only the spools of this process's user;
//! - [`status`]: the `spool` command.
//!
//! Over 400 lines with its tests because claiming and adopting (locks, trust, order) is one
//! protocol, read in one place.

mod budget;
#[cfg(test)]
mod crash;
pub(crate) mod disk;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod files_tests;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(any(test, feature = "fuzzing"))]
mod memory_disk;
mod record;
mod scan;
mod state;
pub mod status;
mod store;
mod trust;

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use record::is_full;
use store::Opened;
/// One spool directory claimed by this process: a FIFO of checksummed records in segment
/// files, appended by the session, taken by the feeder, marked done out of order as messages
/// settle, with the done frontier in the state file and finished segments deleted. Its
/// recovery at start never refuses to open: damage is counted and skipped.
pub(crate) use store::Spool;
pub(crate) use store::{Body, Recovery, Refused};
pub(crate) use trust::{file_options, shared_dir_warning};

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

/// Takes the lock of the spool (or hidden creation) at `dir` if no live process holds it.
/// `None`: its owner is alive, or it is being created or removed.
///
/// The lock file is never created here: only [`create`] makes one, in a directory nobody else
/// can claim yet. Creating it here would give a spool that its owner is removing a second
/// owner, which would restart its numbering under the old sender name.
fn try_claim(dir: &Path) -> io::Result<Option<File>> {
    let path = dir.join("lock");
    let lock = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    {
        Ok(lock) => lock,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !lock_unless_owned(&lock)? {
        return Ok(None);
    }
    // The owner may have renamed the spool away (to remove it) between our open and our lock.
    let locked = lock.metadata()?;
    match std::fs::metadata(&path) {
        Ok(now) if now.ino() == locked.ino() && now.dev() == locked.dev() => Ok(Some(lock)),
        _ => Ok(None),
    }
}

/// Takes `lock` exclusively unless a process owns it. An owner holds it exclusively for its
/// whole life; the `spool` command holds it shared for a moment, and must not make a starting
/// sender pass its spool by (it would then sit undelivered until the next start).
fn lock_unless_owned(lock: &File) -> io::Result<bool> {
    const READER_WAIT: Duration = Duration::from_millis(5);
    for _ in 0..200 {
        match lock.try_lock() {
            Ok(()) => return Ok(true),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
            Err(std::fs::TryLockError::WouldBlock) => {}
        }
        // Shared is possible only when no one holds it exclusively: a reader, not an owner.
        match lock.try_lock_shared() {
            Ok(()) => {
                lock.unlock()?;
                std::thread::sleep(READER_WAIT);
            }
            Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
    Ok(false)
}

/// Hidden names: a creation (`.new-NAME`) not yet renamed into place, and a spool on its way
/// out (`.gone-NAME-RANDOM`), renamed out of the namespace before it is deleted.
const CREATING: &str = ".new-";
const REMOVING: &str = ".gone-";

/// Whether no live process holds the directory at `path` (it has no lock, or its lock is free).
fn unowned(path: &Path) -> bool {
    !path.join("lock").exists() || matches!(try_claim(path), Ok(Some(_)))
}

/// Removes what crashed processes left half-done: creations never renamed into place (nothing
/// was ever written there) and spools renamed out to be deleted. Nothing here depends on the
/// clock: a creation is taken away only under its own lock, or while still empty, and
/// [`create`] tries again under a new name when that happens to one of its own.
fn sweep(dir: &Path, names: &[String]) {
    for name in names {
        let path = dir.join(name);
        if name.starts_with(CREATING) {
            if !path.join("lock").exists() {
                // Empty or being filled: removing an empty directory is atomic, and fails on
                // one whose creator has made its lock meanwhile.
                let _ = std::fs::remove_dir(&path);
            } else if let Ok(Some(_lock)) = try_claim(&path) {
                // Held while it leaves the namespace, so its creator, if alive, cannot lock it
                // and starts over elsewhere.
                let leaving = removal_path(&path);
                if std::fs::rename(&path, &leaving).is_ok() {
                    let _ = std::fs::remove_dir_all(&leaving);
                }
            }
        } else if name.starts_with(REMOVING) && unowned(&path) {
            // Out of the namespace: no one claims it by name any more. Its remover may still
            // be at it, which a held lock shows.
            let _ = std::fs::remove_dir_all(&path);
        }
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
        trust::create_dir_all(dir)
            .with_context(|| format!("cannot create spool directory {}", dir.display()))?;
        if let Some(warning) = trust::shared_dir_warning(dir) {
            tracing::warn!("spool directory {warning}");
        }
        let all = entry_names(dir)
            .with_context(|| format!("cannot list spool directory {}", dir.display()))?;
        sweep(dir, &all);
        let names: Vec<String> = all.into_iter().filter(|name| is_spool_name(name)).collect();
        let mut own: Option<Arc<Spool<T>>> = None;
        let mut adopted = Vec::new();
        let mut recovered = Recovery::default();
        for name in names {
            let path = dir.join(&name);
            let lock = match try_claim(&path) {
                Ok(Some(lock)) => lock,
                Ok(None) => continue,
                Err(e) => {
                    // Another user's spool, a read-only mount, no locks on this filesystem:
                    // never a reason not to start (issue 21 item 4).
                    tracing::warn!("cannot lock spool {}: {e}; skipped", path.display());
                    continue;
                }
            };
            // Checked once claimed: a live sibling's spool changes under a check (segments
            // come and go) and is not ours to judge, and a claimed one holds still.
            if let Some(reason) = trust::untrusted(&path) {
                // Planted or tampered with by someone else: delivering it would send (and
                // sign) their records as ours (issue 27).
                tracing::warn!("spool {} is not adopted: {reason}", path.display());
                continue;
            }
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
                    if limits.sync != SyncPolicy::Off
                        && let Err(e) = spool.sync_recovered()
                    {
                        tracing::warn!("cannot sync spool {}: {e}", path.display());
                    }
                    if recovery.pending > 0 {
                        tracing::info!(
                            spool = %name,
                            "{} messages left in the spool by an earlier process; delivering them",
                            recovery.pending
                        );
                    }
                    recovered.pending += recovery.pending;
                    recovered.corrupt += recovery.corrupt;
                    recovered.lost += recovery.lost;
                    recovered.torn += recovery.torn;
                    if writable {
                        own = Some(Arc::from(spool));
                    } else if recovery.pending == 0 {
                        if let Err(e) = spool.remove() {
                            tracing::warn!("cannot remove empty spool {}: {e}", path.display());
                        }
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
        // The bound is the directory's: every spool under it and their aside/ copies count
        // (issue 21 item 13).
        let budget = Arc::new(budget::Budget::new(
            dir,
            limits.max_bytes,
            limits.segment_bytes,
        ));
        for spool in adopted.iter().chain(std::iter::once(&own)) {
            budget.claim(&spool.name);
        }
        let _ = own.budget.set(budget);
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

/// A new spool: made under a hidden name with its lock file, locked, then renamed into place,
/// so no other process ever sees it unlocked under a spool name. A starting process may sweep
/// the hidden directory away before it is locked (see [`sweep`]): then it starts over under
/// another name.
fn create<T>(dir: &Path, limits: Limits, disk: Arc<dyn disk::Disk>) -> anyhow::Result<Spool<T>> {
    use anyhow::Context;
    const ATTEMPTS: usize = 8;
    for _ in 1..ATTEMPTS {
        match create_locked(dir) {
            Ok((path, name, lock)) => return open_created(&path, name, lock, limits, disk.clone()),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::WouldBlock => {
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create a spool in {}", dir.display()));
            }
        }
    }
    let (path, name, lock) = create_locked(dir)
        .with_context(|| format!("cannot create a spool in {}", dir.display()))?;
    open_created(&path, name, lock, limits, disk)
}

/// A locked spool directory under a new name: (path, name, lock). `NotFound` or `WouldBlock`:
/// another process swept the hidden directory away meanwhile.
fn create_locked(dir: &Path) -> io::Result<(PathBuf, String, File)> {
    let name = crate::hex::random(NAME_DIGITS);
    let hidden = dir.join(format!("{CREATING}{name}"));
    let path: PathBuf = dir.join(&name);
    trust::create_dir(&hidden)?;
    let lock = trust::file_options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(hidden.join("lock"))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(io::ErrorKind::WouldBlock.into()),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    std::fs::rename(&hidden, &path)?;
    store::sync_dir(dir)?;
    Ok((path, name, lock))
}

fn open_created<T>(
    path: &Path,
    name: String,
    lock: File,
    limits: Limits,
    disk: Arc<dyn disk::Disk>,
) -> anyhow::Result<Spool<T>> {
    match Spool::open(path, name, lock, limits, true, disk)? {
        Opened::Spool(spool, _) => Ok(*spool),
        Opened::Future(_) => anyhow::bail!("new spool {} is not empty", path.display()),
    }
}

/// Where a spool at `path` goes to be deleted: out of the namespace, under a name no one
/// claims, so that no process can take it over half-deleted.
pub(crate) fn removal_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(
        "{REMOVING}{name}-{}",
        crate::hex::random(NAME_DIGITS)
    ))
}

/// A short pause before retrying after the disk filled up.
pub(crate) const FULL_RETRY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod claim_tests {
    use super::*;

    fn spool_with_lock() -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().expect("temp dir");
        let lock = trust::file_options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("lock"))
            .expect("lock");
        (dir, lock)
    }

    #[test]
    fn a_spool_listed_by_the_spool_command_is_still_claimed() {
        let (dir, _) = spool_with_lock();
        let reader = File::open(dir.path().join("lock")).expect("open");
        reader
            .try_lock_shared()
            .expect("shared, as `spool DIR` takes it");
        let releasing = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            drop(reader);
        });
        assert!(try_claim(dir.path()).expect("claim").is_some());
        releasing.join().expect("join");
    }

    #[test]
    fn a_spool_whose_owner_lives_is_not_claimed() {
        let (dir, owner) = spool_with_lock();
        owner.try_lock().expect("the owner's lock");
        assert!(try_claim(dir.path()).expect("claim").is_none());
    }
}
