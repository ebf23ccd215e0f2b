//! A private foreground rsyslogd with a TCP input on 127.0.0.1, for the end-to-end tests and
//! the rsyslog benchmark alike (the test binary includes this file by path). It uses only std,
//! tokio, tempfile, anyhow and libc, so it builds in both.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The rsyslogd on PATH (Debian puts it in /usr/sbin, which must then be on PATH).
pub fn binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("rsyslogd"))
        .find(|candidate| candidate.is_file())
        .context("rsyslogd is not on PATH (apt-get install rsyslog; /usr/sbin on PATH)")
}

/// A running rsyslogd, killed when dropped.
pub struct Rsyslogd {
    pub child: Child,
    pub input_port: u16,
    _dir: tempfile::TempDir,
}

impl Rsyslogd {
    /// Starts rsyslogd with its work directory in `dir`, an imtcp input on a port of its
    /// choosing (port 0, told through `listenPortFileName`) and `action_config` (modules,
    /// templates, actions) after it; returns once the input listens. rsyslogd and the
    /// programs it starts get a clean environment: only PATH, HOME, TMPDIR and faketime's.
    pub async fn start(action_config: &str, dir: tempfile::TempDir) -> anyhow::Result<Self> {
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work)?;
        let port_file = dir.path().join("input.port");
        let config = format!(
            "global(workDirectory=\"{}\")\nmodule(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"0\" listenPortFileName=\"{}\")\n{action_config}\n",
            work.display(),
            port_file.display()
        );
        let config_path = dir.path().join("rsyslog.conf");
        std::fs::write(&config_path, config)?;
        let mut command = Command::new(binary()?);
        command.env_clear();
        for (name, value) in std::env::vars_os() {
            let keep = name.to_str().is_some_and(|name| {
                [
                    "PATH",
                    "HOME",
                    "TMPDIR",
                    "LD_PRELOAD",
                    "DONT_FAKE_MONOTONIC",
                ]
                .contains(&name)
                    || name.starts_with("FAKETIME")
            });
            if keep {
                command.env(name, value);
            }
        }
        let mut child = command
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
        let deadline = Instant::now() + Duration::from_secs(10);
        let input_port = loop {
            let written = std::fs::read_to_string(&port_file).unwrap_or_default();
            if let Ok(port) = written.trim().parse::<u16>() {
                break port;
            }
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("rsyslogd exited at start: {status}");
            }
            if Instant::now() > deadline {
                anyhow::bail!("rsyslogd did not write its input's port within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
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
            let pid = libc::pid_t::try_from(pid).context("pid fits pid_t")?;
            // SAFETY: kill(2) takes any pid and signal number and touches no memory of ours.
            if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
                return Err(std::io::Error::last_os_error()).context("kill -TERM rsyslogd");
            }
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
