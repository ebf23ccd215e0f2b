//! HTTP/2 over TLS (`--http`): the round trip through `mock-elb`, the fallback and the refusal
//! when the endpoint does not offer `h2`, the server's stream limit, and `GOAWAY`.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::support::{self, Stand, decode_logs, log_files};

const LIMIT: Duration = Duration::from_secs(60);

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("a port in the URL")
}

/// Every access log line `mock-elb` wrote under `dir`.
fn log_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for file in log_files(dir) {
        let mut text = String::new();
        let opened = std::fs::File::open(&file).expect("open");
        if file.extension().is_some_and(|e| e == "gz") {
            flate2::read::GzDecoder::new(opened).read_to_string(&mut text)
        } else {
            std::io::BufReader::new(opened).read_to_string(&mut text)
        }
        .expect("read log");
        lines.extend(text.lines().map(str::to_string));
    }
    lines
}

/// The request field's URL and the client's `ip:port` (one per connection) of an ALB entry.
fn url_and_client(line: &str) -> (String, String) {
    let fields: Vec<&str> = line.split(' ').collect();
    let url = line
        .split_once("\"GET ")
        .and_then(|(_, rest)| rest.split_once(' '))
        .map(|(url, _)| url.to_string())
        .expect("a request field");
    (url, fields[3].to_string())
}

