//! `send --file` resumes a stored position only in the file it was kept for: an inode given
//! to a new file that starts with the same bytes, and a file rewritten in place past the
//! position, are read from their start; a file renamed to a name no pattern matches while it
//! was being read when `send` was killed is finished after the restart. Every test checks the
//! bytes the stand-in received, and under how many ids each message came.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::observe::Metrics;
use crate::send_file::{
    LIMIT, append, arrival_order, expected, lines, server, start, start_polling, stop,
    until_different,
};
use crate::support::{self, TestServer, Watched};

/// A scratch directory with the paths of `app.log` and of the spool in it.
fn app_log() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, spool) = (dir.path().join("app.log"), dir.path().join("spool"));
    (dir, log, spool)
}

/// A first line longer than the 256 bytes the fingerprint covers, as a fixed file header.
fn header() -> String {
    format!("# {}", "h".repeat(300))
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat").ino()
}

/// Moves the position kept for inode `from` to inode `to` in the spool's positions file:
/// what the file system does when it gives a freed inode to a new file, which a test cannot
/// force.
fn give_position(spool: &Path, from: u64, to: u64) {
    if from == to {
        return;
    }
    let path = spool.join("file-positions");
    let text = std::fs::read_to_string(&path).expect("positions");
    let mut moved = 0;
    let mut out = String::new();
    for line in text.lines() {
        let mut fields: Vec<String> = line.split(' ').map(str::to_string).collect();
        if fields.len() > 3 && fields[2] == from.to_string() {
            fields[2] = to.to_string();
            moved += 1;
        }
        out.push_str(&fields.join(" "));
        out.push('\n');
    }
    assert_eq!(moved, 1, "one position for inode {from}: {text}");
    std::fs::write(&path, out).expect("positions");
}

/// Asserts that exactly `want` arrived, each message under that many different ids (a
/// message read again under its first id counts once: decode drops the copy).
fn assert_ids(server: &TestServer, want: &[(Vec<u8>, usize)]) {
    let got: BTreeMap<String, usize> = support::ids_by_message(server)
        .into_iter()
        .map(|(message, ids)| {
            assert!(!ids.contains(""), "a message without id");
            (String::from_utf8_lossy(&message).into_owned(), ids.len())
        })
        .collect();
    let want: BTreeMap<String, usize> = want
        .iter()
        .map(|(message, ids)| (String::from_utf8_lossy(message).into_owned(), *ids))
        .collect();
    assert_eq!(got, want);
}

fn once(groups: &[Vec<Vec<u8>>]) -> Vec<(Vec<u8>, usize)> {
    groups.iter().flatten().map(|m| (m.clone(), 1)).collect()
}

/// SIGKILL, and the exit waited for.
async fn kill(watched: Watched) {
    let mut child = watched.child;
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
}

