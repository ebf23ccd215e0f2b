//! [`Memory`]: the disk seam over files that live in memory (memfd: anonymous, memory-backed
//! files, holes and all), by path, so that recovery runs on spools built in memory (the
//! recovery fuzz target, issue 28) without touching the filesystem.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::disk::{self, Disk};

enum Entry {
    File(File),
    /// A path that is there but is no regular file (a symbolic link, a device...).
    NotRegular,
}

#[derive(Default)]
pub(crate) struct Memory {
    entries: Mutex<BTreeMap<PathBuf, Entry>>,
}

/// A new empty file in memory.
fn memory_file() -> io::Result<File> {
    let name = CString::new("drifter-spool").map_err(io::Error::other)?;
    // SAFETY: memfd_create with a valid C string; the descriptor it returns is owned by the
    // `File` made from it, and by nothing else.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

impl Memory {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<PathBuf, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a file holding `bytes` at `path`, then makes it `len` long (zeros past `bytes`
    /// are a hole, as a sparse file's).
    pub(crate) fn put(&self, path: &Path, bytes: &[u8], len: u64) -> io::Result<()> {
        let file = memory_file()?;
        file.write_all_at(bytes, 0)?;
        file.set_len(len.max(bytes.len() as u64))?;
        self.lock().insert(path.to_path_buf(), Entry::File(file));
        Ok(())
    }

    /// Puts something at `path` that is not a regular file.
    pub(crate) fn put_not_regular(&self, path: &Path) {
        self.lock().insert(path.to_path_buf(), Entry::NotRegular);
    }

    fn file(&self, path: &Path) -> io::Result<File> {
        match self.lock().get(path) {
            Some(Entry::File(file)) => file.try_clone(),
            Some(Entry::NotRegular) => Err(disk::not_regular("a symbolic link")),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }
}

impl Disk for Memory {
    fn create(&self, path: &Path) -> io::Result<File> {
        let mut entries = self.lock();
        if entries.contains_key(path) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let file = memory_file()?;
        entries.insert(path.to_path_buf(), Entry::File(file.try_clone()?));
        Ok(file)
    }

    fn open(&self, path: &Path) -> io::Result<File> {
        self.file(path)
    }

    fn write_at(&self, file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(bytes, offset)
    }

    fn truncate(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    fn sync_data(&self, _file: &File) -> io::Result<()> {
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        match self.lock().remove(path) {
            Some(_) => Ok(()),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn read_at(&self, file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
        disk::read_full_at(file, buffer, offset)
    }

    fn next_data(&self, file: &File, offset: u64) -> io::Result<Option<u64>> {
        disk::seek_data(file, offset)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        Ok(self
            .lock()
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| Some(path.file_name()?.to_string_lossy().into_owned()))
            .collect())
    }

    fn open_state(&self, path: &Path) -> io::Result<File> {
        match self.file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.put(path, &[], 0)?;
                self.file(path)
            }
            opened => opened,
        }
    }

    /// No host under files in memory: every open counts as another boot.
    fn boot_id(&self) -> Option<[u8; 16]> {
        None
    }
}
