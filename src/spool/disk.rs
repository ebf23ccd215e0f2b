//! The spool's file operations at run time (segments created, written, cut back, synced,
//! read and deleted; the state stored; the directory synced), behind a narrow seam, so that
//! unit tests make them fail or stall deterministically, on any machine, without tmpfs or
//! LD_PRELOAD: ENOSPC, EIO, EMFILE, a slow fsync (issue 21, "Fault injection in the spool").
//! Recovery at start reads and rewrites with `std::fs` directly.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub(crate) trait Disk: Send + Sync {
    /// A new file for reading and writing; it must not exist yet.
    fn create(&self, path: &Path) -> io::Result<File>;
    fn open(&self, path: &Path) -> io::Result<File>;
    fn write_at(&self, file: &File, bytes: &[u8], offset: u64) -> io::Result<()>;
    fn truncate(&self, file: &File, len: u64) -> io::Result<()>;
    /// fdatasync.
    fn sync_data(&self, file: &File) -> io::Result<()>;
    /// fsync of a directory, so that names created or removed in it survive a crash.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// The host's boot id, which changes at every boot (a host crash included); `None` when
    /// it cannot be read, which counts as another boot.
    fn boot_id(&self) -> Option<[u8; 16]>;
}

/// Linux's boot id, `/proc/sys/kernel/random/boot_id` (a UUID in text).
fn read_boot_id() -> Option<[u8; 16]> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let digits: Vec<u8> = text
        .trim()
        .bytes()
        .filter(|&b| b != b'-')
        .map(|b| (b as char).to_digit(16).map(|d| d as u8))
        .collect::<Option<_>>()?;
    let mut id = [0u8; 16];
    if digits.len() != 2 * id.len() {
        return None;
    }
    for (byte, pair) in id.iter_mut().zip(digits.chunks(2)) {
        *byte = pair[0] << 4 | pair[1];
    }
    Some(id)
}

/// The operating system's file operations.
pub(crate) struct Real;

impl Disk for Real {
    fn create(&self, path: &Path) -> io::Result<File> {
        // Owner-only whatever the umask (issue 27).
        super::trust::file_options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
    }

    fn open(&self, path: &Path) -> io::Result<File> {
        File::open(path)
    }

    fn write_at(&self, file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(bytes, offset)
    }

    fn truncate(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn boot_id(&self) -> Option<[u8; 16]> {
        read_boot_id()
    }
}

#[cfg(test)]
pub(crate) mod faults {
    //! [`Faulty`]: the real operations, but for the faults a test sets.

    use std::collections::HashMap;
    use std::sync::{Condvar, Mutex, MutexGuard};

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub(crate) enum Op {
        Create,
        Write,
        Sync,
        SyncDir,
        /// Writes to the state file only (a copy-on-write filesystem, full: writing in
        /// place needs room too).
        WriteState,
    }

    #[derive(Default)]
    struct Set {
        /// Each call of the operation fails with this OS error until cleared.
        failing: HashMap<Op, i32>,
        /// fdatasync (of files and the directory) waits while set: a slow disk.
        stalling: bool,
        /// Syncs waiting now.
        stalled: usize,
    }

    #[derive(Default)]
    pub(crate) struct Faulty {
        set: Mutex<Set>,
        changed: Condvar,
        /// What a host crash keeps.
        durability: super::super::crash::Durability,
        /// Changed by a crash; zero until then.
        boot: Mutex<[u8; 16]>,
    }

    impl Faulty {
        fn lock(&self) -> MutexGuard<'_, Set> {
            self.set.lock().unwrap_or_else(|p| p.into_inner())
        }

        pub(crate) fn fail(&self, op: Op, errno: i32) {
            self.lock().failing.insert(op, errno);
        }

        pub(crate) fn clear(&self, op: Op) {
            self.lock().failing.remove(&op);
        }

        pub(crate) fn stall_syncs(&self) {
            self.lock().stalling = true;
        }

        /// Waits until a sync is stalled (started, and waiting for [`release`](Self::release)).
        pub(crate) fn wait_for_a_stalled_sync(&self) {
            let mut set = self.lock();
            while set.stalled == 0 {
                set = self.changed.wait(set).unwrap_or_else(|p| p.into_inner());
            }
        }

        /// A host crash (see [`super::super::crash`]) and the boot after it; the spool must be
        /// closed.
        pub(crate) fn crash(&self) {
            self.durability.crash();
            let mut boot = self.boot.lock().unwrap_or_else(|p| p.into_inner());
            boot[0] = boot[0].wrapping_add(1);
        }

        pub(crate) fn release(&self) {
            self.lock().stalling = false;
            self.changed.notify_all();
        }

        fn check(&self, op: Op) -> io::Result<()> {
            match self.lock().failing.get(&op) {
                Some(&errno) => Err(io::Error::from_raw_os_error(errno)),
                None => Ok(()),
            }
        }

        fn stall(&self) {
            let mut set = self.lock();
            if !set.stalling {
                return;
            }
            set.stalled += 1;
            self.changed.notify_all();
            while set.stalling {
                set = self.changed.wait(set).unwrap_or_else(|p| p.into_inner());
            }
            set.stalled -= 1;
        }
    }

    fn is_state_file(file: &File) -> bool {
        use std::os::fd::AsRawFd;
        std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .is_ok_and(|path| path.file_name().is_some_and(|name| name == "state"))
    }

    impl Disk for Faulty {
        fn create(&self, path: &Path) -> io::Result<File> {
            self.check(Op::Create)?;
            let file = Real.create(path)?;
            self.durability.created(path);
            Ok(file)
        }

        fn open(&self, path: &Path) -> io::Result<File> {
            Real.open(path)
        }

        fn write_at(&self, file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
            self.check(Op::Write)?;
            if is_state_file(file) {
                self.check(Op::WriteState)?;
            }
            Real.write_at(file, bytes, offset)
        }

        fn truncate(&self, file: &File, len: u64) -> io::Result<()> {
            Real.truncate(file, len)
        }

        fn sync_data(&self, file: &File) -> io::Result<()> {
            self.stall();
            self.check(Op::Sync)?;
            Real.sync_data(file)?;
            self.durability.synced(file);
            Ok(())
        }

        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            self.stall();
            self.check(Op::SyncDir)?;
            Real.sync_dir(dir)
        }

        fn remove(&self, path: &Path) -> io::Result<()> {
            Real.remove(path)?;
            self.durability.removed(path);
            Ok(())
        }

        fn boot_id(&self) -> Option<[u8; 16]> {
            Some(*self.boot.lock().unwrap_or_else(|p| p.into_inner()))
        }
    }
}
