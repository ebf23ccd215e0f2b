//! Wire format v1 end to end with the real binary: the compatible default byte for byte,
//! `--dry-run`, key files, and fragments, ids, sequence numbers and signatures through the
//! stand-in load balancer in both log formats, with lost, duplicated and forged requests.
//!
//! One module although it is over 400 lines: every test here checks the same contract (what
//! `send` puts on the wire is what `decode` gives back) through the same few helpers.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support;
use crate::support::{Reply, STAND_LIMIT, Stand, TestServer, decode_logs, log_files};

const LIMIT: Duration = Duration::from_secs(60);

fn key_file(dir: &Path, contents: &[u8]) -> PathBuf {
    file_with_mode(dir, "drifter.key", contents, 0o600)
}

fn file_with_mode(dir: &Path, name: &str, contents: &[u8], mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

fn lines(messages: &[Vec<u8>]) -> Vec<u8> {
    messages
        .iter()
        .flat_map(|m| [&m[..], b"\n"].concat())
        .collect()
}

async fn send(url: &str, extra: &[&str], input: &[u8]) {
    let mut args = vec!["send", url];
    args.extend_from_slice(extra);
    let run = support::run_with_input(&args, input, LIMIT).await;
    assert_eq!(run.code(), Some(0), "send: {}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn compatible_default_is_byte_identical_to_encode_uri_component() {
    // Expected targets computed independently, with Python's
    // urllib.parse.quote(line, safe="!*'()"), which escapes what encodeURIComponent does.
    let corpus: &[(&str, &str)] = &[
        ("plain ascii", "/?plain%20ascii"),
        (
            "quotes \" ' and \\ backslash",
            "/?quotes%20%22%20'%20and%20%5C%20backslash",
        ),
        (
            "café ☃ 日本語 🎉",
            "/?caf%C3%A9%20%E2%98%83%20%E6%97%A5%E6%9C%AC%E8%AA%9E%20%F0%9F%8E%89",
        ),
        (
            "reserved ?&=#/+%:;,@$!*()~",
            "/?reserved%20%3F%26%3D%23%2F%2B%25%3A%3B%2C%40%24!*()~",
        ),
        ("-_.!~*'()", "/?-_.!~*'()"),
        ("<>[]{}|^`", "/?%3C%3E%5B%5D%7B%7D%7C%5E%60"),
        ("tab\there", "/?tab%09here"),
        (
            "Ünïcödé Ωμέγα Кириллица",
            "/?%C3%9Cn%C3%AFc%C3%B6d%C3%A9%20%CE%A9%CE%BC%CE%AD%CE%B3%CE%B1%20%D0%9A%D0%B8%D1%80%D0%B8%D0%BB%D0%BB%D0%B8%D1%86%D0%B0",
        ),
        (
            "emoji 👩\u{200d}💻 with ZWJ",
            "/?emoji%20%F0%9F%91%A9%E2%80%8D%F0%9F%92%BB%20with%20ZWJ",
        ),
        (
            "2026-11-23T10:00:00.123456+00:00 host app[123]: GET /a?b=c&d=e 200",
            "/?2026-11-23T10%3A00%3A00.123456%2B00%3A00%20host%20app%5B123%5D%3A%20GET%20%2Fa%3Fb%3Dc%26d%3De%20200",
        ),
    ];
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let input: Vec<u8> = corpus
        .iter()
        .flat_map(|(line, _)| format!("{line}\n").into_bytes())
        .collect();
    send(&server.url(), &["--concurrency", "1"], &input).await;
    let received = server.answered(503);
    let expected: Vec<Vec<u8>> = corpus
        .iter()
        .map(|(_, target)| target.as_bytes().to_vec())
        .collect();
    assert_eq!(received, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_each_target_and_its_length_without_network() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = key_file(dir.path(), b"a test key of 32 bytes, not used\n");
    let key = key.to_str().expect("utf-8");
    // Nothing listens on port 9 (discard): a dry run must not try.
    let args = [
        "send",
        "http://127.0.0.1:9/log",
        "--dry-run",
        "--ids",
        "content",
        "--sign-key",
        key,
        "--max-url-bytes",
        "120",
    ];
    let input =
        "short line\nunicode é ☃ and spaces, long enough to need two fragments\n\nxxxxxxxxxx\n";
    let run = support::run_with_input(&args, input.as_bytes(), LIMIT).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    // Computed independently in Python (hashlib, hmac, urllib.parse.quote) from the format
    // in the README: id = first 16 bytes of SHA-256(line), MAC = HMAC-SHA256 truncated to 16
    // bytes over the query before `&m=`, greedy fragments of at most 120 bytes.
    let expected = "\
1\t87\t/log?short%20line&i=ca78187e166297d629e1da07eeee61f3&m=27f8cef2d3b37f10aa449b4bb44adec6
2\t120\t/log?unicode%20%C3%A9%20%E2%98%83%20and%20sp&i=1c1f66cd95a25dc3d6a83cd423297ea6&f=1.3&m=261bbef173fc6ef01fe2a91f399994c2
2\t120\t/log?aces%2C%20long%20enough%20to%20need%20t&i=1c1f66cd95a25dc3d6a83cd423297ea6&f=2.3&m=791c58aab8159acc27d702ae96547510
2\t95\t/log?wo%20fragments&i=1c1f66cd95a25dc3d6a83cd423297ea6&f=3.3&m=381289ef978ab6541a06878e51d735a4
4\t85\t/log?xxxxxxxxxx&i=fc11d6f28e59d3cc33c0b14ceb644bf0&m=69b55c6d9c84f8734de8d1c18fd76ce8
";
    assert_eq!(String::from_utf8_lossy(&run.stdout), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn key_files_are_checked_before_anything_is_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.key");
    let empty = file_with_mode(dir.path(), "empty.key", b"", 0o600);
    let public = file_with_mode(
        dir.path(),
        "public.key",
        b"0123456789abcdef0123456789abcdef",
        0o644,
    );
    let cases = [
        (&missing, "cannot read key file"),
        (&empty, "is empty"),
        (&public, "can be read or written by every user (mode 644)"),
    ];
    for (path, expected) in cases {
        let path = path.to_str().expect("utf-8");
        let sends = [
            "send",
            "http://127.0.0.1:9/",
            "--confirm",
            "--sign-key",
            path,
        ];
        let decodes = ["decode", "--verify-key", path, "-"];
        for args in [&sends[..], &decodes[..]] {
            let run = support::run_with_input(args, b"a line\n", LIMIT).await;
            assert_eq!(run.code(), Some(2), "{args:?}: {}", run.stderr);
            assert!(
                run.stdout.is_empty(),
                "nothing before the error, not even OK"
            );
            let stderr = run.stderr.trim_end();
            assert!(
                stderr.contains(expected) && !stderr.contains('\n'),
                "{args:?}: one clear line expected, got: {stderr}"
            );
        }
    }
}

/// Lines of every length up to several times a 300-byte budget, with an id in front.
fn long_and_short_messages() -> Vec<(String, Vec<u8>)> {
    let mut messages = Vec::new();
    for (i, length) in [1usize, 50, 280, 299, 300, 301, 700, 1200]
        .into_iter()
        .enumerate()
    {
        let text: Vec<u8> = (0..length)
            .map(|j| match (i + j) % 7 {
                0 => b' ',
                1 => b'%',
                2 => 0xC3,
                3 => 0xA9,
                _ => b'a' + (j % 26) as u8,
            })
            .collect();
        messages.push((format!("ID-{i}"), text));
    }
    // Two events with the same text: distinct ids keep both.
    messages.push(("ID-twin-1".into(), b"connection reset".to_vec()));
    messages.push(("ID-twin-2".into(), b"connection reset".to_vec()));
    messages
}

async fn all_extensions_through_the_stand_in(format: &str) {
    let keys = tempfile::tempdir().expect("temp dir");
    let key = key_file(keys.path(), b"shared secret for the round trip");
    let key = key.to_str().expect("utf-8");
    let stand = Stand::start(&["--format", format]).await;
    let messages = long_and_short_messages();
    let input: Vec<u8> = messages
        .iter()
        .flat_map(|(id, text)| [id.as_bytes(), b" ", text, b"\n"].concat())
        .collect();
    let extra = [
        "--ids",
        "prefix",
        "--sequence",
        "--sign-key",
        key,
        "--max-url-bytes",
        "300",
    ];
    // Sent twice, as rsyslog does after a failed commit or a restart: a new process, new
    // sequence numbers, the same ids.
    send(&stand.url, &extra, &input).await;
    send(&stand.url, &extra, &input).await;
    let dir = stand.stop("TERM").await;
    let logs = dir.path().display().to_string();
    let (decoded, run) = decode_logs(&["--verify-key", key, &logs]).await;
    assert_eq!(run.code(), Some(0), "decode: {}", run.stderr);
    let mut expected: Vec<Vec<u8>> = messages.into_iter().map(|(_, text)| text).collect();
    expected.sort();
    assert_eq!(decoded, expected);
    assert!(
        run.stderr.contains(&format!(
            "{} duplicates, 0 forged",
            count_requests(&logs) / 2
        )) && run.stderr.contains("0 incomplete messages, 0 missing"),
        "every request of the second send is a duplicate: {}",
        run.stderr
    );
}

/// Requests logged under `logs`: one entry per line, in plain or gzip files.
fn count_requests(logs: &str) -> usize {
    log_files(Path::new(logs))
        .iter()
        .map(|file| {
            let bytes = std::fs::read(file).expect("read log");
            let text = if bytes.starts_with(&[0x1f, 0x8b]) {
                let mut out = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
                    &mut out,
                )
                .expect("gunzip");
                out
            } else {
                bytes
            };
            text.iter().filter(|&&b| b == b'\n').count()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn fragments_ids_sequences_and_signatures_through_classic_logs() {
    all_extensions_through_the_stand_in("classic").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fragments_ids_sequences_and_signatures_through_alb_logs() {
    all_extensions_through_the_stand_in("alb").await;
}

/// Sends `messages` to a Classic stand-in and returns its single log file's lines.
async fn classic_log_of(extra: &[&str], messages: &[Vec<u8>]) -> (tempfile::TempDir, PathBuf) {
    let stand = Stand::start(&["--format", "classic"]).await;
    send(&stand.url, extra, &lines(messages)).await;
    let dir = stand.stop("TERM").await;
    let files = log_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let file = files[0].clone();
    (dir, file)
}

fn rewrite_lines(file: &Path, mut edit: impl FnMut(&str) -> Option<String>) {
    let text = std::fs::read_to_string(file).expect("ASCII log");
    let kept: String = text
        .lines()
        .filter_map(|line| edit(line).map(|line| line + "\n"))
        .collect();
    std::fs::write(file, kept).expect("rewrite log");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_fragment_and_a_lost_message_are_reported() {
    let long: Vec<u8> = b"0123456789 ".repeat(60);
    let messages = vec![b"one".to_vec(), long, b"three".to_vec(), b"four".to_vec()];
    let extra = ["--sequence", "--max-url-bytes", "200", "--concurrency", "1"];
    let (dir, file) = classic_log_of(&extra, &messages).await;
    let logs = dir.path().display().to_string();
    let (decoded, run) = decode_logs(&[&logs]).await;
    assert_eq!(run.code(), Some(0), "complete logs: {}", run.stderr);
    assert_eq!(decoded.len(), 4);

    // The access-log path loses the second fragment and the whole third message.
    let mut dropped = 0;
    rewrite_lines(&file, |line| {
        if line.contains("&f=2.") || line.contains("/?three&") {
            dropped += 1;
            None
        } else {
            Some(line.to_string())
        }
    });
    assert_eq!(dropped, 2);
    let (decoded, run) = decode_logs(&[&logs]).await;
    assert_eq!(decoded, [b"four".to_vec(), b"one".to_vec()]);
    assert_eq!(run.code(), Some(1), "loss is an error: {}", run.stderr);
    assert!(
        run.stderr
            .contains("fragments arrived, missing 2 (never completed)")
            && run
                .stderr
                .contains("1 messages missing, sequence numbers 3")
            && run.stderr.contains("1 incomplete messages, 1 missing"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_tampered_requests_are_rejected() {
    let keys = tempfile::tempdir().expect("temp dir");
    let key = key_file(keys.path(), b"the key the attacker does not have");
    let key = key.to_str().expect("utf-8");
    let messages = vec![b"genuine".to_vec(), b"victim".to_vec()];
    let (dir, file) = classic_log_of(&["--sign-key", key], &messages).await;
    let logs = dir.path().display().to_string();

    let mut template = String::new();
    rewrite_lines(&file, |line| {
        if line.contains("/?victim&") {
            template = line.to_string();
            // Tampered: one byte of the message changed, the MAC kept.
            Some(line.replace("/?victim&", "/?victin&"))
        } else {
            Some(line.to_string())
        }
    });
    let query_start = template.find("/?").expect("a target");
    let query_end = query_start + template[query_start..].find(' ').expect("end of URL");
    let with_target = |target: &str| {
        format!(
            "{}{target}{}\n",
            &template[..query_start],
            &template[query_end..]
        )
    };
    let mut extra = String::new();
    // Unsigned, signed with a made-up MAC, and a genuine MAC moved to another message.
    extra += &with_target("/?injected");
    extra += &with_target("/?injected&m=00000000000000000000000000000000");
    let genuine_mac = &template[template.find("&m=").expect("signed") + 3..query_end];
    extra += &with_target(&format!("/?injected&m={genuine_mac}"));
    std::fs::write(dir.path().join("AWSLogs").join("extra.log"), extra).expect("write");

    let (decoded, run) = decode_logs(&["--verify-key", key, &logs]).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(decoded, [b"genuine".to_vec()]);
    run.assert_logged("4 forged");

    let other = tempfile::tempdir().expect("temp dir");
    let wrong = key_file(other.path(), b"a key of somebody else entirely");
    let (decoded, run) =
        decode_logs(&["--verify-key", wrong.to_str().expect("utf-8"), &logs]).await;
    assert!(decoded.is_empty(), "nothing verifies with the wrong key");
    run.assert_logged("5 forged");

    // Without a key, decode reads everything that parses, forged lines included.
    let (decoded, _) = decode_logs(&[&logs]).await;
    assert_eq!(decoded.len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_16_mib_line_goes_through_in_fragments() {
    let pattern = "a 16 MiB line: ascii, é, ☃ and %25 escapes; ".as_bytes();
    let line: Vec<u8> = pattern.iter().copied().cycle().take(16 << 20).collect();
    let stand = Stand::start(&["--format", "classic"]).await;
    let input = [&line[..], b"\n", b"after it\n"].concat();
    // Its thousands of fragments take seconds on a loaded machine: the drain after end of
    // input must not be the default 8 s, or this would time the machine, not the format.
    let args = ["send", &stand.url, "--drain-timeout", "50s"];
    let run = support::run_with_input(&args, &input, STAND_LIMIT).await;
    assert_eq!(run.code(), Some(0), "send: {}", run.stderr);
    let dir = stand.stop("TERM").await;
    let (decoded, run) = decode_logs(&[&dir.path().display().to_string()]).await;
    assert_eq!(run.code(), Some(0), "decode: {}", run.stderr);
    assert_eq!(decoded.len(), 2);
    assert_eq!(decoded[1], b"after it");
    assert!(
        decoded[0] == line,
        "the 16 MiB line comes back byte for byte"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn under_rsyslog_a_long_message_is_confirmed_once_every_fragment_was_accepted() {
    // The second request fails once: the message's OK must wait for its retry.
    let server = TestServer::start(|n, _| {
        if n == 1 {
            Reply::Status(502)
        } else {
            Reply::Status(503)
        }
    })
    .await;
    let line = "0123456789".repeat(30);
    let args = [
        "send",
        &server.url(),
        "--confirm",
        "--max-url-bytes",
        "100",
        "--retry-initial",
        "10ms",
    ];
    let run = support::run_with_input(&args, format!("{line}\n").as_bytes(), LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, b"OK\nOK\n", "ready, then the message");
    let seen = server.seen();
    assert_eq!(
        seen.iter()
            .filter(|s| s.reply == Reply::Status(502))
            .count(),
        1
    );
    let mut pieces: Vec<(u64, Vec<u8>)> = server
        .answered(503)
        .iter()
        .map(|target| {
            let text = String::from_utf8_lossy(target).into_owned();
            let index = text
                .split("&f=")
                .nth(1)
                .and_then(|f| f.split('.').next())
                .and_then(|i| i.parse().ok())
                .unwrap_or_else(|| panic!("a fragment: {text}"));
            (index, support::decode(target))
        })
        .collect();
    pieces.sort();
    assert!(pieces.len() >= 4, "{} fragments", pieces.len());
    let joined: Vec<u8> = pieces.into_iter().flat_map(|(_, piece)| piece).collect();
    assert_eq!(joined, line.as_bytes());
}
