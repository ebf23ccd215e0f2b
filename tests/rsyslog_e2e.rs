//! A real rsyslogd feeding the binary through the shipped rsyslog.d configs.
//!
//! Runs only with DRIFTER_RSYSLOG_E2E=1 (`.ci/run` installs rsyslog and sets it); then a
//! missing rsyslogd is a failure, not a skip.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{Reply, TestServer};
use tokio::io::AsyncWriteExt;

fn enabled() -> bool {
    std::env::var("DRIFTER_RSYSLOG_E2E").is_ok_and(|v| v == "1")
}

fn rsyslogd() -> PathBuf {
    [
        "/usr/sbin/rsyslogd",
        "/sbin/rsyslogd",
        "/usr/local/sbin/rsyslogd",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("DRIFTER_RSYSLOG_E2E=1 but rsyslogd is not installed")
}

fn shipped_configs() -> Vec<PathBuf> {
    let mut configs: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("rsyslog.d"))
            .expect("rsyslog.d exists")
            .map(|entry| entry.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
    configs.sort();
    configs
}

#[test]
fn every_shipped_config_passes_rsyslogd_check() {
    if !enabled() {
        eprintln!("skipped: set DRIFTER_RSYSLOG_E2E=1 to run against a real rsyslogd");
        return;
    }
    let configs = shipped_configs();
    assert!(!configs.is_empty());
    for config in configs {
        let output = std::process::Command::new(rsyslogd())
            .arg("-N1")
            .arg("-f")
            .arg(&config)
            .output()
            .expect("run rsyslogd -N1");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{}: {stderr}", config.display());
        assert!(!stderr.contains("error"), "{}: {stderr}", config.display());
    }
}

/// A private foreground rsyslogd with a TCP input on 127.0.0.1, stopped by pid when dropped.
struct Rsyslogd {
    child: tokio::process::Child,
    input_port: u16,
    _dir: tempfile::TempDir,
}

impl Rsyslogd {
    async fn start(action_config: &str, dir: tempfile::TempDir) -> Self {
        let input_port = common::unused_port().await;
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("work dir");
        let config = format!(
            "global(workDirectory=\"{}\")\nmodule(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{input_port}\")\n{action_config}\n",
            work.display()
        );
        let config_path = dir.path().join("rsyslog.conf");
        std::fs::write(&config_path, config).expect("write config");
        let child = tokio::process::Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(&config_path)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start rsyslogd");
        let started = common::eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", input_port)).is_ok()
        })
        .await;
        assert!(started, "rsyslogd did not open its TCP input");
        Rsyslogd {
            child,
            input_port,
            _dir: dir,
        }
    }

    async fn send(&self, messages: &[String]) {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.input_port))
            .await
            .expect("connect to imtcp");
        for message in messages {
            let frame = format!("<13>Nov 23 11:00:00 e2ehost e2etag: {message}\n");
            stream
                .write_all(frame.as_bytes())
                .await
                .expect("write syslog frame");
        }
        stream.shutdown().await.expect("close syslog connection");
    }

    async fn stop(mut self) {
        common::signal(&self.child, "TERM");
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("rsyslogd did not stop within 30 s")
            .expect("wait for rsyslogd");
    }
}

/// The shipped config with the placeholders replaced by this test's binary, server and files.
fn adapt(config: &Path, server_url: &str, dir: &Path) -> String {
    std::fs::read_to_string(config)
        .expect("read shipped config")
        .replace("/usr/local/bin/drifter-rsyslog", common::BIN)
        .replace(
            "http://my-elb-1234567890.eu-west-1.elb.amazonaws.com/",
            server_url,
        )
        .replace(
            "/var/spool/drifter-rsyslog.dead",
            &dir.join("dead.log").display().to_string(),
        )
        .replace(
            "/var/log/drifter-rsyslog.log",
            &dir.join("drifter.log").display().to_string(),
        )
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_config_delivers_every_message_through_rsyslogd() {
    if !enabled() {
        eprintln!("skipped: set DRIFTER_RSYSLOG_E2E=1 to run against a real rsyslogd");
        return;
    }
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config_dir = dir.path().to_path_buf();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("rsyslog.d/drifter-plain.conf");
    let action = adapt(&shipped, &server.url(), &config_dir);
    let rsyslogd = Rsyslogd::start(&action, dir).await;

    let messages: Vec<String> = (0..500)
        .map(|i| format!("drifter-e2e {i:05} & é \"quoted\""))
        .collect();
    rsyslogd.send(&messages).await;
    let all_arrived = common::eventually(Duration::from_secs(30), || {
        server.answered(503).len() >= messages.len()
    })
    .await;
    let log = std::fs::read_to_string(config_dir.join("drifter.log")).unwrap_or_default();
    rsyslogd.stop().await;
    assert!(
        all_arrived,
        "{} of {} arrived; drifter log: {log}",
        server.answered(503).len(),
        messages.len()
    );

    // RSYSLOG_FileFormat: "<timestamp> <host> <tag> <msg>"; the message is the line's tail.
    let received: BTreeSet<String> = server
        .answered(503)
        .iter()
        .map(|t| String::from_utf8_lossy(&common::decode(t)).into_owned())
        .map(|line| {
            line.split_once("e2etag: ")
                .map(|(_, m)| m.to_string())
                .unwrap_or(line)
        })
        .collect();
    assert_eq!(received, messages.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(
        server.answered(503).len(),
        messages.len(),
        "no duplicates in plain mode"
    );
}
