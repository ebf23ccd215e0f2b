//! Shared test support for both integration binaries: a purpose-built hyper server on
//! 127.0.0.1 that can answer, hang or reset per request and records what it saw; ports reserved
//! until a test listens on them; children started with a clean environment and signalled with
//! kill(2); and the third-party components (tinyproxy, moto), which report themselves
//! [`Missing`] instead of passing silently.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

pub const BIN: &str = env!("CARGO_BIN_EXE_drifter-rsyslog");

/// How the server treats one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Status(u16),
    /// A status with a `Retry-After` header of this many seconds.
    RetryAfter(u16, u64),
    /// A status with `Connection: close`: the server closes the connection after it.
    Closing(u16),
    /// Never answers; the connection stays open.
    Hang,
    /// Closes the connection without an answer.
    Reset,
}

#[derive(Debug, Clone)]
pub struct Seen {
    /// When the request arrived.
    pub at: std::time::Instant,
    pub target: Vec<u8>,
    pub host: Option<String>,
    pub user_agent: Option<String>,
    pub reply: Reply,
}

type Behaviour = Arc<dyn Fn(u64, &[u8]) -> Reply + Send + Sync>;

pub struct TestServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Binds a free port on 127.0.0.1. `behaviour` gets the 0-based request number and target.
    pub async fn start(behaviour: impl Fn(u64, &[u8]) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Self::start_on(listener, behaviour, None)
    }

    /// Answers `status` to the first `count` requests, then 503 (accepted).
    pub async fn failing_first(count: u64, status: u16) -> Self {
        Self::start(move |n, _| {
            if n < count {
                Reply::Status(status)
            } else {
                Reply::Status(503)
            }
        })
        .await
    }

    /// Answers 404 (a permanent rejection) to each target holding `marker`, else 503
    /// (accepted).
    pub async fn rejecting(marker: &'static [u8]) -> Self {
        Self::start(move |_, target| {
            if target.windows(marker.len()).any(|w| w == marker) {
                Reply::Status(404)
            } else {
                Reply::Status(503)
            }
        })
        .await
    }

    /// Answers `status` until the test ends the [`Outage`] (having seen what it waited for),
    /// then 503 (accepted).
    pub async fn down(status: u16) -> (Self, Outage) {
        let outage = Outage(Arc::new(std::sync::atomic::AtomicBool::new(true)));
        let down = outage.0.clone();
        let server = Self::start(move |_, _| {
            if down.load(std::sync::atomic::Ordering::SeqCst) {
                Reply::Status(status)
            } else {
                Reply::Status(503)
            }
        })
        .await;
        (server, outage)
    }

    /// Starts answering 503 on `port`, which refused connections until now.
    pub fn start_at(port: ReservedPort) -> Self {
        Self::start_on(port.listen(), |_, _| Reply::Status(503), None)
    }

    pub fn start_on(
        listener: TcpListener,
        behaviour: impl Fn(u64, &[u8]) -> Reply + Send + Sync + 'static,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        let addr = listener.local_addr().expect("local address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let behaviour: Behaviour = Arc::new(behaviour);
        let task = tokio::spawn(accept_loop(listener, behaviour, seen.clone(), tls));
        TestServer { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// How many requests were answered with `status` and `Connection: close`.
    pub fn answered_closing(&self, status: u16) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.reply == Reply::Closing(status))
            .count()
    }

    /// Targets of the message requests answered with `status`, in arrival order. The
    /// circuit's probes (`GET <path>`, no query string) carry no message and are left out.
    pub fn answered(&self, status: u16) -> Vec<Vec<u8>> {
        self.seen()
            .into_iter()
            .filter(|s| s.reply == Reply::Status(status) && !is_probe(&s.target))
            .map(|s| s.target)
            .collect()
    }

    /// How many requests, messages and probes, were answered with `status`.
    pub fn replied(&self, status: u16) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.reply == Reply::Status(status))
            .count()
    }
}

