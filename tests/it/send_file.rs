//! `send --file`: lines of log files reach the load balancer once each (after ids), in file
//! order, through appends, rotation by rename, copytruncate, deletion, new files matching a
//! glob, restarts and kills. Every test checks the bytes the stand-in received.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::observe::Metrics;
use crate::support::{self, Reply, TestServer, Watched};

pub(crate) const LIMIT: Duration = Duration::from_secs(60);

pub(crate) async fn server() -> TestServer {
    TestServer::start(|_, _| Reply::Status(503)).await
}

/// `send --file PATTERN --spool DIR` (plus `extra`), watched.
pub(crate) fn start(pattern: &str, spool: &Path, server: &TestServer, extra: &[&str]) -> Watched {
    start_polling(pattern, spool, server, "50ms", extra)
}

/// [`start`] with `--file-poll-interval poll`.
pub(crate) fn start_polling(
    pattern: &str,
    spool: &Path,
    server: &TestServer,
    poll: &str,
    extra: &[&str],
) -> Watched {
    let spool = spool.display().to_string();
    let mut args = vec![
        "send",
        "--file",
        pattern,
        "--spool",
        &spool,
        "--file-poll-interval",
        poll,
    ];
    args.extend_from_slice(extra);
    let url = server.url();
    args.push(&url);
    Watched::new(support::spawn(&args))
}

pub(crate) fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    file.write_all(text.as_bytes()).expect("append");
}

/// Lines `<prefix> <from>` .. `<prefix> <to - 1>`, each with its LF.
pub(crate) fn lines(prefix: &str, from: usize, to: usize) -> String {
    (from..to).map(|i| format!("{prefix} {i:05}\n")).collect()
}

pub(crate) fn expected(prefix: &str, from: usize, to: usize) -> Vec<Vec<u8>> {
    (from..to)
        .map(|i| format!("{prefix} {i:05}").into_bytes())
        .collect()
}

async fn until_received(server: &TestServer, count: usize) {
    let arrived =
        support::eventually(LIMIT, || support::received_once_each(server).len() >= count).await;
    assert!(
        arrived,
        "{} of {count} messages arrived",
        support::received_once_each(server).len()
    );
}

/// Waits for `count` different messages, some of which may come under several ids.
pub(crate) async fn until_different(server: &TestServer, count: usize) {
    let arrived =
        support::eventually(LIMIT, || support::ids_by_message(server).len() >= count).await;
    assert!(
        arrived,
        "{} of {count} messages arrived",
        support::ids_by_message(server).len()
    );
}

/// The messages of `prefix` in the order they first arrived.
pub(crate) fn arrival_order(server: &TestServer, prefix: &str) -> Vec<Vec<u8>> {
    let mut seen = BTreeSet::new();
    server
        .answered(503)
        .iter()
        .map(|target| support::decode(target))
        .filter(|message| message.starts_with(prefix.as_bytes()) && seen.insert(message.clone()))
        .collect()
}

fn assert_exactly(server: &TestServer, groups: &[Vec<Vec<u8>>]) {
    let got: BTreeSet<Vec<u8>> = support::received_once_each(server).into_keys().collect();
    let want: BTreeSet<Vec<u8>> = groups.iter().flatten().cloned().collect();
    let missing: Vec<_> = want
        .difference(&got)
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    let extra: Vec<_> = got
        .difference(&want)
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
}

