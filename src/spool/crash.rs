//! A host crash, for the tests through [`super::disk::faults::Faulty`]: what was synced
//! survives, the unsynced tail of each file is lost, and a file created but never synced is
//! gone. Names removed stay removed (the spool syncs its directory with the data, so this is
//! the kind outcome; the unkind ones, a deleted done segment coming back, only bring
//! duplicates).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct Durability {
    inner: Mutex<Files>,
}

#[derive(Default)]
struct Files {
    /// Each synced file's content at its last sync.
    images: BTreeMap<PathBuf, Vec<u8>>,
    /// Files created through the seam.
    created: BTreeSet<PathBuf>,
}

impl Durability {
    fn lock(&self) -> std::sync::MutexGuard<'_, Files> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new file at `path`: whatever was synced there before is gone with the old one.
    pub(crate) fn created(&self, path: &Path) {
        let mut files = self.lock();
        files.images.remove(path);
        files.created.insert(path.to_path_buf());
    }

    pub(crate) fn removed(&self, path: &Path) {
        let mut files = self.lock();
        files.images.remove(path);
        files.created.remove(path);
    }

    /// `file` was synced: what it holds now survives a crash.
    pub(crate) fn synced(&self, file: &File) {
        let link = format!("/proc/self/fd/{}", file.as_raw_fd());
        let Ok(path) = std::fs::read_link(link) else {
            return;
        };
        if path.to_string_lossy().ends_with(" (deleted)") {
            return;
        }
        if let Ok(content) = std::fs::read(&path) {
            self.lock().images.insert(path, content);
        }
    }

    /// The crash: every file back to its last synced content, the never-synced new ones gone.
    /// Call it with the spool closed (the process died with the host).
    pub(crate) fn crash(&self) {
        let mut files = self.lock();
        for path in std::mem::take(&mut files.created) {
            if !files.images.contains_key(&path) {
                let _ = std::fs::remove_file(&path);
            }
        }
        for (path, image) in &files.images {
            if path.exists() {
                std::fs::write(path, image).expect("restore the synced content");
            }
        }
    }
}