/// The switch of [`TestServer::down`].
#[derive(Clone)]
pub struct Outage(Arc<std::sync::atomic::AtomicBool>);

impl Outage {
    pub fn end(&self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Down again: every request from now on is refused, on connections old and new alike
    /// (dropping the server would race with requests on connections it was still serving).
    pub fn begin(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    behaviour: Behaviour,
    seen: Arc<Mutex<Vec<Seen>>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let (behaviour, seen, counter, tls) = (
            behaviour.clone(),
            seen.clone(),
            counter.clone(),
            tls.clone(),
        );
        connections.spawn(async move {
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve(stream, behaviour, seen, counter).await;
                    }
                }
                None => serve(stream, behaviour, seen, counter).await,
            }
        });
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    behaviour: Behaviour,
    seen: Arc<Mutex<Vec<Seen>>>,
    counter: Arc<std::sync::atomic::AtomicU64>,
) {
    let service = service_fn(move |request: Request<Incoming>| {
        let (behaviour, seen, counter) = (behaviour.clone(), seen.clone(), counter.clone());
        async move {
            let target = request
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str().as_bytes().to_vec())
                .unwrap_or_default();
            let number = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let reply = behaviour(number, &target);
            let header = |name: http::header::HeaderName| {
                request
                    .headers()
                    .get(name)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            };
            seen.lock().expect("lock").push(Seen {
                at: std::time::Instant::now(),
                target,
                host: header(http::header::HOST),
                user_agent: header(http::header::USER_AGENT),
                reply,
            });
            match reply {
                Reply::Status(code) => {
                    let mut response =
                        Response::new(Full::new(Bytes::from_static(b"<html>busy</html>")));
                    *response.status_mut() = StatusCode::from_u16(code).expect("valid status");
                    Ok::<_, std::io::Error>(response)
                }
                Reply::RetryAfter(code, seconds) => {
                    let mut response = Response::new(Full::new(Bytes::from_static(b"slow down")));
                    *response.status_mut() = StatusCode::from_u16(code).expect("valid status");
                    response
                        .headers_mut()
                        .insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
                    Ok(response)
                }
                Reply::Closing(code) => {
                    let mut response = Response::new(Full::new(Bytes::from_static(b"bye")));
                    *response.status_mut() = StatusCode::from_u16(code).expect("valid status");
                    response.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                    Ok(response)
                }
                Reply::Hang => {
                    std::future::pending::<()>().await;
                    unreachable!("pending never completes")
                }
                Reply::Reset => Err(std::io::Error::other("reset by test server")),
            }
        }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The outcome of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts that the run logged `needle` on stderr, showing all of stderr if not.
    #[track_caller]
    pub fn assert_logged(&self, needle: &str) {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            self.stderr
        );
    }
}

/// Starts a component in the background without stdio (its own files say what it did),
/// killed when dropped.
pub fn spawn_quiet(command: std::process::Command, name: &str) -> Child {
    Command::from(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"))
}

/// Starts `drifter-rsyslog ARGS` with piped stdio and a clean environment.
pub fn spawn(args: &[&str]) -> Child {
    spawn_with_env(args, &[])
}

/// [`spawn`], with these environment variables set.
pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut command = binary_command(args);
    command.envs(env.iter().copied());
    spawn_command(command)
}

/// `drifter-rsyslog ARGS` with a clean environment, for a test to prepare further (limits, a
/// umask) before [`spawn_command`].
pub fn binary_command(args: &[&str]) -> std::process::Command {
    let mut command = clean_command(BIN);
    command.args(args).env("DRIFTER_LOG_LEVEL", "info");
    command
}