pub(crate) async fn stop(watched: Watched) -> support::Run {
    support::signal(&watched.child, "TERM");
    let run = watched.wait(LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    run
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_before_start_and_appended_arrive_once_in_order_and_a_restart_resumes_at_the_next_line()
 {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("app.log");
    let spool = dir.path().join("spool");
    append(&log, &lines("a", 0, 100));
    let server = server().await;
    let pattern = log.display().to_string();
    let watched = start(&pattern, &spool, &server, &["--concurrency", "1"]);
    until_received(&server, 100).await;
    append(&log, &lines("a", 100, 200));
    // A line being written: it waits for its LF.
    append(&log, "a 00200 half");
    until_received(&server, 200).await;
    stop(watched).await;
    assert_exactly(&server, &[expected("a", 0, 200)]);
    assert_eq!(arrival_order(&server, "a "), expected("a", 0, 200));

    append(&log, " and the rest\n");
    append(&log, &lines("a", 201, 210));
    let watched = start(&pattern, &spool, &server, &["--concurrency", "1"]);
    until_received(&server, 210).await;
    stop(watched).await;
    let mut want = expected("a", 0, 200);
    want.push(b"a 00200 half and the rest".to_vec());
    want.extend(expected("a", 201, 210));
    assert_exactly(&server, &[want.clone()]);
    assert_eq!(arrival_order(&server, "a "), want);
    assert_eq!(server.answered(503).len(), 210, "nothing was sent twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_file_is_read_to_its_end_partial_line_included_before_the_new_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("app.log");
    let spool = dir.path().join("spool");
    append(&log, &lines("old", 0, 50));
    let server = server().await;
    let watched = start(&log.display().to_string(), &spool, &server, &[]);
    until_received(&server, 50).await;
    append(&log, &lines("old", 50, 80));
    append(&log, "old last without lf");
    std::fs::rename(&log, dir.path().join("app.log.1")).expect("rotate");
    append(&log, &lines("new", 0, 40));
    until_received(&server, 121).await;
    let run = stop(watched).await;
    run.assert_logged("rotated file read to its end");
    let mut old = expected("old", 0, 80);
    old.push(b"old last without lf".to_vec());
    assert_exactly(&server, &[old, expected("new", 0, 40)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn copytruncate_is_seen_and_the_file_is_read_again_from_its_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("app.log");
    let spool = dir.path().join("spool");
    append(&log, &lines("before", 0, 60));
    let server = server().await;
    let watched = start(&log.display().to_string(), &spool, &server, &[]);
    until_received(&server, 60).await;
    // What logrotate's copytruncate does: copy, then truncate in place.
    std::fs::copy(&log, dir.path().join("app.log.1")).expect("copy");
    OpenOptions::new()
        .write(true)
        .open(&log)
        .and_then(|file| file.set_len(0))
        .expect("truncate");
    watched.line_with("truncated", LIMIT).await;
    append(&log, &lines("after", 0, 30));
    until_received(&server, 90).await;
    // Written past the old length before a look: seen by the first bytes changing.
    std::fs::copy(&log, dir.path().join("app.log.2")).expect("copy");
    std::fs::write(&log, lines("again", 0, 200)).expect("truncate and write");
    until_received(&server, 290).await;
    stop(watched).await;
    assert_exactly(
        &server,
        &[
            expected("before", 0, 60),
            expected("after", 0, 30),
            expected("again", 0, 200),
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_file_still_open_is_read_to_its_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("app.log");
    let spool = dir.path().join("spool");
    append(&log, &lines("gone", 0, 10));
    let server = server().await;
    let strict = ["--spool-sync", "strict"];
    let watched = start(&log.display().to_string(), &spool, &server, &strict);
    until_received(&server, 10).await;
    let mut writer = OpenOptions::new().append(true).open(&log).expect("open");
    std::fs::remove_file(&log).expect("delete");
    writer
        .write_all(lines("gone", 10, 500).as_bytes())
        .expect("write after delete");
    until_received(&server, 500).await;
    watched
        .line_with("rotated file read to its end", LIMIT)
        .await;
    stop(watched).await;
    assert_exactly(&server, &[expected("gone", 0, 500)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_glob_picks_up_files_that_appear_later() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("spool");
    append(&dir.path().join("a.log"), &lines("a", 0, 20));
    append(&dir.path().join("skipped.txt"), &lines("txt", 0, 5));
    let server = server().await;
    let pattern = format!("{}/*.log", dir.path().display());
    let watched = start(
        &pattern,
        &spool,
        &server,
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let metrics = Metrics::of(&watched).await;
    until_received(&server, 20).await;
    append(&dir.path().join("b.log"), &lines("b", 0, 30));
    append(&dir.path().join("a.log"), &lines("a", 20, 25));
    until_received(&server, 55).await;
    // Per file: 55 lines of 8 bytes each, all of them read.
    assert_eq!(metrics.value("drifter_file_lines_total").await, 55.0);
    assert_eq!(
        metrics.value("drifter_file_read_bytes_total").await,
        55.0 * 8.0
    );
    stop(watched).await;
    assert_exactly(&server, &[expected("a", 0, 25), expected("b", 0, 30)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn kills_at_random_moments_while_a_file_grows_lose_nothing_and_repeat_only_under_the_same_id()
{
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("app.log");
    let spool = dir.path().join("spool");
    const TOTAL: usize = 6000;
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            for batch in 0..TOTAL / 20 {
                append(&log, &lines("k", batch * 20, batch * 20 + 20));
                // Paced, so that the kills fall while the file grows.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let server = server().await;
    let pattern = log.display().to_string();
    let mut killed_at = Vec::new();
    for round in 1..=4 {
        let watched = start(&pattern, &spool, &server, &[]);
        let threshold = (round * TOTAL / 6 + fastrand::usize(0..TOTAL / 12)).min(TOTAL);
        until_received(&server, threshold).await;
        let mut child = watched.child;
        child.start_kill().expect("SIGKILL");
        let _ = child.wait().await;
        killed_at.push(support::received_once_each(&server).len());
    }
    writer.await.expect("writer");
    let watched = start(&pattern, &spool, &server, &[]);
    until_received(&server, TOTAL).await;
    stop(watched).await;
    // received() already checked that every repeat carries its first id.
    assert_exactly(&server, &[expected("k", 0, TOTAL)]);
    let requests = server.answered(503).len();
    assert!(
        requests >= TOTAL,
        "{requests} requests for {TOTAL} lines (killed at {killed_at:?})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn file_without_spool_is_refused_before_reading() {
    let run = support::run_with_input(
        &["send", "--file", "/var/log/none.log", "http://127.0.0.1:9/"],
        b"never read\n",
        LIMIT,
    )
    .await;
    assert_eq!(run.code(), Some(2), "{}", run.stderr);
    run.assert_logged("--file needs --spool DIR");
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn file_start_end_skips_what_was_there_but_not_the_line_being_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("app.log");
    let spool = dir.path().join("spool");
    append(&log, &lines("old", 0, 10));
    append(&log, "being");
    let server = server().await;
    let watched = start(
        &log.display().to_string(),
        &spool,
        &server,
        &["--file-start", "end"],
    );
    watched.line_with("reading a new file", LIMIT).await;
    append(&log, " written\n");
    append(&log, &lines("new", 0, 5));
    until_received(&server, 6).await;
    stop(watched).await;
    let mut want = vec![b"being written".to_vec()];
    want.extend(expected("new", 0, 5));
    assert_exactly(&server, &[want]);
}

#[tokio::test(flavor = "multi_thread")]
async fn files_and_settings_come_from_the_environment_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    append(&a, &lines("a", 0, 3));
    append(&b, &lines("b", 0, 4));
    let server = server().await;
    let files = format!("{},{}", a.display(), b.display());
    let spool = dir.path().join("spool").display().to_string();
    let url = server.url();
    let child = support::spawn_with_env(
        &["send"],
        &[
            ("DRIFTER_URL", &url),
            ("DRIFTER_FILE", &files),
            ("DRIFTER_SPOOL", &spool),
            ("DRIFTER_FILE_START", "beginning"),
            ("DRIFTER_FILE_POLL_INTERVAL", "50ms"),
        ],
    );
    let watched = Watched::new(child);
    until_received(&server, 7).await;
    stop(watched).await;
    assert_exactly(&server, &[expected("a", 0, 3), expected("b", 0, 4)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_renamed_to_a_name_the_glob_also_matches_is_read_once_and_the_new_one_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("app.log");
    let spool = dir.path().join("spool");
    append(&log, &lines("first", 0, 30));
    let server = server().await;
    let pattern = format!("{}/app.log*", dir.path().display());
    let watched = start(&pattern, &spool, &server, &["--spool-sync", "off"]);
    until_received(&server, 30).await;
    let rotated = dir.path().join("app.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    append(&rotated, &lines("first", 30, 40));
    append(&log, &lines("second", 0, 20));
    until_received(&server, 60).await;
    stop(watched).await;
    assert_exactly(
        &server,
        &[expected("first", 0, 40), expected("second", 0, 20)],
    );
    assert_eq!(server.answered(503).len(), 60, "nothing read twice");
}
