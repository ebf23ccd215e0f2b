//! `send --spool` on a disk that fills up: a 256 KiB tmpfs of its own, in a private mount
//! namespace (`unshare -rm`, where user namespaces are allowed). It waits for room and drops
//! nothing.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::support::{self, Missing, ReservedPort, TestServer, Watched, decoded_set, numbered};

const LIMIT: Duration = Duration::from_secs(120);

/// Whether this machine lets an unprivileged user namespace mount a tmpfs.
fn can_mount_a_tmpfs() -> bool {
    support::clean_command("unshare")
        .args(["-rm", "sh", "-c", "mount -t tmpfs -o size=256k tmpfs /mnt"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

async fn a_full_disk_is_waited_out_and_nothing_is_dropped() -> Result<(), Missing> {
    if !can_mount_a_tmpfs() {
        return Err(Missing::because(
            "unshare -rm cannot mount a tmpfs here (no unshare, or user namespaces blocked)",
            "util-linux's unshare, with user namespaces allowed",
        ));
    }
    let port = ReservedPort::new();
    let url = port.url();
    let (input, expected) = numbered(5000, &format!("disk {}", "y".repeat(100)));
    let dir = tempfile::tempdir().expect("temp dir");
    let mount = dir.path().display().to_string();
    let script = format!(
        "mount -t tmpfs -o size=256k tmpfs {mount} && exec {} send --spool {mount}/spool {url}",
        support::BIN
    );
    let child = tokio::process::Command::from(support::clean_command("unshare"))
        .args(["-rm", "sh", "-c", &script])
        .env("DRIFTER_LOG_LEVEL", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start unshare");
    let mut watched = Watched::new(child);
    let mut stdin = watched.child.stdin.take().expect("stdin");
    let writer = tokio::spawn(async move {
        stdin.write_all(&input).await.expect("write input");
    });
    // The load balancer comes back only once the disk was seen full.
    watched.line_with("the spool is full", LIMIT).await;
    let server = TestServer::start_at(port);
    writer.await.expect("join writer");
    let run = watched.wait(LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let answered = server.answered(503);
    assert!(
        decoded_set(&answered) == expected,
        "every line once the disk had room"
    );
    Ok(())
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    crate::trials![a_full_disk_is_waited_out_and_nothing_is_dropped]
}