/// Starts `send` again after a kill or stop that left 80 "r" lines in a file renamed away
/// and 20 "n" lines in the new file at its name: the renamed one is found and finished, and
/// every line arrives once.
async fn restart_finishing_the_renamed_file(
    pattern: &str,
    spool: &Path,
    server: &TestServer,
    args: &[&str],
) -> support::Run {
    let watched = start(pattern, spool, server, args);
    watched
        .line_with("renamed while being read before the restart", LIMIT)
        .await;
    until_different(server, 100).await;
    let run = stop(watched).await;
    assert_ids(server, &once(&[expected("r", 0, 80), expected("n", 0, 20)]));
    run
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inode_given_to_a_new_file_with_the_same_first_bytes_is_read_from_its_start() {
    let (dir, log, spool) = app_log();
    append(&log, &format!("{}\n{}", header(), lines("old", 0, 20)));
    let server = server().await;
    let pattern = log.display().to_string();
    let watched = start(&pattern, &spool, &server, &[]);
    until_different(&server, 21).await;
    stop(watched).await;

    // While stopped: a new file, with the same header and more bytes than the old one,
    // takes the old one's name and (as the position file now says) its inode.
    let old_inode = inode(&log);
    let new = dir.path().join("app.log.new");
    append(&new, &format!("{}\n{}", header(), lines("new", 0, 40)));
    std::fs::rename(&new, &log).expect("replace");
    give_position(&spool, old_inode, inode(&log));
    let watched = start(
        &pattern,
        &spool,
        &server,
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let metrics = Metrics::of(&watched).await;
    until_different(&server, 61).await;
    metrics
        .reaches("drifter_file_read_again_total", 1.0, LIMIT)
        .await;
    let run = stop(watched).await;
    run.assert_logged("not the file its position was kept for");
    // The header twice (two files' first lines, under two keys), every line once.
    let mut want = once(&[expected("old", 0, 20), expected("new", 0, 40)]);
    want.push((header().into_bytes(), 2));
    assert_ids(&server, &want);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_file_holding_all_the_old_one_had_is_told_apart_by_its_birth_time() {
    let (dir, log, spool) = app_log();
    // Shorter than the fingerprint: a new file that starts with these bytes has the same
    // fingerprint and the same bytes before the position.
    append(&log, &lines("s", 0, 3));
    let server = server().await;
    let pattern = log.display().to_string();
    let watched = start(&pattern, &spool, &server, &[]);
    until_different(&server, 3).await;
    stop(watched).await;

    let old_inode = inode(&log);
    let new = dir.path().join("app.log.new");
    append(&new, &format!("{}{}", lines("s", 0, 3), lines("t", 0, 5)));
    std::fs::rename(&new, &log).expect("replace");
    give_position(&spool, old_inode, inode(&log));
    let watched = start(&pattern, &spool, &server, &[]);
    until_different(&server, 8).await;
    let run = stop(watched).await;
    let born = std::fs::metadata(&log).expect("stat").created().is_ok();
    if born {
        // Read from its start: its first lines are new events with the old ones' bytes.
        run.assert_logged("its birth time differs");
        let mut want = once(&[expected("t", 0, 5)]);
        want.extend(expected("s", 0, 3).into_iter().map(|m| (m, 2)));
        assert_ids(&server, &want);
    } else {
        // No birth time on this file system: the content is all there is, and it agrees.
        assert_ids(&server, &once(&[expected("s", 0, 3), expected("t", 0, 5)]));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_rewritten_in_place_past_the_position_with_the_same_first_bytes_is_read_again() {
    let (dir, log, spool) = app_log();
    let before = format!("{}\n{}", header(), lines("before", 0, 10));
    append(&log, &before);
    let server = server().await;
    let watched = start(
        &log.display().to_string(),
        &spool,
        &server,
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let metrics = Metrics::of(&watched).await;
    until_different(&server, 11).await;
    // copytruncate, and the writer fills it past the old end before the next look: one write
    // over the old bytes, so no look can see it shorter.
    std::fs::copy(&log, dir.path().join("app.log.1")).expect("copy");
    let after = format!("{}\n{}", header(), lines("after", 0, 30));
    assert!(after.len() > before.len());
    OpenOptions::new()
        .write(true)
        .open(&log)
        .and_then(|file| file.write_all_at(after.as_bytes(), 0))
        .expect("rewrite in place");
    watched.line_with("truncated or rewritten", LIMIT).await;
    until_different(&server, 41).await;
    metrics
        .reaches("drifter_file_read_again_total", 1.0, LIMIT)
        .await;
    stop(watched).await;
    let mut want = once(&[expected("before", 0, 10), expected("after", 0, 30)]);
    want.push((header().into_bytes(), 2));
    assert_ids(&server, &want);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_while_a_file_renamed_out_of_the_pattern_is_read_leaves_its_rest_for_the_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("app.log");
    let rotated = dir.path().join("app.log.1");
    let spool = dir.path().join("spool");
    append(&log, &lines("r", 0, 50));
    let server = server().await;
    let pattern = log.display().to_string();
    // A poll interval long enough that the rotated file is not finished (two quiet looks)
    // between the test seeing the rotation logged and stopping the process.
    let watched = start_polling(&pattern, &spool, &server, "1s", &[]);
    until_different(&server, 50).await;
    std::fs::rename(&log, &rotated).expect("rotate");
    watched
        .line_with("rotated or deleted: reading it to its end", LIMIT)
        .await;
    // Frozen, then killed: it never reads what the writer adds to the rotated file now.
    support::signal(&watched.child, "STOP");
    append(&rotated, &lines("r", 50, 80));
    append(&log, &lines("n", 0, 20));
    kill(watched).await;

    let run =
        restart_finishing_the_renamed_file(&pattern, &spool, &server, &["--concurrency", "1"])
            .await;
    run.assert_logged("rotated file read to its end");
    // The rest of the rotated file went before the new file's lines.
    let order = arrival_order(&server, "");
    let last_r = order.iter().rposition(|m| m.starts_with(b"r "));
    let first_n = order.iter().position(|m| m.starts_with(b"n "));
    assert!(last_r < first_n, "{last_r:?} {first_n:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_rewritten_then_renamed_away_between_two_looks_does_not_hold_up_the_new_one() {
    let (dir, log, spool) = app_log();
    let before = format!("{}\n{}", header(), lines("before", 0, 10));
    append(&log, &before);
    let server = server().await;
    let watched = start(&log.display().to_string(), &spool, &server, &[]);
    until_different(&server, 11).await;
    // Frozen, so that no look sees the file between its rewrite and its rename: it is found
    // rotated already, with other bytes before its position.
    support::signal(&watched.child, "STOP");
    let after = format!("{}\n{}", header(), lines("after", 0, 30));
    assert!(after.len() > before.len());
    OpenOptions::new()
        .write(true)
        .open(&log)
        .and_then(|file| file.write_all_at(after.as_bytes(), 0))
        .expect("rewrite in place");
    std::fs::rename(&log, dir.path().join("app.log.1")).expect("rotate");
    append(&log, &lines("n", 0, 20));
    support::signal(&watched.child, "CONT");
    // The new file's lines come (they waited for the old file), and the old file's new
    // content too, read again from its start.
    until_different(&server, 61).await;
    stop(watched).await;
    let mut want = once(&[
        expected("before", 0, 10),
        expected("after", 0, 30),
        expected("n", 0, 20),
    ]);
    want.push((header().into_bytes(), 2));
    assert_ids(&server, &want);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_file_start_end_the_file_that_replaced_a_followed_one_while_stopped_is_read_whole() {
    let (dir, log, spool) = app_log();
    append(&log, &lines("skipped", 0, 5));
    let server = server().await;
    let pattern = log.display().to_string();
    let watched = start(&pattern, &spool, &server, &["--file-start", "end"]);
    watched.line_with("reading a new file", LIMIT).await;
    append(&log, &lines("r", 0, 50));
    until_different(&server, 50).await;
    stop(watched).await;

    // While stopped: more lines, then logrotate renames the file away and the writer
    // creates a new one at the path and writes to it.
    append(&log, &lines("r", 50, 80));
    std::fs::rename(&log, dir.path().join("app.log.1")).expect("rotate");
    append(&log, &lines("n", 0, 20));
    restart_finishing_the_renamed_file(&pattern, &spool, &server, &["--file-start", "end"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_while_the_target_of_a_followed_link_is_rotated_leaves_its_rest_for_the_restart() {
    // As Kubernetes' /var/log/containers/*.log: links to the files the runtime writes and
    // rotates in another directory.
    let dir = tempfile::tempdir().expect("temp dir");
    let (real, links) = (dir.path().join("pods"), dir.path().join("containers"));
    std::fs::create_dir(&real).expect("mkdir");
    std::fs::create_dir(&links).expect("mkdir");
    let log = real.join("0.log");
    std::os::unix::fs::symlink(&log, links.join("app.log")).expect("link");
    let spool = dir.path().join("spool");
    append(&log, &lines("r", 0, 50));
    let server = server().await;
    let pattern = format!("{}/*.log", links.display());
    let watched = start_polling(&pattern, &spool, &server, "1s", &[]);
    until_different(&server, 50).await;
    std::fs::rename(&log, real.join("0.log.20261204-000000")).expect("rotate");
    append(&log, &lines("n", 0, 20));
    watched
        .line_with("rotated or deleted: reading it to its end", LIMIT)
        .await;
    support::signal(&watched.child, "STOP");
    append(&real.join("0.log.20261204-000000"), &lines("r", 50, 80));
    kill(watched).await;

    restart_finishing_the_renamed_file(&pattern, &spool, &server, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_appended_in_pieces_while_they_are_read_never_look_like_a_rewrite() {
    let (_dir, log, spool) = app_log();
    // Lines short and long (over the 256 bytes of an anchor), some with CRLF, written in
    // pieces that split them anywhere, while `send` reads: every check at every read and
    // look then sees a line half written at the end of the file.
    let mut text = String::new();
    let mut want = Vec::new();
    for i in 0..3000 {
        let message = format!(
            "w {i:05} {}",
            "x".repeat(if i % 5 == 0 { 700 } else { i % 40 })
        );
        text.push_str(&message);
        text.push_str(if i % 7 == 0 { "\r\n" } else { "\n" });
        want.push((message.into_bytes(), 1));
    }
    let server = server().await;
    let watched = start(&log.display().to_string(), &spool, &server, &[]);
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut random = fastrand::Rng::with_seed(7);
            let mut rest = text.as_bytes();
            while !rest.is_empty() {
                let piece = random.usize(1..600).min(rest.len());
                append(&log, &String::from_utf8_lossy(&rest[..piece]));
                rest = &rest[piece..];
            }
        })
    };
    until_different(&server, 3000).await;
    writer.join().expect("writer");
    let run = stop(watched).await;
    assert!(!run.stderr.contains("rewritten"), "{}", run.stderr);
    assert_ids(&server, &want);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_out_of_reach_for_a_while_does_not_make_its_files_read_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("mkdir");
    let log = logs.join("app.log");
    let spool = dir.path().join("spool");
    append(&log, &lines("m", 0, 20));
    let server = server().await;
    let watched = start(&log.display().to_string(), &spool, &server, &[]);
    until_different(&server, 20).await;
    // The path names nothing for a while (an unmounted volume, a directory moved away, a
    // permission taken back), then the same file is there again, grown.
    let away = dir.path().join("away");
    std::fs::rename(&logs, &away).expect("move away");
    watched
        .line_with("rotated file read to its end", LIMIT)
        .await;
    std::fs::rename(&away, &logs).expect("move back");
    append(&log, &lines("m", 20, 30));
    until_different(&server, 30).await;
    stop(watched).await;
    assert_ids(&server, &once(&[expected("m", 0, 30)]));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_files_renamed_away_before_a_restart_are_finished_oldest_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("app.log");
    let (one, two) = (dir.path().join("app.log.1"), dir.path().join("app.log.2"));
    let spool = dir.path().join("spool");
    append(&log, &lines("a", 0, 30));
    let server = server().await;
    let pattern = log.display().to_string();
    let watched = start_polling(&pattern, &spool, &server, "1s", &[]);
    until_different(&server, 30).await;
    std::fs::rename(&log, &one).expect("rotate");
    append(&log, &lines("b", 0, 10));
    // Killed while the first file, rotated, is not finished yet, and the new one waits.
    watched
        .line_with("rotated or deleted: reading it to its end", LIMIT)
        .await;
    support::signal(&watched.child, "STOP");
    kill(watched).await;

    // While stopped: both get more lines, and logrotate runs again.
    append(&one, &lines("a", 30, 60));
    append(&log, &lines("b", 10, 40));
    std::fs::rename(&one, &two).expect("rotate");
    std::fs::rename(&log, &one).expect("rotate");
    append(&log, &lines("c", 0, 20));
    let watched = start(&pattern, &spool, &server, &["--concurrency", "1"]);
    until_different(&server, 120).await;
    stop(watched).await;
    assert_ids(
        &server,
        &once(&[
            expected("a", 0, 60),
            expected("b", 0, 40),
            expected("c", 0, 20),
        ]),
    );
    let order: Vec<u8> = arrival_order(&server, "")
        .iter()
        .filter(|m| m.starts_with(b"a 0003") || m.starts_with(b"b 0001") || m.starts_with(b"c "))
        .map(|m| m[0])
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(order, sorted, "{:?}", String::from_utf8_lossy(&order));
}
