//! The spool directories: their owner, and what purge must keep.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::common::{COMMAND_LIMIT, INSTALLED, SPOOL, UNIT_STATE};
use crate::support::{self, Reply, TestServer};

/// An rsyslog setting that drops privileges to a user, in /etc/rsyslog.d while it lives.
pub(super) struct PrivilegeDrop(PathBuf);

impl PrivilegeDrop {
    pub(super) fn to(user: &str) -> Self {
        let path = PathBuf::from("/etc/rsyslog.d/zz-drifter-deb-test.conf");
        std::fs::write(&path, format!("$PrivDropToUser {user}\n")).expect("write");
        PrivilegeDrop(path)
    }
}

impl Drop for PrivilegeDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The spool directory belongs to `user` and its group, and to no one else.
pub(super) fn spool_is_owned_by(user: &str) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let spool = std::fs::metadata(SPOOL).expect("the spool directory");
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let ids: Vec<u32> = passwd
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{user}:")))
        .map(|rest| {
            rest.split(':')
                .skip(1)
                .take(2)
                .flat_map(str::parse)
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        ids,
        [spool.uid(), spool.gid()],
        "{SPOOL}'s owner, for {user}"
    );
    assert_eq!(spool.permissions().mode() & 0o777, 0o700);
}

/// A message sent while the load balancer refuses everything, left in the package's spool.
pub(super) async fn leave_a_message_in_the_spool() {
    let server = TestServer::start(|_, _| Reply::Status(502)).await;
    let mut command = tokio::process::Command::from(support::clean_command(INSTALLED));
    command
        .args([
            "send",
            &server.url(),
            "--spool",
            SPOOL,
            "--drain-timeout",
            "1s",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("start the installed binary");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"kept by purge\n").await.expect("write");
    }
    let output = tokio::time::timeout(COMMAND_LIMIT, child.wait_with_output())
        .await
        .expect("send exits after its drain timeout")
        .expect("wait for send");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.contains("1 left in the spool"),
        "{}: {stderr}",
        output.status
    );
    assert!(
        !segments(Path::new(SPOOL)).is_empty(),
        "no segment in {SPOOL}"
    );
}

/// What an instance of the unit leaves in its state directory (systemd cannot run it here): a
/// delivered spool (its lock and state files), or one that holds a segment.
pub(super) fn unit_state(holding: bool) {
    let spool = Path::new(UNIT_STATE).join("deb-test").join("0123456789ab");
    std::fs::create_dir_all(&spool).expect("create an instance's spool");
    std::fs::write(spool.join("lock"), b"").expect("write");
    std::fs::write(spool.join("state"), [0u8; 128]).expect("write");
    if holding {
        std::fs::write(spool.join("seg-00000000000000000000.log"), [1u8; 128]).expect("write");
    }
}

/// The spool segment files in the spools under `dir` (or one level deeper, the unit's).
pub(super) fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found = spool_segments(dir);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            found.extend(spool_segments(&entry.path()));
        }
    }
    found
}

/// The spool segment files in the spools directly under `dir`.
fn spool_segments(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(spools) = std::fs::read_dir(dir) else {
        return found;
    };
    for spool in spools.flatten() {
        let Ok(files) = std::fs::read_dir(spool.path()) else {
            continue;
        };
        found.extend(
            files
                .flatten()
                .map(|file| file.path())
                .filter(|path| path.to_string_lossy().ends_with(".log")),
        );
    }
    found
}
