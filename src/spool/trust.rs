//! Who can read and who can plant what the spool holds. Log lines carry what applications log
//! (tokens in URLs, e-mail addresses, session ids), so everything the spool creates is its
//! user's alone (directories 0700, files 0600, whatever the umask), and a starting process
//! adopts, and so delivers and signs as its own, only spools that its user alone could have
//! written.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

pub(crate) const DIR_MODE: u32 = 0o700;
pub(crate) const FILE_MODE: u32 = 0o600;

/// Written by group or others.
const SHARED_WRITE: u32 = 0o022;
const STICKY: u32 = 0o1000;

/// Creates `path` (and missing parents) owner-only; an existing directory is left as it is.
pub(crate) fn create_dir_all(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Creates the directory `path`, owner-only; it must not exist.
pub(crate) fn create_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().mode(DIR_MODE).create(path)
}

/// Options for a file the spool creates: owner-only.
pub(crate) fn file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// The user this process runs as.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// Why others can remove or plant files in `dir`, if they can: it is writable by group or
/// others without the sticky bit (a Kubernetes emptyDir is 0777; the containers of one pod
/// trust each other, so this is a warning, not a refusal).
pub(crate) fn shared_dir_warning(dir: &Path) -> Option<String> {
    let meta = std::fs::metadata(dir).ok()?;
    let mode = meta.mode();
    (mode & SHARED_WRITE != 0 && mode & STICKY == 0).then(|| {
        format!(
            "{} is writable by other users (mode {:o}) without the sticky bit: they can remove or plant files there",
            dir.display(),
            mode & 0o7777
        )
    })
}

/// Why the spool at `dir` must not be adopted, if it must not: it, or a file in it, belongs to
/// another user, or can be written by group or others.
pub(crate) fn untrusted(dir: &Path) -> Option<String> {
    let uid = effective_uid();
    let check = |path: &Path| -> Option<String> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) => return Some(format!("{}: {e}", path.display())),
        };
        if meta.uid() != uid {
            return Some(format!(
                "{} belongs to user {}, not {uid}",
                path.display(),
                meta.uid()
            ));
        }
        // A symbolic link's own mode is always 0777 and never used: its owner is what counts
        // (recovery refuses to read through it, issue 28).
        if meta.mode() & SHARED_WRITE != 0 && !meta.file_type().is_symlink() {
            return Some(format!(
                "{} is writable by other users (mode {:o})",
                path.display(),
                meta.mode() & 0o7777
            ));
        }
        None
    };
    if let Some(reason) = check(dir) {
        return Some(reason);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return Some(format!("{}: {e}", dir.display())),
    };
    entries.flatten().find_map(|entry| check(&entry.path()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn own_private_spools_are_trusted_and_shared_ones_are_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spool = dir.path().join("spool");
        create_dir(&spool).expect("create");
        file_options()
            .write(true)
            .create_new(true)
            .open(spool.join("lock"))
            .expect("lock");
        assert_eq!(untrusted(&spool), None);
        // A link's own mode (always 0777) is not a reason: recovery refuses to read it.
        std::os::unix::fs::symlink("/dev/zero", spool.join("seg-00000000000000000001.log"))
            .expect("symlink");
        assert_eq!(untrusted(&spool), None);
        std::fs::set_permissions(spool.join("lock"), std::fs::Permissions::from_mode(0o620))
            .expect("chmod");
        assert!(untrusted(&spool).is_some_and(|why| why.contains("writable by other users")));
    }

    #[test]
    fn a_world_writable_directory_is_shared_unless_sticky() {
        let dir = tempfile::tempdir().expect("temp dir");
        let set = |mode| {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode))
                .expect("chmod")
        };
        set(0o777);
        assert!(shared_dir_warning(dir.path()).is_some());
        set(0o1777);
        assert_eq!(shared_dir_warning(dir.path()), None);
        set(0o700);
        assert_eq!(shared_dir_warning(dir.path()), None);
    }
}