/// Starts `command` with piped stdio, killed if the test drops it.
pub fn spawn_command(command: std::process::Command) -> Child {
    Command::from(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start drifter-rsyslog")
}

/// Runs the binary with `input` on stdin (then EOF) and waits, at most `limit`, for it to exit.
pub async fn run_with_input(args: &[&str], input: &[u8], limit: Duration) -> Run {
    run_with_env(args, &[], input, limit).await
}

/// [`run_with_input`], with these environment variables set.
pub async fn run_with_env(
    args: &[&str],
    env: &[(&str, &str)],
    input: &[u8],
    limit: Duration,
) -> Run {
    let mut child = spawn_with_env(args, env);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    let writer = tokio::spawn(async move {
        // The binary may exit before reading everything (bad configuration): ignore EPIPE.
        let _ = stdin.write_all(&input).await;
    });
    let run = wait(child, limit).await;
    let _ = writer.await;
    run
}

pub async fn wait(child: Child, limit: Duration) -> Run {
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .expect("drifter-rsyslog did not exit in time")
        .expect("wait for drifter-rsyslog");
    Run {
        status: output.status,
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A child's stderr, read as it comes, so that a test can wait for a line (an address it
/// bound, a state it reached) instead of sleeping.
pub struct StderrLog {
    text: Arc<Mutex<String>>,
    reader: JoinHandle<()>,
}

impl StderrLog {
    /// Starts reading `child`'s piped stderr.
    pub fn take(child: &mut Child) -> Self {
        let stderr = child.stderr.take().expect("stderr is piped");
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut text = sink.lock().expect("lock");
                text.push_str(&line);
                text.push('\n');
            }
        });
        StderrLog { text, reader }
    }

    /// What the child wrote to stderr so far.
    pub fn text(&self) -> String {
        self.text.lock().expect("lock").clone()
    }

    /// Waits up to `limit` for a stderr line containing `needle`; that line.
    pub async fn line_with(&self, needle: &str, limit: Duration) -> String {
        let mut found = None;
        let seen = eventually(limit, || {
            found = self
                .text()
                .lines()
                .find(|line| line.contains(needle))
                .map(str::to_string);
            found.is_some()
        })
        .await;
        assert!(seen, "no stderr line with {needle:?}: {}", self.text());
        found.unwrap_or_default()
    }

    /// The address in the `metrics on http://ADDR/metrics` line (`--metrics-listen` port 0).
    pub async fn metrics_address(&self) -> SocketAddr {
        let line = self
            .line_with("metrics on http://", Duration::from_secs(30))
            .await;
        line.split("metrics on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }

    /// All of stderr, once the child closed it (or `limit` passed).
    pub async fn finish(self, limit: Duration) -> String {
        let _ = tokio::time::timeout(limit, self.reader).await;
        self.text.lock().expect("lock").clone()
    }
}

/// A running child with its [`StderrLog`].
pub struct Watched {
    pub child: Child,
    pub log: StderrLog,
}

impl Watched {
    pub fn new(mut child: Child) -> Self {
        let log = StderrLog::take(&mut child);
        Watched { child, log }
    }

    pub async fn line_with(&self, needle: &str, limit: Duration) -> String {
        self.log.line_with(needle, limit).await
    }

    pub async fn metrics_address(&self) -> SocketAddr {
        self.log.metrics_address().await
    }

    /// Waits, at most `limit`, for the child to exit: its outcome, stderr included.
    pub async fn wait(self, limit: Duration) -> Run {
        let mut run = wait(self.child, limit).await;
        run.stderr = self.log.finish(limit).await;
        run
    }
}

/// What a child may inherit: where programs are, a home and a temporary directory, and what
/// `faketime` needs to move the clock of the whole tree. Anything else (proxies, AWS
/// credentials, `DRIFTER_*`, `RUST_LOG`, `SSL_CERT_*`) would change what is tested, so each test
/// sets what it needs explicitly.
const INHERITED: [&str; 6] = [
    "PATH",
    "HOME",
    "TMPDIR",
    "LD_PRELOAD",
    "DONT_FAKE_MONOTONIC",
    "LLVM_PROFILE_FILE",
];

/// `program` with the environment cleared but for [`INHERITED`] and `FAKETIME*`.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command.env_clear();
    for (name, value) in std::env::vars_os() {
        let keep = name
            .to_str()
            .is_some_and(|name| INHERITED.contains(&name) || name.starts_with("FAKETIME"));
        if keep {
            command.env(name, value);
        }
    }
    command
}

/// The user the tests run as.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// Sends `name` (TERM, INT, HUP, KILL) to the child with kill(2).
#[track_caller]
pub fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("child is running");
    signal_pid(pid, name);
}

