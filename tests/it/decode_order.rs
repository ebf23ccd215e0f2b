//! Read back in the order it was sent: `decode` writes each sender's messages by sequence
//! number, through `mock-elb` with 64 requests in flight and a file a second, with two senders
//! spread over two load-balancer nodes logging into one directory; a message that comes after
//! the reorder window has passed its place is written and counted late; `--order arrival`
//! keeps the order the files list; several paths, and several accounts under one path, are
//! read in one time order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::decode_gaps::{alb_file, alb_file_of};
use crate::support::{self, Stand, log_files};

const LIMIT: Duration = Duration::from_secs(120);

/// `count` lines `<prefix> <n>`, numbered from `from`, as sent and as expected back.
fn lines(prefix: &str, from: usize, count: usize) -> (Vec<u8>, Vec<String>) {
    let expected: Vec<String> = (from..from + count)
        .map(|n| format!("{prefix} {n:05}"))
        .collect();
    let input = expected.iter().flat_map(|l| [l.as_bytes(), b"\n"].concat());
    (input.collect(), expected)
}

/// The stdout lines of `decode` with `args`, after checking it succeeded and, unless it was
/// told `--order arrival`, wrote nothing late.
async fn decoded(args: &[&str]) -> Vec<String> {
    let mut full = vec!["decode"];
    full.extend_from_slice(args);
    let run = support::run_with_input(&full, b"", LIMIT).await;
    assert_eq!(run.code(), Some(0), "decode: {}", run.stderr);
    if !args.contains(&"arrival") {
        run.assert_logged("; 0 late");
    }
    String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

async fn send(url: &str, spool: &Path, input: &[u8]) {
    let spool = spool.display().to_string();
    let args = [
        "send",
        "--sequence",
        "--concurrency",
        "64",
        "--spool",
        &spool,
        url,
    ];
    let sent = support::run_with_input(&args, input, LIMIT).await;
    assert_eq!(sent.code(), Some(0), "send: {}", sent.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_sender_64_in_flight_comes_back_in_the_order_sent_in_both_formats() {
    for format in ["classic", "alb"] {
        let stand = Stand::start(&["--format", format, "--rotate-secs", "1"]).await;
        let spool = tempfile::tempdir().expect("temp dir");
        let (input, expected) = lines("line", 0, 2000);
        send(&stand.url, spool.path(), &input).await;
        let logs = stand.stop("TERM").await;
        let dir = logs.path().display().to_string();
        assert_eq!(decoded(&[&dir]).await, expected, "{format}");
    }
}

/// Copies the log tree under `from` into `into`, file by file: one log directory.
fn merge_tree(from: &Path, into: &Path) {
    for file in log_files(from) {
        let relative = file.strip_prefix(from).expect("under its root");
        let target = into.join(relative);
        std::fs::create_dir_all(target.parent().expect("a directory")).expect("create dirs");
        std::fs::copy(&file, &target).expect("copy a log file");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_senders_over_two_nodes_each_come_back_in_their_own_order() {
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b"] {
        let args = ["--format", "alb", "--rotate-secs", "1", "--name", name];
        nodes.push(Stand::start(&args).await);
    }
    // Each sender keeps its name and numbers in its spool: it sends to one node, then to the
    // other, as a real load balancer spreads one client's requests over its nodes.
    let spools = [tempfile::tempdir(), tempfile::tempdir()].map(|dir| dir.expect("temp dir"));
    let (a_first, mut a_expected) = lines("a", 0, 500);
    let (b_first, mut b_expected) = lines("b", 0, 500);
    tokio::join!(
        send(&nodes[0].url, spools[0].path(), &a_first),
        send(&nodes[1].url, spools[1].path(), &b_first),
    );
    let (a_then, a_more) = lines("a", 500, 500);
    let (b_then, b_more) = lines("b", 500, 500);
    tokio::join!(
        send(&nodes[1].url, spools[0].path(), &a_then),
        send(&nodes[0].url, spools[1].path(), &b_then),
    );
    a_expected.extend(a_more);
    b_expected.extend(b_more);
    let second = nodes.pop().expect("node b");
    let first = nodes.pop().expect("node a");
    let logs = first.stop("TERM").await;
    let other = second.stop("TERM").await;
    merge_tree(other.path(), logs.path());
    let dir = logs.path().display().to_string();
    let got = decoded(&[&dir]).await;
    let of = |prefix: &str| -> Vec<String> {
        got.iter()
            .filter(|line| line.starts_with(prefix))
            .cloned()
            .collect()
    };
    assert_eq!(got.len(), 2000);
    assert_eq!(of("a "), a_expected);
    assert_eq!(of("b "), b_expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_after_the_window_is_written_late_and_arrival_keeps_the_listed_order() {
    let tree = tempfile::tempdir().expect("temp dir");
    // Two nodes' files of one interval, read one after the other: number 2 was logged on the
    // second node, between 1 and 3 of the first.
    alb_file(
        tree.path(),
        "10.0.0.1",
        "2026-12-01T12:05:00Z",
        &[
            (1, "2026-12-01T12:01:00Z"),
            (3, "2026-12-01T12:01:10Z"),
            (4, "2026-12-01T12:04:00Z"),
        ],
    );
    alb_file(
        tree.path(),
        "10.0.0.2",
        "2026-12-01T12:05:00Z",
        &[(2, "2026-12-01T12:01:05Z")],
    );
    let dir = tree.path().display().to_string();
    // The default window (10 minutes for ALB) covers the interval.
    assert_eq!(decoded(&[&dir]).await, ["m1", "m2", "m3", "m4"]);
    assert_eq!(
        decoded(&["--order", "arrival", &dir]).await,
        ["m1", "m3", "m4", "m2"]
    );
    // A minute is too short: 1 and 3 are written before node 2's file is read.
    let run =
        support::run_with_input(&["decode", "--reorder-window", "1m", &dir], b"", LIMIT).await;
    assert_eq!(run.code(), Some(0), "late is no loss: {}", run.stderr);
    assert_eq!(run.stdout, b"m1\nm3\nm2\nm4\n");
    run.assert_logged("0 missing by sequence number; 1 late (written out of order)");
}

/// One sender's messages 1 to 30, logged 28 seconds apart from 12:00:10 over three 5-minute
/// intervals, the odd numbers in `odd`'s ALB files and the even ones in `even`'s (root and
/// account), one file per interval each.
fn split_over(odd: (&Path, &str), even: (&Path, &str)) -> Vec<String> {
    let logged_at = |n: u64| 10 + (n - 1) * 28;
    for end_minute in [5, 10, 15] {
        for ((root, account), parity) in [(odd, 1), (even, 0)] {
            let entries: Vec<(u64, String)> = (1..=30u64)
                .filter(|n| n % 2 == parity && logged_at(*n) / 300 == end_minute / 5 - 1)
                .map(|n| {
                    let at = logged_at(n);
                    (n, format!("2026-12-01T12:{:02}:{:02}Z", at / 60, at % 60))
                })
                .collect();
            let entries: Vec<(u64, &str)> =
                entries.iter().map(|(n, at)| (*n, at.as_str())).collect();
            let end = format!("2026-12-01T12:{end_minute:02}:00Z");
            alb_file_of(root, account, "10.0.0.1", &end, &entries);
        }
    }
    (1..=30).map(|n| format!("m{n}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_paths_are_read_in_one_time_order() {
    let (a, b) = (tempfile::tempdir(), tempfile::tempdir());
    let (a, b) = (a.expect("temp dir"), b.expect("temp dir"));
    let expected = split_over((a.path(), "111111111111"), (b.path(), "222222222222"));
    let (a, b) = (
        a.path().display().to_string(),
        b.path().display().to_string(),
    );
    assert_eq!(decoded(&[&a, &b]).await, expected);
    assert_eq!(decoded(&[&b, &a]).await, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_accounts_under_one_path_are_read_in_one_time_order() {
    let tree = tempfile::tempdir().expect("temp dir");
    let expected = split_over((tree.path(), "111111111111"), (tree.path(), "222222222222"));
    let dir = tree.path().display().to_string();
    assert_eq!(decoded(&[&dir]).await, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_highest_sequence_numbers_come_back_in_order() {
    // Releasing u64::MAX stepped the slots past the last number: decode panicked (debug).
    let tree = tempfile::tempdir().expect("temp dir");
    let top = u64::MAX;
    alb_file(
        tree.path(),
        "10.0.0.1",
        "2026-12-01T12:05:00Z",
        &[
            (top, "2026-12-01T12:01:00Z"),
            (top - 1, "2026-12-01T12:01:05Z"),
        ],
    );
    let dir = tree.path().display().to_string();
    assert_eq!(
        decoded(&[&dir]).await,
        [format!("m{}", top - 1), format!("m{top}")]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_order_is_one_line_and_exit_2_and_sort_is_deprecated() {
    for bad in [
        &["--order", "time"][..],
        &["--reorder-window", "soon"],
        &["--reorder-bytes", "lots"],
    ] {
        let mut args = vec!["decode"];
        args.extend_from_slice(bad);
        let run = support::run_with_input(&args, b"", LIMIT).await;
        assert_eq!(run.code(), Some(2), "{bad:?}: {}", run.stderr);
        let first = run.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: invalid value") && first.contains(bad[0]),
            "{bad:?}: {}",
            run.stderr
        );
    }
    let run = support::run_with_input(&["decode", "--sort"], b"", LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    run.assert_logged("--sort is deprecated");
}

/// m1 and m2 in a file ending 12:05 on Dec 1, m3 in the next; returns the first file.
fn three_messages_of_dec_1(root: &Path) -> PathBuf {
    let node = "10.0.0.1";
    let first = alb_file(
        root,
        node,
        "2026-12-01T12:05:00Z",
        &[(1, "2026-12-01T12:01:00Z"), (2, "2026-12-01T12:02:00Z")],
    );
    alb_file(
        root,
        node,
        "2026-12-01T12:10:00Z",
        &[(3, "2026-12-01T12:06:00Z")],
    );
    first
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_without_an_end_time_in_a_day_directory_is_read_in_its_day() {
    let tree = tempfile::tempdir().expect("temp dir");
    let node = "10.0.0.1";
    three_messages_of_dec_1(tree.path());
    // A whole day under a name without an end time (an export, a renamed file): its
    // directory is the only time it has, so it is read after the days before, not a day
    // early, which would put the clock a day ahead of Dec 1's files and write them late.
    let export = alb_file(
        tree.path(),
        node,
        "2026-12-02T23:05:00Z",
        &[(4, "2026-12-02T00:01:00Z"), (5, "2026-12-02T23:02:00Z")],
    );
    std::fs::rename(&export, export.with_file_name("export.log")).expect("rename");
    let dir = tree.path().display().to_string();
    assert_eq!(decoded(&[&dir]).await, ["m1", "m2", "m3", "m4", "m5"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_without_an_end_time_beside_a_dated_tree_is_read_by_its_first_entry() {
    let tree = tempfile::tempdir().expect("temp dir");
    three_messages_of_dec_1(tree.path());
    // The newest entries in a file of one's own beside the tree (an export, a download),
    // spanning more than the window: read first, it put the clock past the tree's files,
    // which all came out late.
    let current = alb_file(
        tree.path(),
        "10.0.0.2",
        "2026-12-01T13:05:00Z",
        &[(4, "2026-12-01T12:21:00Z"), (5, "2026-12-01T13:00:00Z")],
    );
    std::fs::rename(&current, tree.path().join("current.log")).expect("rename");
    let dir = tree.path().display().to_string();
    assert_eq!(decoded(&[&dir]).await, ["m1", "m2", "m3", "m4", "m5"]);
    let run = support::run_with_input(&["decode", &dir], b"", LIMIT).await;
    run.assert_logged("; 0 late (written out of order)");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_named_twice_or_under_another_named_path_is_read_once() {
    let tree = tempfile::tempdir().expect("temp dir");
    let first = three_messages_of_dec_1(tree.path());
    let alias = tree.path().join("alias");
    std::os::unix::fs::symlink(tree.path().join("AWSLogs"), &alias).expect("symlink");
    let show = |path: &Path| path.display().to_string();
    let (dir, file) = (show(tree.path()), show(&first));
    let account = show(&tree.path().join("AWSLogs/123456789012"));
    let dotted = format!("{dir}/./AWSLogs");
    let (alias, day) = (show(&alias), show(first.parent().expect("its day")));
    let both = (&b"m1\nm2\nm3\n"[..], 2);
    for (paths, (stdout, files)) in [
        ([&dir, &dir], both),
        ([&dir, &account], both),
        ([&account, &dir], both),
        ([&file, &dir], both),
        ([&dotted, &account], both),
        ([&alias, &day], both),
        ([&file, &file], (&b"m1\nm2\n"[..], 1)),
    ] {
        let args = ["decode", paths[0].as_str(), paths[1].as_str()];
        let run = support::run_with_input(&args, b"", LIMIT).await;
        assert_eq!(run.code(), Some(0), "{paths:?}: {}", run.stderr);
        let written = String::from_utf8_lossy(&run.stdout);
        assert_eq!(written.as_bytes(), stdout, "{paths:?}: {}", run.stderr);
        run.assert_logged(&format!("in {files} files"));
    }
    // A path the other one's walk does not reach (hidden) is read as well.
    let hidden = tree.path().join(".export");
    std::fs::create_dir(&hidden).expect("mkdir");
    std::fs::copy(&first, hidden.join("copy.log")).expect("copy");
    let run = support::run_with_input(&["decode", &dir, &show(&hidden)], b"", LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    run.assert_logged("in 3 files");
    // One under another that does not exist is still one the user got wrong.
    let typo = format!("{dir}/AWSLogz");
    let run = support::run_with_input(&["decode", &dir, &typo], b"", LIMIT).await;
    assert_eq!(run.code(), Some(2), "{}", run.stderr);
    run.assert_logged(&format!("cannot read {typo}"));
}
