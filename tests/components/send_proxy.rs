//! Egress proxies, through a real tinyproxy on 127.0.0.1: https in a CONNECT tunnel to the
//! stand-in with TLS, http in forward mode, NO_PROXY, `--proxy`, and a 407. The load
//! balancer sees the request line byte for byte as without a proxy.

use std::time::Duration;

use crate::support;
use crate::support::{Missing, Reply, Stand, TestServer, Tinyproxy};

const LIMIT: Duration = Duration::from_secs(60);

/// Lines whose encoding leaves `'`, `!`, `*`, `(`, `)` and `~` as they are: a proxy that
/// re-encoded the target would show here.
const LINES: [&str; 3] = [
    "it's (all) ~fine~! 100% * sure?",
    "a&b=c d/e#f",
    "é ünïcode",
];

/// Runs `send` with a proxy nobody listens on: it must fail, so the proxy is in the path.
async fn fails_through_a_dead_proxy(args: &[&str], env_key: Option<&str>) {
    let closed = support::ReservedPort::new();
    let dead = format!("http://127.0.0.1:{}", closed.port);
    let mut args = args.to_vec();
    args.extend(["--drain-timeout", "1s"]);
    let mut env = Vec::new();
    match env_key {
        Some(key) => env.push((key, dead.as_str())),
        None => args.extend(["--proxy", dead.as_str()]),
    }
    let run = support::run_with_env(&args, &env, b"through the dead proxy\n", LIMIT).await;
    assert_eq!(run.code(), Some(1), "went around the proxy: {}", run.stderr);
}

fn input() -> Vec<u8> {
    LINES
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

async fn http_goes_through_the_proxy_in_forward_mode_byte_for_byte() -> Result<(), Missing> {
    let proxy = Tinyproxy::start("").await?;
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let url = format!("http://127.0.0.1:{}/app1", server.addr.port());
    let env = [("HTTP_PROXY", proxy.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = support::run_with_env(&["send", &url], &env, &input(), LIMIT).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    run.assert_logged("through the proxy");
    let mut expected: Vec<Vec<u8>> = LINES
        .iter()
        .map(|l| drifter_rsyslog::wire::encode_target("/app1", l.as_bytes()).into_bytes())
        .collect();
    let mut seen = server.answered(503);
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected, "the request targets the server got");
    fails_through_a_dead_proxy(&["send", &url], Some("HTTP_PROXY")).await;
    Ok(())
}

async fn https_goes_through_a_connect_tunnel_to_the_stand_in() -> Result<(), Missing> {
    let proxy = Tinyproxy::start("").await?;
    let scratch = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = support::certificates(scratch.path());
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let stand = Stand::start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    let port = stand
        .url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    let url = format!("https://localhost:{port}/");
    let ca = ca.display().to_string();
    let proxy_url = proxy.url();
    // --proxy rather than the environment: it overrides HTTPS_PROXY (set here to nothing).
    let env = [("HTTPS_PROXY", "http://127.0.0.1:9")];
    let args = ["send", &url, "--ca-cert", &ca, "--proxy", &proxy_url];
    let run = support::run_with_env(&args, &env, &input(), LIMIT).await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    fails_through_a_dead_proxy(&["send", &url, "--ca-cert", &ca], Some("HTTPS_PROXY")).await;
    fails_through_a_dead_proxy(&["send", &url, "--ca-cert", &ca], None).await;
    let dir = stand.stop("TERM").await;
    let logs = dir.path().display().to_string();
    let (messages, decoded) = support::decode_logs(&[&logs]).await;
    assert_eq!(decoded.code(), Some(0), "decode: {}", decoded.stderr);
    let mut expected: Vec<Vec<u8>> = LINES.iter().map(|l| l.as_bytes().to_vec()).collect();
    expected.sort();
    assert_eq!(messages, expected);
    let log = std::fs::read_to_string(&support::log_files(dir.path())[0]).expect("read log");
    let first = drifter_rsyslog::wire::encode_target("/", LINES[0].as_bytes());
    assert!(
        log.contains(&format!("\"GET https://localhost:{port}{first} HTTP/1.1\"")),
        "the logged request line: {log}"
    );
    Ok(())
}

async fn no_proxy_and_proxy_none_go_direct() -> Result<(), Missing> {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let url = server.url();
    // Nothing listens on the proxy's port: a request through it would fail.
    let closed = support::ReservedPort::new();
    let dead_proxy = format!("http://127.0.0.1:{}", closed.port);
    let env = [
        ("HTTP_PROXY", dead_proxy.as_str()),
        ("NO_PROXY", "localhost,127.0.0.0/8"),
    ];
    let run = support::run_with_env(&["send", &url], &env, b"bypassed\n", LIMIT).await;
    assert_eq!(run.code(), Some(0), "NO_PROXY: {}", run.stderr);
    let env = [("HTTP_PROXY", dead_proxy.as_str())];
    let args = ["send", &url, "--proxy", "none"];
    let run = support::run_with_env(&args, &env, b"ignored\n", LIMIT).await;
    assert_eq!(run.code(), Some(0), "--proxy none: {}", run.stderr);
    assert_eq!(
        support::decoded_set(&server.answered(503)),
        [b"bypassed".to_vec(), b"ignored".to_vec()].into()
    );
    Ok(())
}

async fn a_proxy_that_wants_credentials_is_a_clear_error_and_gets_them_from_the_url()
-> Result<(), Missing> {
    let proxy = Tinyproxy::start("BasicAuth drifter s3cret").await?;
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let url = server.url();
    let without = proxy.url();
    let run = support::run_with_env(
        &["send", &url, "--probe"],
        &[("HTTP_PROXY", without.as_str())],
        b"never sent\n",
        LIMIT,
    )
    .await;
    assert_eq!(run.code(), Some(2), "stderr: {}", run.stderr);
    run.assert_logged("407 Proxy Authentication Required");
    assert!(server.seen().is_empty());
    let with = format!("http://drifter:s3cret@127.0.0.1:{}", proxy.port);
    let run = support::run_with_env(
        &["send", &url, "--probe"],
        &[("HTTP_PROXY", with.as_str())],
        b"sent with credentials\n",
        LIMIT,
    )
    .await;
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert!(!run.stderr.contains("s3cret"), "credentials are not logged");
    let seen = server.seen();
    assert!(
        seen.first()
            .is_some_and(|first| support::is_probe(&first.target)),
        "the probe first: {seen:?}"
    );
    assert_eq!(
        support::decoded_set(&server.answered(503)),
        [b"sent with credentials".to_vec()].into()
    );
    Ok(())
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    crate::trials![
        http_goes_through_the_proxy_in_forward_mode_byte_for_byte,
        https_goes_through_a_connect_tunnel_to_the_stand_in,
        no_proxy_and_proxy_none_go_direct,
        a_proxy_that_wants_credentials_is_a_clear_error_and_gets_them_from_the_url,
    ]
}
