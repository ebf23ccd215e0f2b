//! `decode s3://…` against a real S3 API: moto in server mode on 127.0.0.1, holding what
//! `mock-elb` wrote. The S3 read must equal the local read of the same tree, byte for byte;
//! `--since`/`--until` must fetch only the objects that can hold entries in range; `--follow`
//! must pick up objects uploaded after it started; each failure is one line and exit 2 for
//! that path while the others are still decoded.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drifter_rsyslog::access_log::{self, Balancer, Format, Request};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::support::{self, Missing, Moto, Run, Stand};

const LIMIT: Duration = Duration::from_secs(60);
/// How long a stopped `decode --follow` may take to end.
const STOP_LIMIT: Duration = Duration::from_secs(10);
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

/// The messages every format's corpus carries: the characters the wire format must escape,
/// bytes that are not UTF-8, and a line long enough to be sent as fragments.
pub fn corpus_lines() -> Vec<u8> {
    let mut input = Vec::new();
    for line in [
        &b"plain ascii"[..],
        b"plus+sign percent% 100%25 amp& equals= a=b&c=d",
        b"quotes \" ' and \\ backslash \\x41",
        "caf\u{e9} \u{1f600} \u{2028}".as_bytes(),
        b"not utf-8: \xff\xfe \xc3(",
        b"  leading and trailing spaces  ",
        b"tab\there",
    ] {
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    // Fragments at --max-url-bytes 300, with a multi-byte character cut between two of them.
    let long: String = (0..40).map(|i| format!("{i}:\u{e9}\u{1f600}+% ")).collect();
    input.extend_from_slice(long.as_bytes());
    input.push(b'\n');
    input
}

/// A `mock-elb` tree in `format` holding [`corpus_lines`] (sent in two batches, so that there
/// are two files) and a copy of the first file under another name: each of its requests twice,
/// as after a resend. The stand-in answers 204, as the CloudFormation stack's fixed response
/// does, and `send --accept 204` takes that as delivered.
pub async fn corpus_tree(format: &str) -> tempfile::TempDir {
    corpus_tree_sent_with(format, &[]).await
}

/// [`corpus_tree`], each batch sent with `send_args` too.
pub async fn corpus_tree_sent_with(format: &str, send_args: &[&str]) -> tempfile::TempDir {
    let stand = Stand::start(&["--format", format, "--rotate-secs", "1", "--status", "204"]).await;
    for batch in [&corpus_lines()[..], b"second file\n"] {
        let mut args = vec![
            "send",
            "--ids",
            "content",
            "--max-url-bytes",
            "300",
            "--accept",
            "204",
        ];
        args.extend_from_slice(send_args);
        args.push(&stand.url);
        let sent = support::run_with_input(&args, batch, LIMIT).await;
        assert_eq!(sent.code(), Some(0), "send: {}", sent.stderr);
        // The next batch goes to a later file once this one's file is complete.
        let before = completed_files(stand.dir.path());
        let rotated =
            support::eventually(LIMIT, || completed_files(stand.dir.path()) > before).await;
        assert!(rotated, "the stand-in completed a file within {LIMIT:?}");
    }
    let dir = stand.stop("TERM").await;
    let files = support::log_files(dir.path());
    assert!(files.len() >= 2, "two rotations: {files:?}");
    let first = &files[0];
    let name = first.file_name().unwrap_or_default().to_string_lossy();
    let copy = first.with_file_name(name.replacen("_127.0.0.1_", "_127.0.0.2_", 1));
    std::fs::copy(first, copy).expect("copy a log file");
    dir
}

/// How many log files the stand-in under `dir` has completed.
fn completed_files(dir: &Path) -> usize {
    if dir.join("AWSLogs").is_dir() {
        support::log_files(dir).len()
    } else {
        0
    }
}

pub async fn decode_with(moto: &Moto, args: &[&str], extra_env: &[(&str, &str)]) -> Run {
    let mut full = vec!["decode"];
    full.extend_from_slice(args);
    // `extra_env` overrides moto's; an empty value leaves the variable out.
    let mut env = moto.env();
    env.retain(|(k, _)| !extra_env.iter().any(|(name, _)| name == k));
    env.extend(extra_env.iter().filter(|(_, v)| !v.is_empty()));
    support::run_with_env(&full, &env, b"", LIMIT).await
}

fn error_lines(run: &Run) -> Vec<&str> {
    run.stderr.lines().filter(|l| l.contains("ERROR")).collect()
}

async fn s3_reads_equal_local_reads_byte_for_byte_in_both_formats() -> Result<(), Missing> {
    let moto = Moto::start(&[]).await?;
    for format in ["classic", "alb"] {
        let tree = corpus_tree(format).await;
        moto.upload("logs", &format!("{format}/elb"), tree.path());
        let local = tree.path().display().to_string();
        let from_disk = decode_with(&moto, &[&local], &[]).await;
        assert_eq!(from_disk.code(), Some(0), "{format}: {}", from_disk.stderr);
        let url = format!("s3://logs/{format}/elb/");
        let from_s3 = decode_with(&moto, &[&url], &[]).await;
        assert_eq!(from_s3.code(), Some(0), "{format}: {}", from_s3.stderr);
        assert!(
            support::logged_count(&from_s3, "duplicates") > Some(0),
            "{format}: the copied file's requests are dropped: {}",
            from_s3.stderr
        );
        assert_eq!(
            from_s3.stdout, from_disk.stdout,
            "{format}: same messages in the same order"
        );
        // send's workers may reorder requests: the same lines, in the order they arrived.
        let sorted = |bytes: &[u8]| {
            let mut lines: Vec<Vec<u8>> =
                bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            lines.sort();
            lines
        };
        let expected = [&corpus_lines()[..], b"second file\n"].concat();
        assert_eq!(
            sorted(&from_s3.stdout),
            sorted(&expected),
            "{format}: what was sent, the copy's duplicates dropped"
        );
        // One object named whole, as a local file can be.
        let first = &support::log_files(tree.path())[0];
        let key = first
            .strip_prefix(tree.path())
            .expect("under the tree")
            .display();
        let one = decode_with(&moto, &[&format!("s3://logs/{format}/elb/{key}")], &[]).await;
        assert_eq!(one.code(), Some(0), "{format}: {}", one.stderr);
        assert!(one.stderr.contains("in 1 files"), "{}", one.stderr);
    }
    Ok(())
}

/// An ALB log file ending at `end`, with one request at each of `times`, whose message is
/// the request's time (`at 2026-11-30T05:56`).
pub fn alb_file(root: &Path, end: OffsetDateTime, times: &[OffsetDateTime]) -> PathBuf {
    let day = end
        .format(format_description!("[year]/[month]/[day]"))
        .expect("format");
    let stamp = end
        .format(format_description!("[year][month][day]T[hour][minute]Z"))
        .expect("format");
    let name = format!(
        "{ACCOUNT}_elasticloadbalancing_{REGION}_app.lb.0123456789abcdef_{stamp}_10.0.0.1_x.log.gz"
    );
    let dir = root.join(format!(
        "AWSLogs/{ACCOUNT}/elasticloadbalancing/{REGION}/{day}"
    ));
    std::fs::create_dir_all(&dir).expect("create dirs");
    let mut lines = Vec::new();
    for &at in times {
        entry(
            Format::Alb,
            at,
            DRIFTER_AGENT,
            &message_target(&minute(at)),
            &mut lines,
        );
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&lines).expect("compress");
    let path = dir.join(name);
    std::fs::write(&path, gz.finish().expect("compress")).expect("write");
    path
}

pub fn minute(at: OffsetDateTime) -> String {
    at.format(format_description!(
        "at [year]-[month]-[day]T[hour]:[minute]"
    ))
    .expect("format")
}

/// `/?at%202026-…`: what `send` makes of a message of plain characters.
fn message_target(message: &str) -> String {
    format!("/?{}", message.replace(' ', "%20"))
}

pub const DRIFTER_AGENT: &str = "drifter-rsyslog/0.1.0";

/// The load balancer the tests' hand-made entries come from.
fn balancer() -> Balancer {
    Balancer {
        name: "lb".into(),
        id: "0123456789abcdef".into(),
        account: ACCOUNT.into(),
        region: REGION.into(),
        node_ip: "10.0.0.1".into(),
    }
}

/// One access-log entry in `format`: a GET of `target` from `agent` at `at`, answered 204.
pub fn entry(format: Format, at: OffsetDateTime, agent: &str, target: &str, out: &mut Vec<u8>) {
    let request = Request {
        time: at,
        client: ([10, 1, 2, 3], 40000).into(),
        method: "GET".into(),
        url: format!("http://lb.example:80{target}").into_bytes(),
        version: "HTTP/1.1".into(),
        user_agent: Some(agent.as_bytes().to_vec()),
        status: 204,
        received_bytes: 0,
        sent_bytes: 0,
        tls: None,
        unreadable: false,
    };
    access_log::write_entry(format, &balancer(), &request, out);
}

pub fn utc(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).expect("time")
}

