//! Issue 27: what the spool and the dead-letter file hold is their user's alone, and a
//! starting `send` adopts only spools its own user alone could have written.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::support::{self, Reply, ReservedPort, Run, TestServer, decoded_set};

const LIMIT: Duration = Duration::from_secs(60);

/// Runs the binary with umask 000, so that every mode it creates is its own choice.
async fn run_with_umask_zero(args: &[&str], input: &[u8]) -> Run {
    let mut command = support::binary_command(args);
    // SAFETY: umask(2) is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let mut child = support::spawn_command(command);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(input).await.expect("write input");
    drop(stdin);
    support::wait(child, LIMIT).await
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").mode() & 0o7777
}

/// Leaves `lines` in a spool under `dir`: the load balancer is unreachable and the drain gives
/// up at once.
async fn leave_in_spool(dir: &Path, lines: &[u8]) {
    let closed = ReservedPort::new();
    let spool = dir.display().to_string();
    let args = [
        "send",
        "--spool",
        &spool,
        "--drain-timeout",
        "100ms",
        &closed.url(),
    ];
    let run = support::run_with_input(&args, lines, LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    run.assert_logged("left in the spool");
}

fn spools_in(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.is_dir())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spool_and_the_dead_letter_file_are_owner_only_whatever_the_umask() {
    let server = TestServer::rejecting(b"dead").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("spool");
    let dead = dir.path().join("dead.txt");
    let args = [
        "send",
        "--spool",
        spool.to_str().expect("utf-8"),
        "--dead-letter",
        dead.to_str().expect("utf-8"),
        "--drain-timeout",
        "100ms",
        &server.url(),
    ];
    let run = run_with_umask_zero(&args, b"kept\ndead letter\n").await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(mode(&spool), 0o700, "the spool directory");
    assert_eq!(mode(&dead), 0o600, "the dead-letter file");
    let own = spools_in(&spool);
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(mode(&own[0]), 0o700, "{}", own[0].display());
    let files: Vec<_> = std::fs::read_dir(&own[0])
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("lock")) && files.iter().any(|f| f.ends_with("state"))
    );
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spool_planted_by_another_user_or_writable_by_others_is_never_adopted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("spool");
    leave_in_spool(&root, b"planted one\nplanted two\n").await;
    let planted = spools_in(&root).pop().expect("a spool");
    let others_uid = if support::effective_uid() == 65534 {
        65533
    } else {
        65534
    };
    let chowned = std::os::unix::fs::chown(&planted, Some(others_uid), None);
    if chowned.is_err() {
        // Without the right to give a file away, plant one writable by others instead.
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    leave_in_spool(&dir.path().join("other"), b"group writable\n").await;
    let shared = spools_in(&dir.path().join("other")).pop().expect("a spool");
    std::fs::set_permissions(shared.join("state"), std::fs::Permissions::from_mode(0o660))
        .expect("chmod");
    std::fs::rename(&shared, root.join(shared.file_name().expect("a name"))).expect("move");

    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let args = [
        "send",
        "--spool",
        root.to_str().expect("utf-8"),
        &server.url(),
    ];
    let run = support::run_with_input(&args, b"mine\n", LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("is not adopted").count(),
        2,
        "one warning per spool: {}",
        run.stderr
    );
    assert_eq!(
        decoded_set(&server.answered(503)),
        std::collections::BTreeSet::from([b"mine".to_vec()]),
        "nothing of the planted or shared spools was sent"
    );
    let listing =
        support::run_with_input(&["spool", root.to_str().expect("utf-8")], b"", LIMIT).await;
    let text = String::from_utf8_lossy(&listing.stdout);
    assert_eq!(text.matches("not adopted").count(), 2, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_directory_is_warned_about_once_and_a_sticky_one_is_not() {
    for (directory_mode, warned) in [(0o777, true), (0o1777, false)] {
        let server = TestServer::start(|_, _| Reply::Status(503)).await;
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(directory_mode))
            .expect("chmod");
        let spool = dir.path().display().to_string();
        let run =
            support::run_with_input(&["send", "--spool", &spool, &server.url()], b"one\n", LIMIT)
                .await;
        assert_eq!(run.code(), Some(0), "{}", run.stderr);
        let warnings = run.stderr.matches("writable by other users").count();
        assert_eq!(
            warnings,
            usize::from(warned),
            "mode {directory_mode:o}: {}",
            run.stderr
        );
        assert_eq!(
            server.answered(503).len(),
            1,
            "mode {directory_mode:o}: it still works"
        );
    }
}
