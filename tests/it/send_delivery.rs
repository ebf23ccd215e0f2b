//! What reaches the load balancer: byte-exact request targets, headers, and every line once.

use std::collections::HashMap;
use std::time::Duration;

use crate::support;
use crate::support::{Reply, TestServer, run_with_input};

/// A line that is an awkward case for an encoder, a shell or an HTTP parser.
fn corpus() -> Vec<Vec<u8>> {
    vec![
        b"plain ascii message".to_vec(),
        "multi-byte UTF-8: é ☃ 😀 日本語".as_bytes().to_vec(),
        b"query syntax & = ? # % + / ; : @ , $".to_vec(),
        b"quotes \" ' ` and backslash \\ and <angle> [brackets] {braces} |pipe| ^caret".to_vec(),
        b"tab\there".to_vec(),
        b"nul\0byte".to_vec(),
        b"invalid utf-8 \xff\xfe\xc3(\x80".to_vec(),
        b"-_.!~*'() left alone".to_vec(),
        b"%41 is not decoded twice".to_vec(),
        b"  leading and trailing spaces  ".to_vec(),
        b"carriage\rreturn inside".to_vec(),
        b"last line without LF".to_vec(),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_byte_of_every_line_reaches_the_server() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let lines = corpus();
    // CRLF endings on some lines, none on the last; an empty line in between is skipped.
    let mut input = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        input.extend_from_slice(line);
        if i + 1 < lines.len() {
            input.extend_from_slice(if i % 2 == 0 { b"\r\n" } else { b"\n" });
        }
        if i == 3 {
            input.extend_from_slice(b"\n");
        }
    }
    let url = format!("http://{}/app1", server.addr);
    let run = run_with_input(&["send", &url], &input, Duration::from_secs(30)).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert!(
        run.stdout.is_empty(),
        "stdout must stay empty in plain mode"
    );

    let mut received = server.answered(503);
    received.sort();
    let mut expected: Vec<Vec<u8>> = lines
        .iter()
        .map(|line| drifter_rsyslog::wire::encode_target("/app1", line).into_bytes())
        .collect();
    expected.sort();
    assert_eq!(received, expected);
    // And decoding what the server saw gives back the original bytes.
    let mut decoded: Vec<Vec<u8>> = received.iter().map(|t| support::decode(t)).collect();
    decoded.sort();
    let mut originals = lines.clone();
    originals.sort();
    assert_eq!(decoded, originals);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_line_is_byte_identical_to_the_original_for_utf8() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let run = run_with_input(
        &["send", &server.url()],
        "it's (really) ~fine~ *now*! 50% off; a=b&c\n".as_bytes(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    // What node's `'/?' + encodeURIComponent(line)` gives for this line.
    assert_eq!(
        String::from_utf8_lossy(&seen[0].target),
        "/?it's%20(really)%20~fine~%20*now*!%2050%25%20off%3B%20a%3Db%26c"
    );
    assert_eq!(
        seen[0].host.as_deref(),
        Some(server.addr.to_string().as_str())
    );
    let agent = seen[0].user_agent.clone().unwrap_or_default();
    assert!(agent.starts_with("drifter-rsyslog/"), "user agent {agent}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_lines_each_arrive_exactly_once() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let input: String = (0..10_000)
        .map(|i| format!("message number {i:05} of the load test\n"))
        .collect();
    let run = run_with_input(
        &["send", &server.url()],
        input.as_bytes(),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
    for target in server.answered(503) {
        *counts.entry(support::decode(&target)).or_default() += 1;
    }
    assert_eq!(counts.len(), 10_000);
    for i in 0..10_000 {
        let line = format!("message number {i:05} of the load test").into_bytes();
        assert_eq!(counts.get(&line), Some(&1), "line {i}");
    }
    run.assert_logged("delivered 10000");
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_statuses_are_configurable() {
    let server = TestServer::start(|_, _| Reply::Status(204)).await;
    let dead = tempfile::NamedTempFile::new().expect("temp file");
    let dead_path = dead.path().to_str().expect("utf-8 path").to_string();
    // With only 503 accepted, a 204 is a permanent rejection: the line is dead-lettered.
    let args = [
        "send",
        &server.url(),
        "--accept",
        "503",
        "--dead-letter",
        &dead_path,
    ];
    let run = run_with_input(&args, b"one\n", Duration::from_secs(30)).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(
        std::fs::read(dead.path()).expect("read dead letter"),
        b"one\n"
    );
    // 2xx is accepted by default, as from an ALB fixed-response rule.
    let run = run_with_input(&["send", &server.url()], b"two\n", Duration::from_secs(30)).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(
        server.answered(204).last().map(|t| support::decode(t)),
        Some(b"two".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_variables_configure_the_sidecar() {
    let server = TestServer::start(|_, _| Reply::Status(202)).await;
    // Only these two variables (and what any child inherits) configure it.
    let mut child = tokio::process::Command::from(support::clean_command(support::BIN))
        .arg("send")
        .env("DRIFTER_URL", server.url())
        .env("DRIFTER_ACCEPT", "202")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"from env\n").await.expect("write");
    }
    let run = support::wait(child, Duration::from_secs(30)).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(server.answered(202), vec![b"/?from%20env".to_vec()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_the_server_closes_are_replaced_without_a_failure() {
    // Every third response closes its connection, as a load balancer may at any time.
    let server = TestServer::start(|n, _| {
        if n % 3 == 0 {
            Reply::Closing(503)
        } else {
            Reply::Status(503)
        }
    })
    .await;
    let url = server.url();
    let (input, expected) = support::numbered(3_000, "reconnect");
    let run = run_with_input(&["send", &url], &input, Duration::from_secs(60)).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let answered = server.answered(503);
    assert_eq!(
        answered.len() + server.answered_closing(503),
        3_000,
        "each line once"
    );
    let mut all = answered;
    all.extend(
        server
            .seen()
            .into_iter()
            .filter(|s| s.reply == Reply::Closing(503))
            .map(|s| s.target),
    );
    assert_eq!(support::decoded_set(&all), expected);
    assert!(
        !run.stderr.contains("delivery failing"),
        "a closed keep-alive connection is no outage: {}",
        run.stderr
    );
}