/// Sends `name` to `pid` with kill(2).
#[track_caller]
pub fn signal_pid(pid: u32, name: &str) {
    let number = match name {
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "HUP" => libc::SIGHUP,
        "KILL" => libc::SIGKILL,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        other => panic!("no such signal in the tests: {other}"),
    };
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) takes any pid and signal number and touches no memory of ours.
    let result = unsafe { libc::kill(pid, number) };
    assert_eq!(
        result,
        0,
        "kill -{name} {pid}: {}",
        std::io::Error::last_os_error()
    );
}

/// A port of 127.0.0.1 held by a socket that is bound but not listening: connections to it
/// are refused, no one else can take it, and [`ReservedPort::listen`] starts accepting on it.
pub struct ReservedPort {
    socket: tokio::net::TcpSocket,
    pub port: u16,
}

impl ReservedPort {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind 127.0.0.1:0");
        let port = socket.local_addr().expect("local address").port();
        ReservedPort { socket, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn listen(self) -> TcpListener {
        self.socket
            .listen(1024)
            .expect("listen on the reserved port")
    }
}

/// Whether a request target is a probe (`send --probe`, or the circuit's while the endpoint
/// fails): the path alone, no query string, so no message.
pub fn is_probe(target: &[u8]) -> bool {
    !target.contains(&b'?')
}

/// The message each target carries, decoded as the compatible format defines it.
pub fn decode(target: &[u8]) -> Vec<u8> {
    let query = target
        .iter()
        .position(|&b| b == b'?')
        .map(|i| &target[i + 1..])
        .unwrap_or_default();
    drifter_rsyslog::wire::decode_query(query)
}

/// The `&i=` of a target (empty without one).
pub fn id_of(target: &[u8]) -> String {
    String::from_utf8_lossy(target)
        .split('&')
        .find_map(|field| field.strip_prefix("i="))
        .unwrap_or_default()
        .to_string()
}

/// What `server` answered with 503, message by message: every message's ids.
pub fn ids_by_message(server: &TestServer) -> BTreeMap<Vec<u8>, BTreeSet<String>> {
    let mut found: BTreeMap<Vec<u8>, BTreeSet<String>> = BTreeMap::new();
    for target in server.answered(503) {
        found
            .entry(decode(&target))
            .or_default()
            .insert(id_of(&target));
    }
    found
}

/// [`ids_by_message`]; panics if a message came under two ids (decode could not drop the
/// copy) or without one.
pub fn received_once_each(server: &TestServer) -> BTreeMap<Vec<u8>, BTreeSet<String>> {
    let found = ids_by_message(server);
    for (message, ids) in &found {
        assert!(
            ids.len() == 1 && !ids.contains(""),
            "{:?} arrived with ids {ids:?}",
            String::from_utf8_lossy(message)
        );
    }
    found
}

/// `count` lines `<prefix> <n>`: the input, and the set of lines expected back.
pub fn numbered(count: usize, prefix: &str) -> (Vec<u8>, BTreeSet<Vec<u8>>) {
    let lines: Vec<String> = (0..count).map(|i| format!("{prefix} {i}")).collect();
    let input = lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect();
    (input, lines.into_iter().map(String::into_bytes).collect())
}

/// The messages the targets carry, as a set.
pub fn decoded_set(targets: &[Vec<u8>]) -> BTreeSet<Vec<u8>> {
    targets.iter().map(|t| decode(t)).collect()
}

/// Polls `condition` every 20 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

/// [`eventually`] for a condition that must await.
pub async fn eventually_async<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut condition: impl FnMut() -> F,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    condition().await
}