fn corpus() -> Vec<u8> {
    let mut input = "quotes \" ' and \\ backslash\ncafé ☃ 日本語 🎉\nreserved ?&=#/+%:;,@$!*()~\n\
                     tab\tand\x01control\x7f\n  spaces  \n"
        .as_bytes()
        .to_vec();
    input.extend(b"\xff\xfe not UTF-8 \xc3\n");
    input.extend(support::numbered(200, "numbered").0);
    input
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_round_trip_is_byte_exact_with_the_targets_of_http1() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = support::certificates(scratch.path());
    let (ca, cert, key) = (ca.display(), cert.display(), key.display());
    let (cert, key, ca) = (cert.to_string(), key.to_string(), ca.to_string());
    let stand = Stand::start(&["--format", "alb", "--tls-cert", &cert, "--tls-key", &key]).await;
    let url = format!("https://localhost:{}/app1", port_of(&stand.url));
    let input = corpus();
    for http in ["2", "1.1"] {
        let args = ["send", &url, "--ca-cert", &ca, "--http", http];
        let sent = support::run_with_input(&args, &input, LIMIT).await;
        assert_eq!(sent.code(), Some(0), "--http {http}: {}", sent.stderr);
        assert!(sent.stderr.contains("retried 0,"), "{}", sent.stderr);
    }
    let dir = stand.stop("TERM").await;

    let lines = log_lines(dir.path());
    let count = input.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(lines.len(), 2 * count);
    let (h2, h1): (Vec<&String>, Vec<&String>) = lines.iter().partition(|l| l.starts_with("h2 "));
    assert_eq!(h2.len(), count, "every --http 2 request logged as h2");
    assert!(h2.iter().all(|l| l.contains(" HTTP/2.0\" ")), "{h2:?}");
    assert!(
        h1.iter()
            .all(|l| l.starts_with("https ") && l.contains(" HTTP/1.1\" "))
    );
    let urls = |entries: &[&String]| -> Vec<String> {
        let mut urls: Vec<String> = entries.iter().map(|l| url_and_client(l).0).collect();
        urls.sort();
        urls
    };
    assert_eq!(urls(&h2), urls(&h1), "the same targets, byte for byte");
    // 64 streams in flight at most, within mock-elb's (hyper's) limit of 200: one connection.
    let connections: BTreeSet<String> = h2.iter().map(|l| url_and_client(l).1).collect();
    assert_eq!(connections.len(), 1, "{connections:?}");

    let (decoded, run) = decode_logs(&[&dir.path().display().to_string()]).await;
    assert_eq!(run.code(), Some(0), "decode: {}", run.stderr);
    let mut expected: Vec<Vec<u8>> = input
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .flat_map(|l| [l.to_vec(), l.to_vec()])
        .collect();
    expected.sort();
    assert_eq!(decoded, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_h2_offered_auto_falls_back_and_http2_is_refused_at_the_probe() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = support::certificates(scratch.path());
    let (ca, cert, key) = (ca.display(), cert.display(), key.display());
    let (cert, key, ca) = (cert.to_string(), key.to_string(), ca.to_string());
    // A Classic ELB speaks no HTTP/2: mock-elb offers only http/1.1 in that format.
    let stand = Stand::start(&[
        "--format",
        "classic",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ])
    .await;
    let url = format!("https://localhost:{}/", port_of(&stand.url));

    let args = ["send", &url, "--ca-cert", &ca, "--http", "2", "--probe"];
    let refused = support::run_with_input(&args, b"never read\n", LIMIT).await;
    assert_eq!(refused.code(), Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("does not offer HTTP/2"),
        "{}",
        refused.stderr
    );

    // Without --probe the refusal answers each request, a permanent failure like a 404.
    let args = ["send", &url, "--ca-cert", &ca, "--http", "2"];
    let lost = support::run_with_input(&args, b"refused too\n", LIMIT).await;
    assert_eq!(lost.code(), Some(1), "{}", lost.stderr);
    lost.assert_logged("does not offer HTTP/2");
    lost.assert_logged("lost 1");

    let args = ["send", &url, "--ca-cert", &ca];
    let auto = support::run_with_input(&args, b"quietly over HTTP/1.1\n", LIMIT).await;
    assert_eq!(auto.code(), Some(0), "{}", auto.stderr);
    assert!(!auto.stderr.contains("HTTP/2"), "quietly: {}", auto.stderr);
    let dir = stand.stop("TERM").await;
    let lines = log_lines(dir.path());
    assert_eq!(lines.len(), 1, "the refused runs sent nothing: {lines:?}");
    assert!(lines[0].contains(" HTTP/1.1\""), "{}", lines[0]);

    let plain = ["send", "http://127.0.0.1:9/", "--http", "2"];
    let run = support::run_with_input(&plain, b"x\n", LIMIT).await;
    assert_eq!(run.code(), Some(2), "{}", run.stderr);
    run.assert_logged("--http 2 needs an https:// URL");
}

/// `send --http 2` of `input` to `url`, trusting `ca`, with `concurrency` requests in flight.
async fn send_h2(url: &str, ca: &str, concurrency: usize, input: &[u8]) -> support::Run {
    let concurrency = concurrency.to_string();
    let args = [
        "send",
        url,
        "--ca-cert",
        ca,
        "--http",
        "2",
        "--concurrency",
        &concurrency,
    ];
    support::run_with_input(&args, input, LIMIT).await
}

/// What the HTTP/2 test server saw: each request's target and the connection it came on.
type Seen = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;

/// An HTTP/2-only server over TLS answering 200, allowing `streams` concurrent streams per
/// connection, that closes each connection gracefully (`GOAWAY`, as nginx does after
/// `keepalive_requests`) once it has taken `per_connection` requests.
async fn h2_server(dir: &Path, streams: u32, per_connection: usize) -> (u16, String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (ca, cert, key) = support::certificates(dir);
    let port = listener.local_addr().expect("address").port();
    let seen = h2_server_on(listener, &cert, &key, streams, per_connection);
    (port, ca.display().to_string(), seen)
}

/// [`h2_server`] on `listener`, with the certificate and key in these PEM files.
fn h2_server_on(
    listener: tokio::net::TcpListener,
    cert: &Path,
    key: &Path,
    streams: u32,
    per_connection: usize,
) -> Seen {
    let acceptor = tls_acceptor(cert, key);
    let seen: Seen = Arc::default();
    let recorded = seen.clone();
    tokio::spawn(async move {
        let connections = AtomicUsize::new(0);
        while let Ok((stream, _)) = listener.accept().await {
            let connection = connections.fetch_add(1, Ordering::Relaxed);
            let (acceptor, seen) = (acceptor.clone(), recorded.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let taken = Arc::new(AtomicUsize::new(0));
                let full = Arc::new(tokio::sync::Notify::new());
                let (counter, notify) = (taken.clone(), full.clone());
                let service = service_fn(move |request: Request<Incoming>| {
                    let target = request
                        .uri()
                        .path_and_query()
                        .map(|pq| pq.as_str().as_bytes().to_vec())
                        .unwrap_or_default();
                    seen.lock().expect("lock").push((connection, target));
                    if counter.fetch_add(1, Ordering::Relaxed) + 1 == per_connection {
                        notify.notify_one();
                    }
                    async { Ok::<_, std::io::Error>(Response::new(Full::new(Bytes::new()))) }
                });
                let serving = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .max_concurrent_streams(streams)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(serving);
                tokio::select! {
                    _ = serving.as_mut() => {}
                    () = full.notified() => {
                        serving.as_mut().graceful_shutdown();
                        let _ = serving.await;
                    }
                }
            });
        }
    });
    seen
}

