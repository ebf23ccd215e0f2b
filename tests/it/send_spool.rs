//! `send --spool`: what was read survives kills, restarts and a full spool, and comes out later
//! with its first id and sequence number; damaged files never stop a start. (A full disk needs
//! a mount namespace: `tests/components/spool_full_disk.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::{
    self, Reply, ReservedPort, TestServer, Watched, decoded_set, numbered, run_with_input,
};

const LIMIT: Duration = Duration::from_secs(120);
/// A drain deadline for runs that must deliver everything they hold: well under LIMIT, well
/// over what a loaded machine needs.
const DRAIN_ALL: &str = "90s";

/// The `&i=` of every target.
fn ids(targets: &[Vec<u8>]) -> BTreeMap<Vec<u8>, BTreeSet<String>> {
    let mut found: BTreeMap<Vec<u8>, BTreeSet<String>> = BTreeMap::new();
    for target in targets {
        let text = String::from_utf8_lossy(target).into_owned();
        let id = text
            .split('&')
            .find_map(|f| f.strip_prefix("i="))
            .unwrap_or_default()
            .to_string();
        found.entry(support::decode(target)).or_default().insert(id);
    }
    found
}

/// `send --spool SPOOL --ids content`, then `extra`, then `url`: how these tests run it.
pub(super) fn spool_args<'a>(spool: &'a str, extra: &[&'a str], url: &'a str) -> Vec<&'a str> {
    let mut args = vec!["send", "--spool", spool, "--ids", "content"];
    args.extend_from_slice(extra);
    args.push(url);
    args
}

/// Starts `send --spool DIR` against a port that refuses connections, writes `input`, waits
/// until the spool holds `expect` messages, and SIGKILLs it.
pub(super) async fn spool_and_kill(
    dir: &Path,
    url: &str,
    input: &[u8],
    expect: u64,
    extra: &[&str],
) {
    let spool = dir.display().to_string();
    let sequenced = [&["--sequence"], extra].concat();
    let mut child = support::spawn(&spool_args(&spool, &sequenced, url));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(input).await.expect("write input");
    // stdin stays open: the process is killed, it never sees the end of input.
    let held =
        support::eventually_async(LIMIT, || async { support::spooled(dir).await >= expect }).await;
    assert!(
        held,
        "the spool holds {} of {expect}",
        support::spooled(dir).await
    );
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    drop(stdin);
}

