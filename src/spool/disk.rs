//! The spool's file operations at run time (segments created, written, cut back, synced,
//! read and deleted; the state stored; the directory synced), behind a narrow seam, so that
//! unit tests make them fail or stall deterministically, on any machine, without tmpfs or
//! LD_PRELOAD: ENOSPC, EIO, EMFILE, a slow fsync (issue 21, "Fault injection in the spool").
//! Recovery at start lists, opens and reads through it too (issue 28: so the recovery fuzz
//! target runs on files in memory, see `memory_disk`); it cuts and rewrites with `std::fs`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub(crate) trait Disk: Send + Sync {
    /// A new file for reading and writing; it must not exist yet.
    fn create(&self, path: &Path) -> io::Result<File>;
    /// For reading; anything but a regular file is refused ([`is_not_regular`]).
    fn open(&self, path: &Path) -> io::Result<File>;
    fn write_at(&self, file: &File, bytes: &[u8], offset: u64) -> io::Result<()>;
    fn truncate(&self, file: &File, len: u64) -> io::Result<()>;
    /// fdatasync.
    fn sync_data(&self, file: &File) -> io::Result<()>;
    /// fsync of a directory, so that names created or removed in it survive a crash.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Reads at `offset` (pread): fewer bytes than asked only at the end of the file.
    fn read_at(&self, file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize>;
    /// The first offset at or after `offset` that may hold anything but zeros (SEEK_DATA),
    /// `None` when only a hole follows: a sparse zero tail is passed over without reading it.
    fn next_data(&self, file: &File, offset: u64) -> io::Result<Option<u64>>;
    /// The names of the entries of `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// The state file for reading and writing, created if missing.
    fn open_state(&self, path: &Path) -> io::Result<File>;
    /// The host's boot id, which changes at every boot (a host crash included); `None` when
    /// it cannot be read, which counts as another boot.
    fn boot_id(&self) -> Option<[u8; 16]>;
}

/// Why [`Disk::open`] refused a path: it is not a regular file (a symbolic link, a device, a
/// FIFO, a directory), whose reading could block or never end (issue 28: a segment linked to
/// /dev/zero).
pub(crate) fn is_not_regular(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::InvalidInput
        && error.get_ref().is_some_and(|e| e.is::<NotRegular>())
}

#[derive(Debug)]
struct NotRegular(&'static str);

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a regular file ({})", self.0)
    }
}

impl std::error::Error for NotRegular {}

pub(crate) fn not_regular(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, NotRegular(what))
}

/// Opens `path` for reading if it is a regular file: never through a symbolic link, and
/// without blocking on a FIFO; the type is checked on the open file, so it cannot change after.
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => not_regular("a symbolic link"),
            _ => e,
        })?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    Err(not_regular(if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "a socket"
    }))
}

/// SEEK_DATA on `file` from `offset`.
pub(crate) fn seek_data(file: &File, offset: u64) -> io::Result<Option<u64>> {
    use std::os::fd::AsRawFd;
    let Ok(at) = libc::off_t::try_from(offset) else {
        return Ok(None);
    };
    // SAFETY: lseek on a descriptor this `File` owns; it only moves the file's offset, which
    // the spool never relies on for files read this way (they are read with pread).
    let found = unsafe { libc::lseek(file.as_raw_fd(), at, libc::SEEK_DATA) };
    if found >= 0 {
        return Ok(Some(found as u64));
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        // Only a hole from `offset` to the end.
        Some(libc::ENXIO) => Ok(None),
        // A filesystem without SEEK_DATA: everything may be data.
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Ok(Some(offset)),
        _ => Err(error),
    }
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
        open_regular(path)
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

    fn read_at(&self, file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
        read_full_at(file, buffer, offset)
    }

    fn next_data(&self, file: &File, offset: u64) -> io::Result<Option<u64>> {
        seek_data(file, offset)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn open_state(&self, path: &Path) -> io::Result<File> {
        super::trust::file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    }

    fn boot_id(&self) -> Option<[u8; 16]> {
        read_boot_id()
    }
}

/// pread until `buffer` is full or the file ends: the bytes read.
pub(crate) fn read_full_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
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
        Read,
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
        /// Bytes asked of `read_at`, and the most in one call: what reading costs in memory.
        bytes_read: u64,
        largest_read: usize,
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

        /// Bytes read through `read_at` so far, and the most asked for in one call.
        pub(crate) fn reads(&self) -> (u64, usize) {
            let set = self.lock();
            (set.bytes_read, set.largest_read)
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

        fn read_at(&self, file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
            self.check(Op::Read)?;
            let mut set = self.lock();
            set.bytes_read += buffer.len() as u64;
            set.largest_read = set.largest_read.max(buffer.len());
            drop(set);
            Real.read_at(file, buffer, offset)
        }

        fn next_data(&self, file: &File, offset: u64) -> io::Result<Option<u64>> {
            Real.next_data(file, offset)
        }

        fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
            Real.list(dir)
        }

        fn open_state(&self, path: &Path) -> io::Result<File> {
            Real.open_state(path)
        }
    }
}