/// TLS offering only `h2` by ALPN, with the certificate and key in these PEM files.
fn tls_acceptor(cert: &Path, key: &Path) -> tokio_rustls::TlsAcceptor {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("cert")
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread")]
async fn goaway_replaces_the_connection_and_nothing_is_lost_or_retried() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let (port, ca, seen) = h2_server(scratch.path(), 8, 40).await;
    let url = format!("https://localhost:{port}/");
    let (input, expected) = support::numbered(400, "goaway");
    let run = send_h2(&url, &ca, 16, &input).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("delivered 400, retried 0,"),
        "{}",
        run.stderr
    );
    let seen = seen.lock().expect("lock").clone();
    let targets: Vec<Vec<u8>> = seen.iter().map(|(_, t)| t.clone()).collect();
    assert_eq!(support::decoded_set(&targets), expected);
    let connections: BTreeSet<usize> = seen.iter().map(|&(c, _)| c).collect();
    // Each connection takes 40 requests, and up to its 8 streams already in flight at the
    // GOAWAY: replaced at least 400 / 48 times.
    assert!(connections.len() >= 8, "{connections:?}");
}

/// An HTTP/2 server over TLS (`h2` itself: hyper's server only goes away with `NO_ERROR`)
/// allowing `streams` concurrent streams, whose first connection answers `answered` requests,
/// then takes requests without answering them until it holds `streams` (all the client may
/// have open there), then goes away with `INTERNAL_ERROR`, naming the last of them as the last
/// stream it took, and closes. Later connections answer everything. Returns what was answered, and the targets the
/// first connection held: taken, so possibly processed, and never answered.
fn goaway_with_error_server(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    streams: u32,
    answered: usize,
) -> (Seen, Arc<Mutex<Vec<Vec<u8>>>>) {
    let (seen, held): (Seen, Arc<Mutex<Vec<Vec<u8>>>>) = Default::default();
    let (all, first) = (seen.clone(), held.clone());
    tokio::spawn(async move {
        let mut connections = 0;
        while let Ok((stream, _)) = listener.accept().await {
            let connection = connections;
            connections += 1;
            let (acceptor, seen, held) = (acceptor.clone(), all.clone(), first.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut serving) = h2::server::Builder::new()
                    .max_concurrent_streams(streams)
                    .handshake::<_, Bytes>(stream)
                    .await
                else {
                    return;
                };
                // Each held stream's response handle, kept so that it is not reset.
                let mut holding = Vec::new();
                let mut answered_here = 0;
                while let Some(Ok((request, mut respond))) = serving.accept().await {
                    let target = request
                        .uri()
                        .path_and_query()
                        .map(|pq| pq.as_str().as_bytes().to_vec())
                        .unwrap_or_default();
                    if connection == 0 && answered_here == answered {
                        held.lock().expect("lock").push(target);
                        holding.push(respond);
                        if holding.len() == streams as usize {
                            serving.abrupt_shutdown(h2::Reason::INTERNAL_ERROR);
                        }
                        continue;
                    }
                    seen.lock().expect("lock").push((connection, target));
                    answered_here += 1;
                    let _ = respond.send_response(Response::new(()), true);
                }
            });
        }
    });
    (seen, held)
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_goaway_with_an_error_the_streams_it_may_have_processed_count_as_retries() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = support::certificates(scratch.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (seen, held) = goaway_with_error_server(listener, tls_acceptor(&cert, &key), 8, 20);
    let url = format!("https://localhost:{port}/");
    let ca = ca.display().to_string();
    let (input, expected) = support::numbered(200, "aborted");
    let run = send_h2(&url, &ca, 16, &input).await;
    let held: BTreeSet<Vec<u8>> = held.lock().expect("lock").iter().cloned().collect();
    assert_eq!(run.code(), Some(0), "{} held: {}", held.len(), run.stderr);
    assert_eq!(held.len(), 8, "the first connection held its 8 streams");
    // At or below the GOAWAY's last stream id, so possibly processed: sent again, as after a
    // timeout, and counted. Any request the client had queued on that connection beyond its
    // 8 streams (it reads the limit from the server's SETTINGS, which may come after the
    // first requests) got an id above the last one, and goes again without counting.
    assert!(
        run.stderr.contains("delivered 200, retried 8,"),
        "{}",
        run.stderr
    );
    let seen = seen.lock().expect("lock").clone();
    let targets: Vec<Vec<u8>> = seen.iter().map(|(_, t)| t.clone()).collect();
    assert_eq!(targets.len(), 200, "each line answered once");
    assert_eq!(support::decoded_set(&targets), expected);
    assert!(
        held.iter().all(|t| targets.contains(t)),
        "each held one again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_stay_within_the_servers_limit_on_few_connections() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let (port, ca, seen) = h2_server(scratch.path(), 4, usize::MAX).await;
    let url = format!("https://localhost:{port}/");
    let (input, expected) = support::numbered(300, "limited");
    let run = send_h2(&url, &ca, 8, &input).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("retried 0,"), "{}", run.stderr);
    let seen = seen.lock().expect("lock").clone();
    let targets: Vec<Vec<u8>> = seen.iter().map(|(_, t)| t.clone()).collect();
    assert_eq!(support::decoded_set(&targets), expected);
    let connections: BTreeSet<usize> = seen.iter().map(|&(c, _)| c).collect();
    assert!(
        connections.len() <= 2,
        "ceil(8 / 4) connections at most: {connections:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_starts_late_gets_every_line_over_http2() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let reserved = support::ReservedPort::new();
    let url = format!("https://localhost:{}/", reserved.port);
    // The certificates are made now, the server started once the sender has failed.
    let (ca, cert, key) = support::certificates(scratch.path());
    let ca = ca.display().to_string();
    let (input, expected) = support::numbered(500, "late");
    let mut child = support::spawn(&["send", &url, "--ca-cert", &ca, "--http", "2"]);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let sender = support::Watched::new(child);
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        stdin.write_all(&input).await.expect("write");
    });
    sender.line_with("delivery failing", LIMIT).await;
    let seen = h2_server_on(reserved.listen(), &cert, &key, 100, usize::MAX);
    writer.await.expect("join writer");
    let run = sender.wait(LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    run.assert_logged("delivery recovered");
    let targets: Vec<Vec<u8>> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, t)| t.clone())
        .filter(|t| !support::is_probe(t))
        .collect();
    assert_eq!(targets.len(), 500, "each once");
    assert_eq!(support::decoded_set(&targets), expected);
}
