//! The whole pipeline with the real binary at every step: `mock-elb` writes access logs,
//! `send` sends to it, `decode` reads the files back.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::support;
use crate::support::{Stand, decode_logs as decode, log_files};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tokio::io::AsyncWriteExt;

const LIMIT: Duration = Duration::from_secs(60);

async fn round_trip(format: &str, messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let stand = Stand::start(&["--format", format]).await;
    let input: Vec<u8> = messages
        .iter()
        .flat_map(|m| [&m[..], b"\n"].concat())
        .collect();
    let sent = support::run_with_input(&["send", &stand.url], &input, LIMIT).await;
    if sent.code() != Some(0) {
        support::signal(&stand.child, "TERM");
        let run = support::wait(stand.child, LIMIT).await;
        panic!(
            "send: {}\nmock-elb {:?}: {}",
            sent.stderr, run.status, run.stderr
        );
    }
    let dir = stand.stop("TERM").await;
    let (decoded, run) = decode(&[&dir.path().display().to_string()]).await;
    assert_eq!(run.code(), Some(0), "decode: {}", run.stderr);
    decoded
}

fn corpus() -> Vec<Vec<u8>> {
    [
        &b"plain ascii"[..],
        "quotes \" ' and \\ backslash".as_bytes(),
        "café ☃ 日本語 🎉".as_bytes(),
        b"reserved ?&=#/+%:;,@$!*()~",
        b"tab\tand\x01control\x7f",
        b"\xff\xfe not UTF-8 \xc3",
        b"  leading and trailing spaces  ",
        b"- - -",
        b"\\x22 looks like an ALB escape",
    ]
    .iter()
    .map(|m| m.to_vec())
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn classic_round_trip_is_byte_exact() {
    let mut expected = corpus();
    expected.sort();
    assert_eq!(round_trip("classic", &corpus()).await, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn alb_round_trip_is_byte_exact_through_gzip_files() {
    let stand = Stand::start(&["--format", "alb"]).await;
    let input: Vec<u8> = corpus()
        .iter()
        .flat_map(|m| [&m[..], b"\n"].concat())
        .collect();
    let sent = support::run_with_input(&["send", &stand.url], &input, LIMIT).await;
    assert_eq!(sent.code(), Some(0), "send: {}", sent.stderr);
    let dir = stand.stop("TERM").await;
    let files = log_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("123456789012_elasticloadbalancing_us-east-1_app.drifter-mock.")
            && name.ends_with(".log.gz"),
        "{name}"
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&files[0]).expect("open"))
        .read_to_string(&mut text)
        .expect("a complete gzip file of ASCII entries");
    let first = text.lines().next().expect("an entry");
    assert!(first.starts_with("http "), "{first}");
    assert!(first.contains(" - -1 -1 -1 503 - "), "no target: {first}");
    // 30 fields; the request field holds the only two spaces inside quotes.
    let words: Vec<&str> = first.split(' ').collect();
    assert_eq!(words.len(), 32, "{first}");
    assert!(words[31].starts_with("TID_"), "conn_trace_id last: {first}");

    let (decoded, run) = decode(&[&dir.path().display().to_string()]).await;
    assert_eq!(run.code(), Some(0), "decode: {}", run.stderr);
    let mut expected = corpus();
    expected.sort();
    assert_eq!(decoded, expected);
}

#[test]
fn arbitrary_bytes_survive_the_round_trip_in_both_formats() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // Lines as `send` reads them: no LF, not empty, no trailing CR (it is stripped).
    let message = proptest::collection::vec(any::<u8>(), 1..300).prop_map(|mut bytes| {
        bytes.retain(|&b| b != b'\n');
        if bytes.last().is_none_or(|&b| b == b'\r') {
            bytes.push(b'.');
        }
        bytes
    });
    let batch = proptest::collection::vec(message, 1..40);
    for format in ["classic", "alb"] {
        let mut runner = TestRunner::new(Config {
            cases: 6,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&batch, |messages| {
                let decoded = runtime.block_on(round_trip(format, &messages));
                let mut expected = messages.clone();
                expected.sort();
                prop_assert_eq!(decoded, expected, "{}", format);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{format}: {e}"));
    }
}

/// The complete files the stand-in has moved into place so far (none before the first).
fn completed_files(dir: &Path) -> Vec<std::path::PathBuf> {
    if dir.join("AWSLogs").exists() {
        log_files(dir)
    } else {
        Vec::new()
    }
}

/// Asserts that every file is a complete gzip file; their decoded messages, sorted.
async fn complete_and_decoded(dir: &Path, files: &[std::path::PathBuf]) -> Vec<Vec<u8>> {
    for file in files {
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(file).expect("open"))
            .read_to_end(&mut text)
            .unwrap_or_else(|e| panic!("{} is not a complete gzip file: {e}", file.display()));
    }
    let (decoded, run) = decode(&[&dir.display().to_string()]).await;
    assert_eq!(run.code(), Some(0), "decode: {}", run.stderr);
    decoded
}

#[tokio::test(flavor = "multi_thread")]
async fn files_rotate_and_sigint_completes_the_last_one() {
    // Rotation: a file per second of traffic. Each batch goes out once the stand-in has
    // completed the file the one before went into.
    let stand = Stand::start(&["--format", "alb", "--rotate-secs", "1"]).await;
    let mut send = support::spawn(&["send", &stand.url]);
    let mut stdin = send.stdin.take().expect("stdin is piped");
    let mut expected = Vec::new();
    for batch in 0..3 {
        for i in 0..50 {
            let line = format!("batch {batch} message {i}");
            stdin
                .write_all(format!("{line}\n").as_bytes())
                .await
                .expect("write");
            expected.push(line.into_bytes());
        }
        stdin.flush().await.expect("flush");
        let rotated =
            support::eventually(LIMIT, || completed_files(stand.dir.path()).len() > batch).await;
        assert!(rotated, "no file completed for batch {batch}");
    }
    drop(stdin);
    let sent = support::wait(send, LIMIT).await;
    assert_eq!(sent.code(), Some(0), "send: {}", sent.stderr);
    let dir = stand.stop("INT").await;
    let files = log_files(dir.path());
    assert!(files.len() >= 3, "a file per interval: {files:?}");
    let decoded = complete_and_decoded(dir.path(), &files).await;
    expected.sort();
    assert_eq!(decoded, expected, "nothing lost across rotations");

    // SIGINT: with the next rotation an hour away, the open file is completed by the signal
    // (Stand::stop also checks that nothing is left under .incoming).
    let stand = Stand::start(&["--format", "alb", "--rotate-secs", "3600"]).await;
    let (input, expected) = support::numbered(50, "open at SIGINT");
    let sent = support::run_with_input(&["send", &stand.url], &input, LIMIT).await;
    assert_eq!(sent.code(), Some(0), "send: {}", sent.stderr);
    assert_eq!(
        completed_files(stand.dir.path()),
        Vec::<std::path::PathBuf>::new(),
        "the file is still open"
    );
    let dir = stand.stop("INT").await;
    let files = log_files(dir.path());
    assert_eq!(files.len(), 1, "the open file, completed: {files:?}");
    let decoded = complete_and_decoded(dir.path(), &files).await;
    assert_eq!(
        decoded,
        expected.into_iter().collect::<Vec<_>>(),
        "every message in it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_over_long_request_line_gets_414_and_is_dead_lettered() {
    let stand = Stand::start(&["--max-request-line", "1K"]).await;
    let scratch = tempfile::tempdir().expect("temp dir");
    let dead_letter = scratch.path().join("dead.log");
    let long = "x".repeat(2000);
    let input = format!("short one\n{long}\n");
    let sent = support::run_with_input(
        &[
            "send",
            &stand.url,
            "--dead-letter",
            &dead_letter.display().to_string(),
        ],
        input.as_bytes(),
        LIMIT,
    )
    .await;
    assert_eq!(sent.code(), Some(0), "send: {}", sent.stderr);
    sent.assert_logged("414");
    assert_eq!(
        std::fs::read_to_string(&dead_letter).expect("dead letters"),
        format!("{long}\n")
    );
    let dir = stand.stop("TERM").await;
    let files = log_files(dir.path());
    let log = std::fs::read_to_string(&files[0]).expect("read log");
    assert!(log.contains(" 414 0 0 0 \"- - - \" "), "{log}");
    let (decoded, run) = decode(&[&dir.path().display().to_string()]).await;
    assert_eq!(decoded, vec![b"short one".to_vec()]);
    run.assert_logged("1 from other clients");
}

#[tokio::test(flavor = "multi_thread")]
async fn decode_skips_test_files_reads_stdin_and_reports_unreadable_paths() {
    let dir = tempfile::tempdir().expect("temp dir");
    let entry = "2015-05-13T23:39:43.945958Z lb 10.0.0.9:2817 - -1 -1 -1 503 0 0 0 \"GET http://h:80/?from%20a%20file HTTP/1.1\" \"drifter-rsyslog/0.1.0\" - -\n";
    std::fs::write(dir.path().join("a.log"), entry).expect("write");
    std::fs::write(
        dir.path().join("123456789012_ELBAccessLogTestFile"),
        "Enable AccessLog for ELB: my-lb at 2015-05-13T23:39:43.945958Z\n",
    )
    .expect("write");
    let missing = dir.path().join("missing.log");
    let (decoded, run) = decode(&[
        &dir.path().display().to_string(),
        &missing.display().to_string(),
    ])
    .await;
    assert_eq!(decoded, vec![b"from a file".to_vec()]);
    assert_eq!(run.code(), Some(2), "an unreadable path: {}", run.stderr);
    run.assert_logged("missing.log");
    run.assert_logged("0 malformed");

    let piped = support::run_with_input(&["decode"], entry.as_bytes(), LIMIT).await;
    assert_eq!(piped.code(), Some(0), "{}", piped.stderr);
    assert_eq!(piped.stdout, b"from a file\n");
}

/// One HTTP/2 GET over TLS (ALPN h2); returns the response status.
async fn get_over_h2(port: u16, ca: &Path, target: &str) -> u16 {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA cert")).expect("add CA");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(connection);
    let request = http::Request::get(format!("https://localhost:{port}{target}"))
        .header(http::header::USER_AGENT, "drifter-rsyslog/h2-test")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("h2 response");
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn https_and_http2_are_logged_as_alb_writes_them() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = support::certificates(scratch.path());
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let stand = Stand::start(&["--format", "alb", "--tls-cert", &cert, "--tls-key", &key]).await;
    let port = stand
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
        .expect("port");
    let url = format!("https://localhost:{port}/app1");
    let sent = support::run_with_input(
        &[
            "send",
            &url,
            "--ca-cert",
            &ca.display().to_string(),
            "--http",
            "1.1",
        ],
        "over https\n".as_bytes(),
        LIMIT,
    )
    .await;
    assert_eq!(sent.code(), Some(0), "send: {}", sent.stderr);
    assert_eq!(get_over_h2(port, &ca, "/app1?over%20h2").await, 503);
    let dir = stand.stop("TERM").await;

    let files = log_files(dir.path());
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&files[0]).expect("open"))
        .read_to_string(&mut text)
        .expect("gzip");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let https = lines
        .iter()
        .find(|l| l.starts_with("https "))
        .expect("an https entry");
    assert!(
        https.contains(&format!(
            "\"GET https://localhost:{port}/app1?over%20https HTTP/1.1\""
        )),
        "{https}"
    );
    assert!(
        https.contains(" TLS_AES_") && https.contains(" TLSv1.3 "),
        "{https}"
    );
    assert!(
        https.contains(" \"localhost\" "),
        "SNI as domain_name: {https}"
    );
    let h2 = lines
        .iter()
        .find(|l| l.starts_with("h2 "))
        .expect("an h2 entry");
    assert!(
        h2.contains(&format!(
            "\"GET https://localhost:{port}/app1?over%20h2 HTTP/2.0\""
        )),
        "{h2}"
    );

    let (decoded, run) = decode(&["--path", "/app1", &dir.path().display().to_string()]).await;
    assert_eq!(run.code(), Some(0), "decode: {}", run.stderr);
    assert_eq!(decoded, vec![b"over h2".to_vec(), b"over https".to_vec()]);
}
