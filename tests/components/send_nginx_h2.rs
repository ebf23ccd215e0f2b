//! HTTP/2 over TLS against a real nginx (`http2 on`, `keepalive_requests 100`, so it sends a
//! `GOAWAY` every 100 requests): every line arrives once with the target HTTP/1.1 sends for
//! it, nothing is retried, and the connections are replaced.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Child;

use crate::support::{self, Missing, ReservedPort, clean_command};

const LIMIT: Duration = Duration::from_secs(120);

/// A private nginx on 127.0.0.1 with TLS and HTTP/2 (`listen … http2`: Debian 12's nginx 1.22
/// knows no `http2 on`), answering 503 and logging
/// `<protocol> <connection> <request_uri>` per request; killed when dropped.
struct Nginx {
    port: u16,
    log: PathBuf,
    _child: Child,
}

impl Nginx {
    /// nginx cannot take a socket from its parent, so its port is picked free, and proven
    /// this nginx's by the pid file it writes once it has bound it; another is picked if
    /// something else took it first.
    async fn start(dir: &Path, cert: &Path, key: &Path) -> Result<Self, Missing> {
        let binary = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                Missing::because("nginx is not installed", "apt-get install nginx-light")
            })?;
        for attempt in 0..5 {
            let port = ReservedPort::new().port; // Released at once: nginx binds it.
            let prefix = dir.join(format!("nginx{attempt}"));
            std::fs::create_dir(&prefix).expect("nginx prefix");
            let (pid, log) = (prefix.join("nginx.pid"), prefix.join("access.log"));
            let config = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {p}/error.log;\npid {pid};\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n  log_format plain '$server_protocol $connection $request_uri';\n  access_log {log} plain;\n  keepalive_requests 100;\n\
                   server {{\n    listen 127.0.0.1:{port} ssl http2;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    location / {{ return 503; }}\n  }}\n}}\n",
                p = prefix.display(),
                pid = pid.display(),
                log = log.display(),
                cert = cert.display(),
                key = key.display(),
            );
            let config_path = prefix.join("nginx.conf");
            std::fs::write(&config_path, config).expect("write nginx.conf");
            let mut command = clean_command(&binary);
            command.arg("-e").arg(prefix.join("error.log"));
            command.arg("-p").arg(&prefix).arg("-c").arg(&config_path);
            let mut child = support::spawn_quiet(command, "nginx");
            let own = child.id().map(|id| id.to_string());
            let started = support::eventually_async(Duration::from_secs(10), || {
                let exited = child.try_wait().ok().flatten().is_some();
                let ours = std::fs::read_to_string(&pid)
                    .is_ok_and(|text| Some(text.trim()) == own.as_deref());
                async move { exited || ours }
            })
            .await;
            if started && child.try_wait().ok().flatten().is_none() {
                return Ok(Nginx {
                    port,
                    log,
                    _child: child,
                });
            }
        }
        panic!("nginx did not start on any of 5 free ports");
    }

    /// The logged entries: (protocol, connection, request URI).
    fn entries(&self) -> Vec<(String, String, String)> {
        std::fs::read_to_string(&self.log)
            .expect("nginx access log")
            .lines()
            .filter_map(|line| {
                let mut fields = line.splitn(3, ' ');
                Some((
                    fields.next()?.to_string(),
                    fields.next()?.to_string(),
                    fields.next()?.to_string(),
                ))
            })
            .collect()
    }
}

async fn http2_to_nginx_with_goaway_loses_and_retries_nothing() -> Result<(), Missing> {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = support::certificates(dir.path());
    let nginx = Nginx::start(dir.path(), &cert, &key).await?;
    let url = format!("https://localhost:{}/app1", nginx.port);
    let ca = ca.display().to_string();
    let (mut input, _) = support::numbered(1000, "nginx");
    input.extend("it's (all) ~fine~! 100% * sure?\né ünïcode\n".as_bytes());
    for http in ["2", "1.1"] {
        let args = ["send", &url, "--ca-cert", &ca, "--http", http];
        let run = support::run_with_input(&args, &input, LIMIT).await;
        assert_eq!(run.code(), Some(0), "--http {http}: {}", run.stderr);
        assert!(
            run.stderr.contains("delivered 1002, retried 0,"),
            "--http {http}: {}",
            run.stderr
        );
    }
    let mut by_protocol: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut h2_connections = BTreeSet::new();
    for (protocol, connection, uri) in nginx.entries() {
        if protocol == "HTTP/2.0" {
            h2_connections.insert(connection);
        }
        by_protocol.entry(protocol).or_default().push(uri);
    }
    for uris in by_protocol.values_mut() {
        uris.sort();
    }
    let h2 = by_protocol.get("HTTP/2.0").expect("HTTP/2 entries");
    let h1 = by_protocol.get("HTTP/1.1").expect("HTTP/1.1 entries");
    assert_eq!(h2.len(), 1002, "each line once over HTTP/2");
    assert_eq!(h2, h1, "the same targets, byte for byte");
    // 100 requests a connection, and up to 64 more already in flight at each GOAWAY.
    assert!(h2_connections.len() >= 1002 / 164, "{h2_connections:?}");
    Ok(())
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    crate::trials![http2_to_nginx_with_goaway_loses_and_retries_nothing]
}