#[tokio::test(flavor = "multi_thread")]
async fn kills_during_an_outage_lose_nothing_and_replays_keep_their_ids_and_numbers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = ReservedPort::new();
    let url = port.url();
    let mut expected = BTreeSet::new();
    let mut total = 0;
    for round in 0..3 {
        let (input, lines) = numbered(2000, &format!("kill{round}"));
        expected.extend(lines);
        total += 2000;
        spool_and_kill(dir.path(), &url, &input, total, &[]).await;
        let rows = support::spool_rows(dir.path()).await;
        assert_eq!(
            rows.len(),
            1,
            "each restart takes the dead owner's spool: {rows:?}"
        );
    }
    let server = TestServer::start_at(port);
    let spool = dir.path().display().to_string();
    // What the drain deadline leaves stays in the spool by design (exit 0); on a loaded
    // machine 6000 deliveries can take longer than the default 8 s.
    let args = spool_args(&spool, &["--sequence", "--drain-timeout", DRAIN_ALL], &url);
    let run = run_with_input(&args, b"", LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    run.assert_logged("6000 recovered from the spool");
    let answered = server.answered(503);
    assert_eq!(
        answered.len(),
        6000,
        "each once: nothing was delivered before"
    );
    assert!(
        decoded_set(&answered) == expected,
        "every line, as it was read"
    );
    // One sender, the spool's, numbered 1..=6000 across the three processes: no gap.
    let numbers = support::sequences(&answered);
    let senders: BTreeSet<&String> = numbers.iter().map(|(s, _)| s).collect();
    assert_eq!(senders.len(), 1, "{senders:?}");
    let name = support::spool_rows(dir.path())
        .await
        .into_keys()
        .next()
        .expect("spool");
    assert!(senders.contains(&name));
    let got: Vec<u64> = numbers.iter().map(|(_, n)| *n).collect();
    assert_eq!(got, (1..=6000).collect::<Vec<u64>>());
    assert_eq!(support::spooled(dir.path()).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drain_deadline_leaves_messages_in_the_spool_for_the_next_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().display().to_string();
    let port = ReservedPort::new();
    let url = port.url();
    let (input, expected) = numbered(300, "left");
    let args = spool_args(&spool, &["--drain-timeout", "1s"], &url);
    let run = run_with_input(&args, &input, LIMIT).await;
    assert_eq!(
        run.code(),
        Some(0),
        "left in the spool is not lost: {}",
        run.stderr
    );
    run.assert_logged("300 left in the spool");
    run.assert_logged("lost 0");
    assert_eq!(support::spooled(dir.path()).await, 300);

    // Anything in between that delivered one and was killed before recording it would make a
    // duplicate; here the server counts exactly what the leftover run sends.
    let server = TestServer::start_at(port);
    let args = spool_args(&spool, &["--drain-timeout", DRAIN_ALL], &url);
    let run = run_with_input(&args, b"", LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let answered = server.answered(503);
    assert!(decoded_set(&answered) == expected);
    assert_eq!(answered.len(), 300);
    assert_eq!(support::spooled(dir.path()).await, 0);
}

pub(super) fn segments(spool: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(spool)
        .expect("list spool")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_tail_and_a_corrupt_record_never_stop_a_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = ReservedPort::new();
    let url = port.url();
    let (input, expected) = numbered(1000, "damaged");
    // Segments of 32 KiB: several for 1000 lines.
    spool_and_kill(
        dir.path(),
        &url,
        &input,
        1000,
        &["--spool-max-bytes", "256K"],
    )
    .await;
    let name = support::spool_rows(dir.path())
        .await
        .into_keys()
        .next()
        .expect("spool");
    let spool_dir = dir.path().join(&name);
    let files = segments(&spool_dir);
    assert!(
        files.len() > 1,
        "the test needs several segments: {files:?}"
    );
    // One byte flipped in the middle of the first segment; half a record after the last.
    let first = &files[0];
    let mut bytes = std::fs::read(first).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(first, &bytes).expect("write");
    let last = files.last().expect("last");
    let mut bytes = std::fs::read(last).expect("read");
    let tail = bytes[bytes.len() - 30..].to_vec();
    bytes.extend_from_slice(&tail);
    std::fs::write(last, &bytes).expect("write");

    let server = TestServer::start_at(port);
    let spool = dir.path().display().to_string();
    let args = spool_args(&spool, &["--drain-timeout", DRAIN_ALL], &url);
    let run = run_with_input(&args, b"", LIMIT).await;
    // The damaged record was acknowledged once: its loss is counted and fails the run (issue
    // 21 item 9); it used to be "lost 0" and exit 0.
    assert_eq!(run.code(), Some(1), "{}", run.stderr);
    run.assert_logged("1 corrupt records skipped");
    run.assert_logged("torn tail");
    run.assert_logged("lost 1 (corrupt 1)");
    let delivered = decoded_set(&server.answered(503));
    assert_eq!(delivered.len(), 999, "all but the damaged one");
    assert!(delivered.is_subset(&expected));
    assert!(
        spool_dir
            .join("aside")
            .join(first.file_name().expect("name"))
            .exists()
    );
    // And the next start finds a clean spool: the loss is not counted twice.
    let run = run_with_input(&args, b"", LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("corrupt"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_spool_holds_input_back_until_delivery_makes_room() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().display().to_string();
    let port = ReservedPort::new();
    let url = port.url();
    // About 900 KB of messages through a 64 KiB spool: more than the spool, the pipe and the
    // program's read buffer (256 KiB) hold together.
    let (input, expected) = numbered(8000, &format!("full {}", "x".repeat(100)));
    let args = ["send", "--spool", &spool, "--spool-max-bytes", "64K", &url];
    let mut child = support::spawn(&args);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let sender = Watched::new(child);
    let writer = tokio::spawn(async move {
        stdin.write_all(&input).await.expect("write input");
    });
    // The load balancer comes up once the spool is full and input is held back.
    sender.line_with("the spool is full", LIMIT).await;
    assert!(
        !writer.is_finished(),
        "input held back: {} messages spooled",
        support::spooled(dir.path()).await
    );
    let server = TestServer::start_at(port);
    writer.await.expect("join writer");
    let run = sender.wait(LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let answered = server.answered(503);
    assert!(decoded_set(&answered) == expected);
    assert_eq!(answered.len(), 8000);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_share_a_directory_and_a_third_adopts_both_spools() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().display().to_string();
    let port = ReservedPort::new();
    let url = port.url();
    let args = spool_args(&spool, &["--drain-timeout", DRAIN_ALL], &url);
    let mut first = support::spawn(&args);
    let mut second = support::spawn(&args);
    let (one, mut expected) = numbered(500, "first");
    let (two, lines) = numbered(700, "second");
    expected.extend(lines);
    let mut first_in = first.stdin.take().expect("stdin");
    let mut second_in = second.stdin.take().expect("stdin");
    first_in.write_all(&one).await.expect("write");
    second_in.write_all(&two).await.expect("write");
    let both = support::eventually(LIMIT, || {
        std::fs::read_dir(dir.path()).map_or(0, |d| d.count()) == 2
    })
    .await;
    assert!(both, "two spools");
    let all_spooled = support::eventually_async(LIMIT, || async {
        support::spooled(dir.path()).await == 1200
    })
    .await;
    assert!(all_spooled, "{:?}", support::spool_rows(dir.path()).await);
    let rows = support::spool_rows(dir.path()).await;
    let mut held: Vec<(String, u64)> = rows.values().cloned().collect();
    held.sort();
    assert_eq!(
        held,
        [("alive".to_string(), 500), ("alive".to_string(), 700)]
    );
    for child in [&mut first, &mut second] {
        child.start_kill().expect("kill");
        let _ = child.wait().await;
    }
    let owners: BTreeSet<String> = support::spool_rows(dir.path())
        .await
        .values()
        .map(|(o, _)| o.clone())
        .collect();
    assert_eq!(owners, BTreeSet::from(["gone".to_string()]));

    let server = TestServer::start_at(port);
    let run = run_with_input(&args, b"", LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let answered = server.answered(503);
    assert!(decoded_set(&answered) == expected);
    assert_eq!(answered.len(), 1200);
    assert!(ids(&answered).values().all(|ids| ids.len() == 1));
    // The adopted spool, delivered, is gone; the one taken over stays, empty.
    let rows = support::spool_rows(dir.path()).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(support::spooled(dir.path()).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn confirm_mode_answers_once_a_message_is_spooled_not_once_it_is_delivered() {
    // Refused for the whole test.
    let nowhere = ReservedPort::new();
    let url = nowhere.url();
    for mode in ["--confirm", "--transactions"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let spool = dir.path().display().to_string();
        let args = [
            "send",
            mode,
            "--spool",
            &spool,
            "--spool-sync",
            "strict",
            "--drain-timeout",
            "1s",
            &url,
        ];
        let mut child = support::spawn(&args);
        let mut stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let mut replies = BufReader::new(stdout).lines();
        let input = if mode == "--confirm" {
            "a\nb\nc\n".to_string()
        } else {
            "BEGIN TRANSACTION\na\nb\nc\nCOMMIT TRANSACTION\n".to_string()
        };
        stdin.write_all(input.as_bytes()).await.expect("write");
        let expected: &[&str] = if mode == "--confirm" {
            &["OK", "OK", "OK", "OK"]
        } else {
            &[
                "OK",
                "OK",
                "DEFER_COMMIT",
                "DEFER_COMMIT",
                "DEFER_COMMIT",
                "OK",
            ]
        };
        for want in expected {
            let got = tokio::time::timeout(Duration::from_secs(10), replies.next_line())
                .await
                .expect("a reply while the load balancer is down")
                .expect("read")
                .expect("a line");
            assert_eq!(got, *want, "{mode}");
        }
        drop(stdin);
        let run = support::wait(child, LIMIT).await;
        assert_eq!(run.code(), Some(0), "{mode}: {}", run.stderr);
        run.assert_logged("3 left in the spool");
        assert_eq!(support::spooled(dir.path()).await, 3);
    }
}

/// Issue 21 item 5: eight processes started together on one directory, forty rounds. Every
/// start succeeds, every message arrives, and no sender.sequence pair is used for two
/// messages (a spool being removed must never get a second owner).
#[tokio::test(flavor = "multi_thread")]
async fn restart_storms_never_fail_a_start_nor_reuse_a_sequence_number() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().display().to_string();
    let url = server.url();
    let (processes, rounds) = (8, 40);
    for round in 0..rounds {
        let starts = (0..processes).map(|process| {
            let input =
                format!("round {round} process {process} a\nround {round} process {process} b\n");
            let args = ["send", "--spool", &spool, "--sequence", &url];
            async move { run_with_input(&args, input.as_bytes(), LIMIT).await }
        });
        for run in futures_util::future::join_all(starts).await {
            assert_eq!(run.code(), Some(0), "round {round}: {}", run.stderr);
        }
    }
    let answered = server.answered(503);
    let mut messages_of: BTreeMap<(String, u64), BTreeSet<Vec<u8>>> = BTreeMap::new();
    for target in &answered {
        let sequence = support::sequences(std::slice::from_ref(target));
        let pair = sequence
            .into_iter()
            .next()
            .expect("a sequence number on every request");
        messages_of
            .entry(pair)
            .or_default()
            .insert(support::decode(target));
    }
    for (pair, messages) in &messages_of {
        assert_eq!(messages.len(), 1, "{pair:?} was used for {messages:?}");
    }
    let delivered: BTreeSet<Vec<u8>> = answered.iter().map(|t| support::decode(t)).collect();
    assert_eq!(
        delivered.len(),
        processes * rounds * 2,
        "every message arrived"
    );
}

/// Issue 21 item 4: a spool under the directory that this process cannot lock (here its lock
/// is a directory; in the field, root's spool or a read-only mount) is skipped with a
/// warning, never a reason not to start.
#[tokio::test(flavor = "multi_thread")]
async fn a_spool_that_cannot_be_locked_is_skipped_with_a_warning() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("0123456789ab").join("lock")).expect("a bad lock");
    let spool = dir.path().display().to_string();
    let run = run_with_input(&["send", "--spool", &spool, &server.url()], b"one\n", LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    run.assert_logged("cannot lock spool");
    assert_eq!(
        decoded_set(&server.answered(503)),
        BTreeSet::from([b"one".to_vec()])
    );
}