/// Time allowed to each run of the binary by the stand-in helpers.
pub const STAND_LIMIT: Duration = Duration::from_secs(60);

/// A running `drifter-rsyslog mock-elb`, writing under its own temporary directory.
pub struct Stand {
    pub child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub log: StderrLog,
}

impl Stand {
    pub async fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log_dir = dir.path().display().to_string();
        let mut args = vec!["mock-elb", "--listen", "127.0.0.1:0", "--log-dir", &log_dir];
        args.extend_from_slice(extra);
        let mut child = spawn(&args);
        let log = StderrLog::take(&mut child);
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("mock-elb printed its address within 10 s")
            .expect("read mock-elb stdout")
            .expect("mock-elb printed a line");
        let url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected banner {first:?}"))
            .to_string();
        Stand {
            child,
            url,
            dir,
            log,
        }
    }

    /// Its `--metrics-listen 127.0.0.1:0` address.
    pub async fn metrics_address(&self) -> SocketAddr {
        self.log.metrics_address().await
    }

    /// Stops it with `signal` and checks it exits 0 having completed its files.
    pub async fn stop(self, name: &str) -> tempfile::TempDir {
        signal(&self.child, name);
        let mut run = wait(self.child, STAND_LIMIT).await;
        run.stderr = self.log.finish(STAND_LIMIT).await;
        assert_eq!(run.code(), Some(0), "mock-elb: {}", run.stderr);
        let incoming: Vec<_> = std::fs::read_dir(self.dir.path().join(".incoming"))
            .expect("incoming dir")
            .collect();
        assert!(incoming.is_empty(), "files left incomplete: {incoming:?}");
        self.dir
    }
}

pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.join("AWSLogs")];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The decoded messages, sorted, and the decode run.
pub async fn decode_logs(args: &[&str]) -> (Vec<Vec<u8>>, Run) {
    let mut full = vec!["decode"];
    full.extend_from_slice(args);
    let run = run_with_input(&full, b"", STAND_LIMIT).await;
    let mut messages: Vec<Vec<u8>> = run
        .stdout
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    messages.sort();
    (messages, run)
}

/// GET `http://addr<path>` with hyper's client: the status and the body as text.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let uri: http::Uri = format!("http://{addr}{path}").parse().expect("valid URI");
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .expect("answered within 10 s")
        .expect("GET");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Whether tests that need an installed component must run: `DRIFTER_RSYSLOG_E2E` set to
/// anything but empty or `0` (`.ci/run` sets it).
pub fn components_required() -> bool {
    std::env::var("DRIFTER_RSYSLOG_E2E").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// How the Python components are installed (the README's Development section has the rest).
pub const REQUIREMENTS: &str = "python3 -m venv VENV && VENV/bin/pip install --require-hashes -r .ci/requirements.txt, with VENV/bin first on PATH";

/// A component a test needs is not installed: the test is reported as ignored, with this reason.
#[derive(Debug)]
pub struct Missing(pub String);

impl Missing {
    /// `what` is missing: a failure when components are required, else the reason to ignore.
    #[track_caller]
    pub fn because(what: &str, install: &str) -> Self {
        assert!(
            !components_required(),
            "DRIFTER_RSYSLOG_E2E is set but {what} ({install})"
        );
        Missing(format!("{what}; install: {install}"))
    }
}

/// A CA and a certificate for localhost signed by it, as PEM files: (ca, cert, key).
pub fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf certificate");
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).expect("write CA");
    std::fs::write(&paths.1, leaf.pem()).expect("write cert");
    std::fs::write(&paths.2, leaf_key.serialize_pem()).expect("write key");
    paths
}