/// Three days of files every 6 hours, each with requests 4 and 1 minutes before its end.
fn three_days(root: &Path) -> Vec<OffsetDateTime> {
    let mut times = Vec::new();
    let start = utc("2026-11-29T00:00:00Z");
    for file in 0..12 {
        let end = start + time::Duration::hours(6 * file);
        let requests = [
            end - time::Duration::minutes(4),
            end - time::Duration::minutes(1),
        ];
        alb_file(root, end, &requests);
        times.extend(requests);
    }
    times
}

async fn since_and_until_fetch_only_the_objects_that_can_hold_entries_in_range()
-> Result<(), Missing> {
    let moto = Moto::start(&[]).await?;
    let tree = tempfile::tempdir().expect("temp dir");
    let times = three_days(tree.path());
    moto.upload("ranged", "", tree.path());
    let (since, until) = ("2026-11-30T05:00:00Z", "2026-11-30T13:00:00Z");
    let expected: Vec<u8> = times
        .iter()
        .filter(|&&at| at >= utc(since) && at < utc(until))
        .flat_map(|&at| format!("{}\n", minute(at)).into_bytes())
        .collect();
    assert_eq!(expected.iter().filter(|&&b| b == b'\n').count(), 4);
    let range = ["--since", since, "--until", until];
    let before = moto.requests().len();
    let from_s3 = decode_with(&moto, &[&range[..], &["s3://ranged/"]].concat(), &[]).await;
    assert_eq!(from_s3.code(), Some(0), "{}", from_s3.stderr);
    assert_eq!(from_s3.stdout, expected);
    let requests = moto.requests().split_off(before);
    let fetched: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("GET /ranged/AWSLogs/") && !r.contains("list-type"))
        .collect();
    // The files ending 06:00 and 12:00 of Nov 30; 18:00's first request is at 17:56.
    assert_eq!(fetched.len(), 2, "{fetched:#?}");
    assert!(
        fetched
            .iter()
            .all(|r| r.contains("_20261130T0600Z_") || r.contains("_20261130T1200Z_"))
    );
    let listed_days: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains("list-type") && r.contains("2026%2F11%2F29"))
        .collect();
    assert!(
        listed_days.is_empty(),
        "Nov 29 is not listed: {listed_days:#?}"
    );
    // Local trees are pruned the same way; the entries' own times decide at the edges.
    let local = tree.path().display().to_string();
    let from_disk = decode_with(&moto, &[&range[..], &[&local]].concat(), &[]).await;
    assert_eq!(from_disk.stdout, expected);
    assert!(
        from_disk.stderr.contains("in 2 files"),
        "{}",
        from_disk.stderr
    );
    // A time ago counts back from "now", pinned here: 3 days before Dec 1, 23:00 is before
    // every file of the tree.
    let now = "2026-12-01T23:00:00Z";
    let relative = decode_with(&moto, &["--now", now, "--until", "3d", &local], &[]).await;
    assert!(
        relative.stdout.is_empty() && relative.stderr.contains("in 0 files"),
        "{}",
        relative.stderr
    );
    let recent = decode_with(&moto, &["--now", now, "--since", "18h", &local], &[]).await;
    assert_eq!(
        recent.stdout, b"at 2026-12-01T05:56\nat 2026-12-01T05:59\nat 2026-12-01T11:56\nat 2026-12-01T11:59\nat 2026-12-01T17:56\nat 2026-12-01T17:59\n",
        "{}",
        recent.stderr
    );
    Ok(())
}

