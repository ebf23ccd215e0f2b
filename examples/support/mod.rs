//! Shared by the example programs: finding the built binary, running it and a raw HTTP client
//! as separate processes, and reading process counters.
#![allow(dead_code)] // each example uses its own subset

pub mod rsyslogd;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use drifter_rsyslog::access_log::Request;
use drifter_rsyslog::mock_elb::{MockElb, ServerOptions};
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Requests in flight, for the binary (its default) and the raw client alike.
pub const CONCURRENCY: usize = 64;
/// An example runs itself with this argument to measure the raw client in its own process.
const RAW_CLIENT_MODE: &str = "--raw-client";

/// Sends SIGTERM to `pid` with kill(2) (minimal images have no `kill` program).
pub fn terminate(pid: u32) -> anyhow::Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid fits pid_t")?;
    // SAFETY: kill(2) takes any pid and signal number and touches no memory of ours.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return Err(std::io::Error::last_os_error()).context("kill -TERM");
    }
    Ok(())
}

/// The `drifter-rsyslog` binary of the same build profile as this example
/// (`target/<profile>/examples/NAME` → `target/<profile>/drifter-rsyslog`), or the one
/// `DRIFTER_BENCH_BINARY` names.
pub fn binary() -> anyhow::Result<PathBuf> {
    // Another build to measure, e.g. the one before a change, in the same run as this one.
    if let Some(other) = std::env::var_os("DRIFTER_BENCH_BINARY") {
        return Ok(PathBuf::from(other));
    }
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|examples| examples.parent())
        .ok_or_else(|| {
            anyhow::anyhow!("cannot locate the target directory from {}", exe.display())
        })?;
    let binary = profile_dir.join("drifter-rsyslog");
    if !binary.exists() {
        anyhow::bail!(
            "{} not found: build it first with `cargo build --release` (or without --release for a debug example)",
            binary.display()
        );
    }
    Ok(binary)
}

/// The benchmarks' two arguments, `[COUNT] [ROUNDS]`, with their defaults.
pub fn count_and_rounds(count: usize, rounds: usize) -> anyhow::Result<(usize, usize)> {
    let mut args = std::env::args().skip(1);
    let mut next = |default: usize| -> anyhow::Result<usize> {
        Ok(args
            .next()
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(default))
    };
    Ok((next(count)?, next(rounds)?))
}

/// The load-balancer stand-in, in this process on a free loopback port, answering 503 and
/// handing each logged request to `records` if given; returns it and its URL.
pub async fn local_load_balancer(
    records: Option<tokio::sync::mpsc::Sender<Request>>,
) -> anyhow::Result<(MockElb, String)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let elb = MockElb::serve(
        listener,
        ServerOptions::plain(StatusCode::SERVICE_UNAVAILABLE),
        records,
    )?;
    let url = format!("http://{}/", elb.local_addr());
    Ok((elb, url))
}

/// Peak resident set size of a running process, in KiB (VmHWM).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// If this process was started as the raw client (`--raw-client URL TARGETS`), sends every
/// target of the file (one per line), prints requests per second and returns true.
pub async fn run_as_raw_client_if_asked() -> anyhow::Result<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, url, targets] = &args[..] else {
        return Ok(false);
    };
    if mode != RAW_CLIENT_MODE {
        return Ok(false);
    }
    let text = std::fs::read_to_string(targets)?;
    let targets: Vec<String> = text.lines().map(str::to_string).collect();
    println!("{}", raw_client(url, Arc::new(targets)).await?);
    Ok(true)
}

/// Requests per second of the raw client sending the targets in `targets` (one per line), run
/// as a separate process like the binary.
pub async fn raw_client_rate(url: &str, targets: &Path) -> anyhow::Result<f64> {
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .arg(RAW_CLIENT_MODE)
        .arg(url)
        .arg(targets)
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "raw client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}

/// A tight loop of pooled keep-alive GETs: the ceiling for any sender on this machine.
async fn raw_client(url: &str, targets: Arc<Vec<String>>) -> anyhow::Result<f64> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONCURRENCY)
        .build_http();
    let base = url.trim_end_matches('/').to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (client, targets, next, base) =
            (client.clone(), targets.clone(), next.clone(), base.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(target) = targets.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let uri: http::Uri = format!("{base}{target}").parse()?;
                let response = client.get(uri).await?;
                anyhow::ensure!(
                    response.status() == StatusCode::SERVICE_UNAVAILABLE,
                    "unexpected {}",
                    response.status()
                );
                response.into_body().collect().await?;
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(targets.len() as f64 / started.elapsed().as_secs_f64())
}

