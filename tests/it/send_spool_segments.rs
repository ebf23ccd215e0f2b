//! Issue 28 finding 1: a spool's memory depends on what its segments hold, not on their size,
//! and a segment that is not a regular file is refused in one line while the rest is
//! delivered. (That the reads stay bounded is asserted in the unit tests, through the disk
//! seam; README's Development section has the command that measures peak RSS and time.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::send_spool::{segments, spool_and_kill};
use crate::support::{self, ReservedPort, TestServer, decoded_set, numbered, run_with_input};

const LIMIT: Duration = Duration::from_secs(120);

/// A spool holding the 3 `lines`, left by a killed `send`: (its directory, the input).
async fn three_spooled(dir: &Path, url: &str) -> (PathBuf, std::collections::BTreeSet<Vec<u8>>) {
    let (input, expected) = numbered(3, "spooled");
    spool_and_kill(dir, url, &input, 3, &[]).await;
    let name = support::spool_rows(dir)
        .await
        .into_keys()
        .next()
        .expect("a spool");
    (dir.join(name), expected)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_segment_padded_with_zeros_to_a_gigabyte_is_delivered_and_its_zero_tail_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = ReservedPort::new();
    let url = port.url();
    let (spool_dir, expected) = three_spooled(dir.path(), &url).await;
    let files = segments(&spool_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    // Sparse: no disk space, what a crash leaves after the file grew.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&files[0])
        .and_then(|file| file.set_len(1 << 30))
        .expect("pad with zeros");

    let rows = support::spool_rows(dir.path()).await;
    assert_eq!(rows.values().map(|(_, n)| n).sum::<u64>(), 3, "{rows:?}");

    let server = TestServer::start_at(port);
    let spool = dir.path().display().to_string();
    let run = run_with_input(&["send", "--spool", &spool, &url], b"", LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    run.assert_logged("zero tail of");
    run.assert_logged(&files[0].display().to_string());
    assert_eq!(decoded_set(&server.answered(503)), expected);
    let cut = std::fs::metadata(&files[0]).map_or(0, |m| m.len());
    assert!(cut < 4096, "the zero tail is cut off: {cut} bytes left");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_segment_linked_to_dev_zero_is_refused_in_one_line_and_the_rest_delivered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = ReservedPort::new();
    let url = port.url();
    let (spool_dir, expected) = three_spooled(dir.path(), &url).await;
    let link = spool_dir.join("seg-00000000000000001000.log");
    std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
    let named = |stderr: &str| {
        stderr
            .lines()
            .filter(|line| line.contains(&link.display().to_string()))
            .count()
    };

    // The listing neither reads it nor stops at it.
    let spool = dir.path().display().to_string();
    let listed = run_with_input(&["spool", &spool], b"", LIMIT).await;
    assert_eq!(listed.code(), Some(0), "{}", listed.stderr);
    assert_eq!(named(&listed.stderr), 1, "{}", listed.stderr);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(" 3 "));

    let server = TestServer::start_at(port);
    let run = run_with_input(&["send", "--spool", &spool, &url], b"", LIMIT).await;
    assert_eq!(named(&run.stderr), 1, "{}", run.stderr);
    run.assert_logged("not a regular file (a symbolic link)");
    assert_eq!(decoded_set(&server.answered(503)), expected);
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    // Out of the spool's way, the link itself (never what it points to).
    let aside = spool_dir
        .join("aside")
        .join(link.file_name().expect("name"));
    assert!(
        aside
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
    );
}