/// A private tinyproxy on a free port of 127.0.0.1 (foreground, its own config), killed when
/// dropped. `extra` is added to its configuration (e.g. `BasicAuth user password`).
pub struct Tinyproxy {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    /// tinyproxy can neither bind port 0 nor take a socket from its parent, so its port is
    /// picked free, then proven to be this tinyproxy's by its statistics page; another is
    /// picked if something else took it first.
    pub async fn start(extra: &str) -> Result<Self, Missing> {
        let binary = on_path("tinyproxy").ok_or_else(|| {
            Missing::because("tinyproxy is not on PATH", "apt-get install tinyproxy")
        })?;
        for _ in 0..5 {
            let port = ReservedPort::new().port; // Released at once: tinyproxy binds it.
            let dir = tempfile::tempdir().expect("temp dir");
            // No ConnectPort line: CONNECT to every port, as the test servers use random ones.
            let config = format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 200\nAllow 127.0.0.1\nDisableViaHeader Yes\nLogLevel Warning\nStatHost \"{STAT_HOST}\"\n{extra}\n"
            );
            let config_path = dir.path().join("tinyproxy.conf");
            std::fs::write(&config_path, config).expect("write tinyproxy.conf");
            let mut command = clean_command(&binary);
            command.arg("-d").arg("-c").arg(&config_path);
            let mut child = spawn_quiet(command, "tinyproxy");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while tokio::time::Instant::now() < deadline {
                if child.try_wait().expect("tinyproxy's status").is_some() {
                    break; // It could not bind: try another port.
                }
                if answers_as_tinyproxy(port).await {
                    return Ok(Tinyproxy {
                        port,
                        child,
                        _dir: dir,
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = child.start_kill();
        }
        panic!("tinyproxy did not start on any of 5 ports");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

const STAT_HOST: &str = "tinyproxy.stats.test";

/// Whether the proxy on `port` serves tinyproxy's statistics page for [`STAT_HOST`].
async fn answers_as_tinyproxy(port: u16) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = format!("GET http://{STAT_HOST}/ HTTP/1.0\r\nHost: {STAT_HOST}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut page = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut page);
    matches!(
        tokio::time::timeout(Duration::from_secs(5), read).await,
        Ok(Ok(_))
    ) && String::from_utf8_lossy(&page).contains("tinyproxy")
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// `drifter-rsyslog spool DIR`'s rows: spool name → (owner, entries).
pub async fn spool_rows(dir: &Path) -> std::collections::BTreeMap<String, (String, u64)> {
    if !dir.exists() {
        // The program has not created it yet.
        return Default::default();
    }
    let run = run_with_input(&["spool", &dir.display().to_string()], b"", STAND_LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    String::from_utf8_lossy(&run.stdout)
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?.to_string();
            let owner = fields.next()?.to_string();
            let entries = fields.next()?.parse().ok()?;
            Some((name, (owner, entries)))
        })
        .collect()
}

/// Messages in all the spools under `dir`.
pub async fn spooled(dir: &Path) -> u64 {
    spool_rows(dir)
        .await
        .values()
        .map(|(_, entries)| entries)
        .sum()
}

/// The `&q=<sender>.<number>` of every target.
pub fn sequences(targets: &[Vec<u8>]) -> BTreeSet<(String, u64)> {
    targets
        .iter()
        .filter_map(|target| {
            let target = String::from_utf8_lossy(target).into_owned();
            let field = target.split('&').find_map(|f| f.strip_prefix("q="))?;
            let (sender, number) = field.split_once('.')?;
            Some((sender.to_string(), number.parse().ok()?))
        })
        .collect()
}

/// An executable on PATH.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// moto in server mode on a free port of 127.0.0.1: a real S3 (and IAM, CloudFormation) API,
/// killed when dropped. Its request log (one line per request) is kept for the tests to read.
pub struct Moto {
    pub endpoint: String,
    child: Child,
    python: PathBuf,
    dir: tempfile::TempDir,
}

impl Moto {
    /// moto binds port 0 and logs the port it got. `env` is moto's own
    /// (INITIAL_NO_AUTH_ACTION_COUNT, say).
    pub async fn start(env: &[(&str, &str)]) -> Result<Self, Missing> {
        let server = on_path("moto_server")
            .ok_or_else(|| Missing::because("moto_server is not on PATH", REQUIREMENTS))?;
        let python = venv_python();
        let dir = tempfile::tempdir().expect("temp dir");
        let log_path = dir.path().join("moto.log");
        let log = std::fs::File::create(&log_path).expect("moto log");
        let mut child = Command::from(clean_command(server))
            .args(["-H", "127.0.0.1", "-p", "0"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("moto log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start moto_server");
        let mut endpoint = None;
        let started = eventually(Duration::from_secs(30), || {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            endpoint = log
                .lines()
                .find_map(|line| line.split("Running on ").nth(1))
                .map(|url| url.trim().to_string());
            endpoint.is_some() || child.try_wait().is_ok_and(|status| status.is_some())
        })
        .await;
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let endpoint = endpoint
            .filter(|_| started)
            .unwrap_or_else(|| panic!("moto_server did not say where it listens: {log}"));
        Ok(Moto {
            endpoint,
            child,
            python,
            dir,
        })
    }

    /// The Python of moto's venv, if it can import `module`.
    pub fn python_with(module: &str) -> Result<PathBuf, Missing> {
        let python = venv_python();
        let imports = clean_command(&python)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|output| output.status.success());
        if !imports {
            let what = format!("{} cannot import {module}", python.display());
            return Err(Missing::because(&what, REQUIREMENTS));
        }
        Ok(python)
    }

    /// The environment `decode` needs to reach it with moto's test credentials.
    pub fn env(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", &self.endpoint),
        ]
    }

    /// Runs `tests/components/s3_fixture.py COMMAND ENDPOINT ARGS`; its stdout.
    pub fn fixture(&self, command: &str, args: &[&str]) -> String {
        let mut full = vec![command, &self.endpoint];
        full.extend_from_slice(args);
        let stdout = python_script(&self.python, "s3_fixture.py", &full);
        String::from_utf8_lossy(&stdout).into_owned()
    }

    /// Uploads every file under `dir` to `s3://bucket/prefix/…`.
    pub fn upload(&self, bucket: &str, prefix: &str, dir: &Path) {
        let dir = dir.display().to_string();
        self.fixture("upload", &[bucket, prefix, &dir]);
    }

    /// The request lines moto has logged (`GET /bucket/key?… HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default();
        log.lines()
            .filter_map(|line| {
                let start = line.find('"')? + 1;
                let end = start + line[start..].find('"')?;
                Some(without_colours(&line[start..end]))
            })
            .collect()
    }
}

/// The Python of the venv that holds moto_server (and boto3, DuckDB, sqlglot beside it), or
/// the one on PATH.
fn venv_python() -> PathBuf {
    on_path("moto_server")
        .and_then(|server| server.parent().map(|bin| bin.join("python3")))
        .filter(|python| python.is_file())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Runs `tests/components/SCRIPT ARGS` with `python` and checks it succeeded; its stdout.
pub fn python_script(python: &Path, script: &str, args: &[&str]) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/components")
        .join(script);
    let output = clean_command(python)
        .arg(path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        output.status.success(),
        "{script} {}: {}",
        args.first().copied().unwrap_or_default(),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// moto colours error answers in its log: the text without the escape codes.
fn without_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('\u{1b}') {
        plain.push_str(&rest[..start]);
        rest = rest[start..]
            .find('m')
            .map_or("", |end| &rest[start + end + 1..]);
    }
    plain.push_str(rest);
    plain
}

/// The number before `what` in the run's stderr (`12 duplicates` of decode's summary).
pub fn logged_count(run: &Run, what: &str) -> Option<u64> {
    let at = run.stderr.find(&format!(" {what}"))?;
    let digits: String = run.stderr[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().ok()
}