async fn follow_decodes_objects_uploaded_after_it_started_and_joins_fragments_across_them()
-> Result<(), Missing> {
    let moto = Moto::start(&[]).await?;
    // One message in two fragments, the second uploaded later in a file of its own.
    let long = "x".repeat(150);
    let dry = support::run_with_input(
        &[
            "send",
            "--dry-run",
            "--max-url-bytes",
            "100",
            "http://lb.example/",
        ],
        format!("first\n{long}\n").as_bytes(),
        LIMIT,
    )
    .await;
    let targets: Vec<String> = String::from_utf8_lossy(&dry.stdout)
        .lines()
        .filter_map(|line| line.rsplit('\t').next().map(str::to_string))
        .collect();
    assert_eq!(targets.len(), 3, "one whole and two fragments: {targets:?}");
    let now = OffsetDateTime::now_utc();
    let upload = |name: &str, targets: &[String]| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut lines = Vec::new();
        for target in targets {
            entry(Format::Alb, now, DRIFTER_AGENT, target, &mut lines);
        }
        std::fs::write(dir.path().join(name), lines).expect("write");
        moto.upload("followed", "", dir.path());
    };
    upload("1.log", &targets[..2]);
    let env = moto.env();
    let mut child = support::spawn_with_env(
        &[
            "decode",
            "--follow",
            "--poll-interval",
            "200ms",
            // Each line once a second has passed its log time: the clock drives the window.
            "--reorder-window",
            "1s",
            "s3://followed/",
        ],
        &env,
    );
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    assert_eq!(next_line(&mut lines).await.as_deref(), Some("first"));
    upload("2.log", &targets[2..]);
    assert_eq!(next_line(&mut lines).await.as_deref(), Some(long.as_str()));
    support::signal(&child, "TERM");
    let run = support::wait(child, LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    run.assert_logged("decoded 2 messages from 3 lines in 2 files");
    run.assert_logged("0 incomplete messages");
    Ok(())
}

type StdoutLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

async fn next_line(lines: &mut StdoutLines) -> Option<String> {
    tokio::time::timeout(LIMIT, lines.next_line())
        .await
        .expect("a line within the limit")
        .expect("read stdout")
}

async fn follow_reads_a_rotating_local_stand_in() -> Result<(), Missing> {
    let stand = Stand::start(&["--rotate-secs", "1"]).await;
    let dir = stand.dir.path().display().to_string();
    let mut child = support::spawn(&[
        "decode",
        "--follow",
        "--poll-interval",
        "200ms",
        "--reorder-window",
        "1s",
        &dir,
    ]);
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    for batch in ["one", "two"] {
        let sent = support::run_with_input(
            &["send", &stand.url],
            format!("{batch}\n").as_bytes(),
            LIMIT,
        )
        .await;
        assert_eq!(sent.code(), Some(0), "send: {}", sent.stderr);
        assert_eq!(next_line(&mut lines).await.as_deref(), Some(batch));
    }
    support::signal(&child, "INT");
    let run = support::wait(child, LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    run.assert_logged("decoded 2 messages");
    stand.stop("TERM").await;
    Ok(())
}

async fn each_s3_failure_is_one_line_and_exit_2_while_other_paths_are_decoded()
-> Result<(), Missing> {
    let moto = Moto::start(&[]).await?;
    let local = tempfile::tempdir().expect("temp dir");
    alb_file(
        local.path(),
        utc("2026-11-30T06:00:00Z"),
        &[utc("2026-11-30T05:59:00Z")],
    );
    let local_path = local.path().display().to_string();
    moto.upload("logs", "present", local.path());
    let closed = support::ReservedPort::new();
    let nowhere = format!("http://127.0.0.1:{}", closed.port);
    // (case, what its error line says, the environment that makes it)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let cases: [Case; 4] = [
        ("no bucket", "no such bucket", vec![]),
        (
            "no credentials",
            "no credentials",
            // Instance metadata, the last link of the chain, on a closed loopback port.
            vec![
                ("AWS_ACCESS_KEY_ID", ""),
                ("AWS_SECRET_ACCESS_KEY", ""),
                ("AWS_METADATA_ENDPOINT", nowhere.as_str()),
            ],
        ),
        (
            "network",
            "Connection refused",
            vec![("AWS_ENDPOINT_URL", nowhere.as_str())],
        ),
        ("no such prefix", "no such key or prefix", vec![]),
    ];
    for (case, wording, env) in cases {
        let url = if case == "no such prefix" {
            "s3://logs/absent/"
        } else {
            "s3://no-such-bucket/"
        };
        let run = decode_with(&moto, &[url, &local_path], &env).await;
        assert_eq!(run.code(), Some(2), "{case}: {}", run.stderr);
        assert_eq!(
            run.stdout, b"at 2026-11-30T05:59\n",
            "{case}: the local path is read"
        );
        let errors = error_lines(&run);
        assert_eq!(errors.len(), 1, "{case}: one line: {errors:#?}");
        assert!(errors[0].contains(wording), "{case}: {errors:#?}");
    }

    let locked = Moto::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "10")]).await?;
    let key = locked.fixture("denied-reader", &["locked"]);
    let (id, secret) = key.trim().split_once(' ').expect("key id and secret");
    let keys = [("AWS_ACCESS_KEY_ID", id), ("AWS_SECRET_ACCESS_KEY", secret)];
    let run = decode_with(&locked, &["s3://locked/", &local_path], &keys).await;
    assert_eq!(run.code(), Some(2), "{}", run.stderr);
    assert_eq!(run.stdout, b"at 2026-11-30T05:59\n");
    let errors = error_lines(&run);
    assert!(
        errors.len() == 1 && errors[0].contains("access denied"),
        "{errors:#?}"
    );
    let forged = [
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "x"),
    ];
    let run = decode_with(&locked, &["s3://locked/"], &forged).await;
    let errors = error_lines(&run);
    assert!(
        errors.len() == 1 && errors[0].contains("credentials were rejected"),
        "{errors:#?}"
    );
    Ok(())
}

