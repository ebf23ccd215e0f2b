//! `decode s3://…` from a local S3 server against `decode` of the same files on disk, in the
//! same run.
//!
//!     cargo build --release && cargo run --release --example bench_decode_s3 -- [MEGABYTES] [ROUNDS]
//!
//! Needs `moto_server` (and its venv's boto3) on PATH, as the tests do. Writes MEGABYTES
//! (default 256) of ALB entries as gzip files of about 8 MB uncompressed each (five minutes of
//! a busy load balancer), uploads them to moto on 127.0.0.1, then alternates for ROUNDS
//! (default 3): the local tree, then S3 with `--jobs` at its default, 1 and 8. Reports MB/s of
//! uncompressed log, each S3 rate as a ratio to the local one of the same round, and peak RSS.

mod support;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use drifter_rsyslog::access_log::{self, Format};

const FILE_BYTES: u64 = 8 << 20;

fn main() -> anyhow::Result<()> {
    let (megabytes, rounds) = support::count_and_rounds(256, 3)?;
    let binary = support::binary()?;
    let dir = tempfile::tempdir()?;
    let (files, bytes) = generate(dir.path(), (megabytes as u64) << 20)?;
    let mb = bytes as f64 / 1e6;
    println!("{files} ALB .log.gz files, {mb:.0} MB uncompressed");

    let moto = Moto::start()?;
    let upload = Command::new(&moto.python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/components/s3_fixture.py"
        ))
        .args(["upload", &moto.endpoint, "bench", "elb"])
        .arg(dir.path())
        .status()
        .context("run s3_fixture.py")?;
    anyhow::ensure!(upload.success(), "upload failed");

    let local = dir.path().display().to_string();
    let rate = |d: Duration| mb / d.as_secs_f64();
    for round in 1..=rounds {
        let (on_disk, disk_rss) = support::time_command(&mut decode(&binary, &moto, &[&local]))?;
        println!(
            "round {round}: local            {:>6.0} MB/s   peak RSS {disk_rss} KiB",
            rate(on_disk)
        );
        for (name, jobs) in [
            ("default --jobs", None),
            ("--jobs 1", Some("1")),
            ("--jobs 8", Some("8")),
        ] {
            let mut args = vec!["s3://bench/elb/"];
            if let Some(jobs) = jobs {
                args.extend(["--jobs", jobs]);
            }
            let (from_s3, rss) = support::time_command(&mut decode(&binary, &moto, &args))?;
            println!(
                "round {round}: s3 {name:<14} {:>6.0} MB/s   {:.2} of local   peak RSS {rss} KiB",
                rate(from_s3),
                rate(from_s3) / rate(on_disk)
            );
        }
    }
    Ok(())
}

fn decode(binary: &Path, moto: &Moto, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("decode")
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", &moto.endpoint);
    command
}

struct Moto {
    child: Child,
    endpoint: String,
    python: std::path::PathBuf,
}

impl Moto {
    fn start() -> anyhow::Result<Self> {
        let server = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .map(|dir| dir.join("moto_server"))
            .find(|candidate| candidate.is_file())
            .context("moto_server is not on PATH (pip install 'moto[server]' boto3)")?;
        let python = server.with_file_name("python3");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start moto_server")?;
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Moto {
                    child,
                    endpoint: format!("http://127.0.0.1:{port}"),
                    python,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("moto_server did not listen on {port}")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// ALB files of [`FILE_BYTES`] each, in the layout the load balancer writes, until `target`.
fn generate(root: &Path, target: u64) -> anyhow::Result<(u64, u64)> {
    let balancer = support::bench_balancer();
    let day = root.join("AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/12/01");
    std::fs::create_dir_all(&day)?;
    let (mut files, mut bytes, mut entries) = (0u64, 0u64, 0u64);
    let mut line = Vec::new();
    while bytes < target {
        let name = format!(
            "123456789012_elasticloadbalancing_us-east-1_app.bench.50dc6c495c0c9188_20261201T{:02}{:02}Z_10.0.0.1_{files:08x}.log.gz",
            files / 12 % 24,
            files % 12 * 5
        );
        let mut gz = flate2::write::GzEncoder::new(
            BufWriter::new(std::fs::File::create(day.join(name))?),
            flate2::Compression::fast(),
        );
        let mut in_file = 0;
        while in_file < FILE_BYTES {
            let request = support::bench_request(entries)?;
            line.clear();
            access_log::write_entry(Format::Alb, &balancer, &request, &mut line);
            gz.write_all(&line)?;
            in_file += line.len() as u64;
            entries += 1;
        }
        gz.finish()?.flush()?;
        bytes += in_file;
        files += 1;
    }
    Ok((files, bytes))
}