/// One run of the binary.
pub struct BinaryRun {
    pub elapsed: Duration,
    pub peak_rss_kib: u64,
    /// User and system CPU time.
    pub cpu: (Duration, Duration),
}

/// Runs `drifter-rsyslog ARGS < input` to completion.
pub async fn run_binary(binary: &Path, args: &[&str], input: &Path) -> anyhow::Result<BinaryRun> {
    let stdin = std::fs::File::open(input)?;
    let cpu_before = children_cpu();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .args(args)
        .stdin(Stdio::from(stdin))
        .spawn()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let pid = child.id().context("child pid")?;
    let mut peak = 0;
    let status = loop {
        if let Some(rss) = peak_rss_kib(pid) {
            peak = rss;
        }
        tokio::select! {
            status = child.wait() => break status?,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    let elapsed = started.elapsed();
    anyhow::ensure!(
        status.success(),
        "drifter-rsyslog {args:?} exited with {status}"
    );
    Ok(BinaryRun {
        elapsed,
        peak_rss_kib: peak,
        cpu: cpu_since(cpu_before),
    })
}

/// What the end-to-end benchmarks send: [`sample_lines`] written to `input.log` (what `send`
/// reads) and each line's request target (what the baseline clients send).
pub struct Workload {
    pub input_path: PathBuf,
    /// Bytes of `input.log`.
    pub input_bytes: usize,
    pub targets: Vec<String>,
}

/// `count` sample lines in `dir/input.log`, with their targets.
pub fn workload(dir: &Path, count: usize) -> std::io::Result<Workload> {
    let messages = sample_lines(count);
    let input: Vec<u8> = messages
        .iter()
        .flat_map(|m| [m.as_bytes(), b"\n"].concat())
        .collect();
    let input_path = dir.join("input.log");
    std::fs::write(&input_path, &input)?;
    let targets = messages
        .iter()
        .map(|m| drifter_rsyslog::wire::encode_target("/", m.as_bytes()))
        .collect();
    Ok(Workload {
        input_path,
        input_bytes: input.len(),
        targets,
    })
}

/// Log-like lines of about 200 bytes with spaces and punctuation, so encoding has work to do.
pub fn sample_lines(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            format!(
                "<134>Nov 23 11:{:02}:{:02} web-{} app[{}]: request id={i:08} method=GET path=/api/v1/items?page={} status=200 bytes={} ua=\"Mozilla/5.0 (X11; Linux x86_64)\" t=0.0{}s region=eu-west-1 az=b",
                i / 60 % 60,
                i % 60,
                i % 7,
                1000 + i % 50,
                i % 100,
                i * 37 % 100_000,
                i % 10
            )
        })
        .collect()
}

/// A private nginx on a free loopback port (one worker, `return 503`, access log on): the
/// server both `send` and wrk are measured against. Stopped when dropped.
pub struct Nginx {
    pub url: String,
    /// With [`Nginx::start_with_tls`]: `https://127.0.0.1:PORT/`, TLS with HTTP/2 offered by
    /// ALPN, on the same worker.
    pub tls_url: Option<String>,
    child: std::process::Child,
    dir: tempfile::TempDir,
}