async fn a_stop_during_the_first_read_ends_the_follow_with_its_summary() -> Result<(), Missing> {
    let moto = Moto::start(&[]).await?;
    // Several files of 20,000 entries: some are still queued or being fetched at the stop.
    let tree = tempfile::tempdir().expect("temp dir");
    let start = utc("2026-11-30T00:00:00Z");
    for file in 1..=4 {
        let end = start + time::Duration::hours(file);
        let times: Vec<OffsetDateTime> = (0..20_000)
            .map(|n| end - time::Duration::milliseconds(n))
            .collect();
        alb_file(tree.path(), end, &times);
    }
    moto.upload("busy", "", tree.path());
    let env = moto.env();
    let mut child =
        support::spawn_with_env(&["decode", "--follow", "--jobs", "1", "s3://busy/"], &env);
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    assert!(next_line(&mut lines).await.is_some(), "reading has begun");
    // Nothing more is read from its stdout until the stop: the pipe fills and the first read
    // cannot finish, so the stop lands during it. Objects may still be queued, fetched or
    // half-read: the stop must not wait on them.
    support::signal(&child, "TERM");
    let mut printed = 1;
    while next_line(&mut lines).await.is_some() {
        printed += 1;
    }
    // The stop's own deadline, not a speed: a stop that waited for the rest would still end.
    let run = support::wait(child, STOP_LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let decoded = support::logged_count(&run, "messages from").expect("the summary's count");
    assert_eq!(
        decoded, printed,
        "the summary counts what was printed: {}",
        run.stderr
    );
    assert!(
        printed < 80_000,
        "stopped during the first read, not after all 80,000 entries"
    );
    Ok(())
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    crate::trials![
        s3_reads_equal_local_reads_byte_for_byte_in_both_formats,
        since_and_until_fetch_only_the_objects_that_can_hold_entries_in_range,
        follow_decodes_objects_uploaded_after_it_started_and_joins_fragments_across_them,
        follow_reads_a_rotating_local_stand_in,
        each_s3_failure_is_one_line_and_exit_2_while_other_paths_are_decoded,
        a_stop_during_the_first_read_ends_the_follow_with_its_summary,
    ]
}
