//! Reading the shared key of `--sign-key` and `--verify-key`.
//!
//! The key is the file's bytes, minus trailing line ends (so `echo secret > key` and
//! `printf secret > key` give the same key). A key anyone on the host can read or replace
//! signs nothing: such a file is refused, as are missing and empty ones.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::wire::Signer;

/// Shorter keys are accepted with a warning: HMAC is only as strong as its key.
const RECOMMENDED_KEY_BYTES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Unreadable { path: String, source: io::Error },
    #[error("key file {path} is empty")]
    Empty { path: String },
    #[error(
        "key file {path} can be read or written by every user (mode {mode:03o}); make it private with `chmod 600 {path}`"
    )]
    OpenToEveryone { path: String, mode: u32 },
}

pub fn load(path: &Path) -> Result<Signer, KeyError> {
    let name = path.display().to_string();
    let unreadable = |source| KeyError::Unreadable {
        path: name.clone(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(unreadable)?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o006 != 0 {
        return Err(KeyError::OpenToEveryone { path: name, mode });
    }
    let mut key = std::fs::read(path).map_err(unreadable)?;
    while matches!(key.last(), Some(b'\n' | b'\r')) {
        key.pop();
    }
    if key.is_empty() {
        return Err(KeyError::Empty { path: name });
    }
    if key.len() < RECOMMENDED_KEY_BYTES {
        tracing::warn!(
            "key file {name} holds only {} bytes; use at least {RECOMMENDED_KEY_BYTES}, e.g. `head -c 32 /dev/urandom | base64 > {name}`",
            key.len()
        );
    }
    Ok(Signer::new(&key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;

    fn write_key(dir: &Path, contents: &[u8], mode: u32) -> std::path::PathBuf {
        let path = dir.join("key");
        std::fs::write(&path, contents).expect("write key");
        std::fs::set_permissions(&path, Permissions::from_mode(mode)).expect("chmod key");
        path
    }

    #[test]
    fn refuses_missing_empty_and_world_readable_keys() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = load(&dir.path().join("nope"));
        assert!(matches!(missing, Err(KeyError::Unreadable { .. })));
        let empty = write_key(dir.path(), b"\n", 0o600);
        assert!(matches!(load(&empty), Err(KeyError::Empty { .. })));
        for mode in [0o644, 0o602] {
            let public = write_key(dir.path(), b"0123456789abcdef", mode);
            let error = load(&public).expect_err("open to everyone");
            assert!(error.to_string().contains("chmod 600"), "{error}");
        }
    }

    #[test]
    fn trailing_line_ends_are_not_part_of_the_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let with_newline = load(&write_key(dir.path(), b"0123456789abcdef\r\n", 0o600));
        let signer = with_newline.expect("loads");
        let format = crate::wire::TargetFormat::new("/", 8192, Some(signer));
        let bare =
            crate::wire::TargetFormat::new("/", 8192, Some(Signer::new(b"0123456789abcdef")));
        let fields = crate::wire::Fields::default();
        assert_eq!(format.target(b"m", &fields), bare.target(b"m", &fields));
    }
}
