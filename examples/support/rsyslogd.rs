//! A private foreground rsyslogd with a TCP input on 127.0.0.1, for the end-to-end tests and
//! the rsyslog benchmark alike (the test binary includes this file by path). It uses only std,
//! tokio, tempfile and anyhow, so it builds in both.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Where Debian and a source build put rsyslogd.
pub fn binary() -> anyhow::Result<PathBuf> {
    [
        "/usr/sbin/rsyslogd",
        "/sbin/rsyslogd",
        "/usr/local/sbin/rsyslogd",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .context("rsyslogd is not installed (apt-get install rsyslog)")
}

/// A running rsyslogd, killed when dropped.
pub struct Rsyslogd {
    pub child: Child,
    pub input_port: u16,
    _dir: tempfile::TempDir,
}

impl Rsyslogd {
    /// Starts rsyslogd with its work directory in `dir`, an imtcp input on a free port and
    /// `action_config` (modules, templates, actions) after it; returns once the input listens.
    pub async fn start(action_config: &str, dir: tempfile::TempDir) -> anyhow::Result<Self> {
        let input_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work)?;
        let config = format!(
            "global(workDirectory=\"{}\")\nmodule(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{input_port}\")\n{action_config}\n",
            work.display()
        );
        let config_path = dir.path().join("rsyslog.conf");
        std::fs::write(&config_path, config)?;
        let child = Command::new(binary()?)
            .arg("-n")
            .arg("-f")
            .arg(&config_path)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start rsyslogd")?;
        let rsyslogd = Rsyslogd {
            child,
            input_port,
            _dir: dir,
        };
        // Proves the input listens; rsyslogd takes a closed empty connection as nothing.
        drop(rsyslogd.connect().await?);
        Ok(rsyslogd)
    }

    /// A connection to the TCP input, retried for 10 s while rsyslogd starts.
    pub async fn connect(&self) -> anyhow::Result<TcpStream> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpStream::connect(("127.0.0.1", self.input_port)).await {
                Ok(stream) => return Ok(stream),
                Err(e) if Instant::now() > deadline => {
                    return Err(e).context("rsyslogd did not open its TCP input");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Writes `frames` (whole syslog lines) over one connection and closes it.
    pub async fn send(&self, frames: &[u8]) -> anyhow::Result<()> {
        let mut stream = self.connect().await?;
        stream.write_all(frames).await?;
        stream.shutdown().await?;
        Ok(())
    }

    /// SIGTERM, and waits up to 30 s for rsyslogd (and so its actions) to stop.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .context("run kill")?;
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .context("rsyslogd did not stop within 30 s")??;
        Ok(())
    }
}

/// The pids of the processes whose parent is `parent` (rsyslogd's omprog programs).
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The fields after the parenthesised command name: state, then ppid.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|ppid| ppid.parse::<u32>().ok())
                == Some(parent)
        })
        .collect()
}