/// A free loopback port, released at once for a server that can only bind it itself.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Nginx {
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with_tls(None)
    }

    /// With `tls` (certificate and key PEM files), also a TLS server with `http2` on another
    /// port. Debian 12's nginx 1.22 takes `listen … ssl http2` (no `http2 on`); its
    /// `keepalive_requests` also bounds the requests of an HTTP/2 connection.
    pub fn start_with_tls(tls: Option<(&Path, &Path)>) -> anyhow::Result<Self> {
        let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .context("nginx is not installed (apt-get install nginx-light)")?;
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let tls_port = tls.map(|_| free_port()).transpose()?;
        let tls_server = match (tls, tls_port) {
            (Some((cert, key)), Some(tls_port)) => format!(
                "    server {{\n        listen 127.0.0.1:{tls_port} ssl http2;\n        ssl_certificate {};\n        ssl_certificate_key {};\n        location / {{ return 503; }}\n    }}\n",
                cert.display(),
                key.display()
            ),
            _ => String::new(),
        };
        // The combined format, and the connection's serial number: how many each client opened.
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {dir}/error.log;\npid {dir}/nginx.pid;\nevents {{ worker_connections 4096; }}\nhttp {{\n    log_format bench '$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" $connection';\n    access_log {dir}/access.log bench;\n    keepalive_requests 10000000;\n    server {{\n        listen 127.0.0.1:{port};\n        location / {{ return 503; }}\n    }}\n{tls_server}}}\n",
            dir = dir.path().display()
        );
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config)?;
        let child = std::process::Command::new(nginx)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .spawn()
            .context("start nginx")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in std::iter::once(port).chain(tls_port) {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                anyhow::ensure!(Instant::now() < deadline, "nginx did not start listening");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(Nginx {
            url: format!("http://127.0.0.1:{port}/"),
            tls_url: tls_port.map(|port| format!("https://127.0.0.1:{port}/")),
            child,
            dir,
        })
    }

    /// How many connections the requests logged after `offset` (bytes of the access log)
    /// came on; moves `offset` to the end of the log.
    pub fn connections_since(&self, offset: &mut u64) -> anyhow::Result<usize> {
        use std::io::{Read, Seek};
        let mut log = std::fs::File::open(self.dir.path().join("access.log"))?;
        log.seek(std::io::SeekFrom::Start(*offset))?;
        let mut text = Vec::new();
        log.read_to_end(&mut text)?;
        *offset += text.len() as u64;
        let connections: std::collections::HashSet<&[u8]> = text
            .split(|&b| b == b'\n')
            .filter_map(|line| line.rsplit(|&b| b == b' ').next())
            .filter(|serial| !serial.is_empty())
            .collect();
        Ok(connections.len())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time of this process's waited-for children so far, (user, system): read before and
/// after running one, it gives that child's CPU time.
pub fn children_cpu() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the parenthesised command name: field 3 is the state; cutime and cstime are
    // fields 16 and 17, in USER_HZ (100 per second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        let ticks = fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
        Duration::from_millis(ticks * 10)
    };
    (ticks(13), ticks(14))
}

/// The CPU time a child took: `children_cpu()` now, less `before`.
pub fn cpu_since(before: (Duration, Duration)) -> (Duration, Duration) {
    let (user, system) = children_cpu();
    (
        user.saturating_sub(before.0),
        system.saturating_sub(before.1),
    )
}

/// wrk against `url` with `connections` keep-alive connections for `seconds`: requests per
/// second and CPU time per request.
pub async fn wrk(url: &str, connections: usize, seconds: u64) -> anyhow::Result<(f64, Duration)> {
    let before = children_cpu();
    let output = tokio::process::Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            url,
        ])
        .output()
        .await
        .context("run wrk (apt-get install wrk)")?;
    let (user, system) = cpu_since(before);
    let cpu = user + system;
    anyhow::ensure!(output.status.success(), "wrk failed");
    let text = String::from_utf8_lossy(&output.stdout);
    let requests: u64 = text
        .lines()
        .find_map(|line| line.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .context("no request count in wrk's output")?;
    let rate = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|n| n.trim().parse().ok())
        .context("no rate in wrk's output")?;
    Ok((rate, cpu / requests.max(1) as u32))
}

/// Runs `command` with stdout to /dev/null; returns its wall time and peak RSS in KiB.
pub fn time_command(command: &mut std::process::Command) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start the command")?;
    let mut peak = 0;
    loop {
        if let Some(kib) = peak_rss_kib(child.id()) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "the command failed: {status}");
            return Ok((started.elapsed(), peak));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The load balancer the decode benchmarks' generated logs come from.
pub fn bench_balancer() -> drifter_rsyslog::access_log::Balancer {
    drifter_rsyslog::access_log::Balancer {
        name: "bench".into(),
        id: "50dc6c495c0c9188".into(),
        account: "123456789012".into(),
        region: "us-east-1".into(),
        node_ip: "10.0.0.1".into(),
    }
}

/// Request `number` of the decode benchmarks: a ~200-byte syslog line, as `send` encodes it.
pub fn bench_request(number: u64) -> anyhow::Result<Request> {
    let message = format!(
        "<13>Nov 23 11:00:00 web-{} app[{number}]: request id={number:016x} path=/api/v1/items status=200 took=12ms user=\"alice\" é",
        number % 7
    );
    Ok(Request {
        time: time::OffsetDateTime::now_utc(),
        client: "10.1.2.3:40000".parse()?,
        method: "GET".into(),
        url: drifter_rsyslog::wire::encode_target("http://elb.example.com:80/", message.as_bytes())
            .into_bytes(),
        version: "HTTP/1.1".into(),
        user_agent: Some(b"drifter-rsyslog/0.1.0".to_vec()),
        status: 503,
        received_bytes: 300,
        sent_bytes: 90,
        tls: None,
        unreadable: false,
    })
}
