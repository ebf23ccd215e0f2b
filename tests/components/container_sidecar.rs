//! The sidecar image in a real container runtime: `examples/container/build.sh` builds it
//! FROM scratch with podman, and the container reads a host log directory with `--file` while
//! a writer appends numbered lines and rotates the file twice (rename, then copytruncate);
//! it is killed mid-stream and started again, then stopped. Every line reaches a stand-in
//! load balancer on the host, repeats only under their first id, and the stop exits 0.
//!
//! Podman runs as root here with `--runtime runc --cgroup-manager=cgroupfs` (no systemd, no
//! crun), a `nofile` limit at most the hard one, and the host network.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::{self, Missing, Reply, TestServer};

const IMAGE: &str = "localhost/drifter-rsyslog-e2e:test";
/// A cold build of the static release binary takes minutes on a small machine.
const BUILD_LIMIT: Duration = Duration::from_secs(1800);
const LIMIT: Duration = Duration::from_secs(120);
const ENGINE_FLAGS: [&str; 3] = ["--runtime", "runc", "--cgroup-manager=cgroupfs"];
const TOTAL: usize = 3000;

fn podman(args: &[&str]) -> std::process::Command {
    let mut command = support::clean_command("podman");
    command.args(ENGINE_FLAGS).args(args);
    command
}

async fn run(mut command: std::process::Command, limit: Duration) -> std::process::Output {
    command.stdin(Stdio::null());
    tokio::time::timeout(limit, tokio::process::Command::from(command).output())
        .await
        .expect("podman did not finish in time")
        .expect("run podman")
}

async fn podman_ok(args: &[&str], limit: Duration) -> String {
    let output = run(podman(args), limit).await;
    assert!(
        output.status.success(),
        "podman {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Removes the container however the test ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn hard_nofile() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through the pointer, which points at `limit`.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if got == 0 { limit.rlim_max } else { 1024 }
}

fn append(path: &Path, from: usize, to: usize) {
    let text: String = (from..to).map(|i| format!("pod {i:05}\n")).collect();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .expect("append");
}

async fn until_received(server: &TestServer, count: usize, name: &str) {
    let arrived =
        support::eventually(LIMIT, || support::received_once_each(server).len() >= count).await;
    if !arrived {
        let logs = run(podman(&["logs", name]), LIMIT).await;
        panic!(
            "{} of {count} messages arrived; container log:\n{}{}",
            support::received_once_each(server).len(),
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        );
    }
}

async fn podman_can_run() -> Result<(), Missing> {
    let install = "apt-get install podman runc";
    let Ok(output) = podman(&["info"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    else {
        return Err(Missing::because("podman is not installed", install));
    };
    if !output.success() {
        return Err(Missing::because(
            "podman cannot run containers here (podman info failed)",
            install,
        ));
    }
    if support::effective_uid() != 0 {
        return Err(Missing::because(
            "the podman test runs as root (it hands the spool directory to the image's user)",
            "run the components suite as root",
        ));
    }
    Ok(())
}

async fn the_sidecar_image_survives_a_kill_and_rotations_and_stops_cleanly() -> Result<(), Missing>
{
    podman_can_run().await?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut build = support::clean_command(repo.join("examples/container/build.sh"));
    build
        .arg(IMAGE)
        .env("ENGINE_FLAGS", ENGINE_FLAGS.join(" "))
        .current_dir(&repo);
    for inherited in ["CARGO_HOME", "RUSTUP_HOME", "CARGO_TARGET_DIR"] {
        if let Ok(value) = std::env::var(inherited) {
            build.env(inherited, value);
        }
    }
    let built = run(build, BUILD_LIMIT).await;
    assert!(
        built.status.success(),
        "build.sh: {}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&built.stdout).trim_end());

    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    let spool = dir.path().join("spool");
    std::fs::create_dir(&logs).expect("logs dir");
    std::fs::create_dir(&spool).expect("spool dir");
    // The image runs as 65532: the spool is its own (owner-only, as the spool wants).
    std::os::unix::fs::chown(&spool, Some(65532), Some(65532)).expect("chown spool");
    let log = logs.join("app.log");
    append(&log, 0, 500);

    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let name = format!("drifter-e2e-{}", std::process::id());
    let container = Container(name.clone());
    let nofile = format!("nofile={0}:{0}", hard_nofile().min(65536));
    let logs_volume = format!("{}:/var/log/app:ro", logs.display());
    let spool_volume = format!("{}:/var/spool/drifter", spool.display());
    let url = format!("DRIFTER_URL={}", server.url());
    podman_ok(
        &[
            "run",
            "--detach",
            "--name",
            &name,
            "--network",
            "host",
            "--ulimit",
            &nofile,
            "--ulimit",
            "nproc=4096:4096",
            "--read-only",
            "--volume",
            &logs_volume,
            "--volume",
            &spool_volume,
            "--env",
            &url,
            "--env",
            "DRIFTER_FILE=/var/log/app/*.log",
            "--env",
            "DRIFTER_FILE_POLL_INTERVAL=50ms",
            "--env",
            "DRIFTER_METRICS_LISTEN=127.0.0.1:0",
            IMAGE,
        ],
        LIMIT,
    )
    .await;
    until_received(&server, 500, &name).await;

    // Rotation by rename, while the container runs.
    std::fs::rename(&log, logs.join("app.log.1")).expect("rename");
    append(&log, 500, 1000);
    until_received(&server, 1000, &name).await;

    // Killed mid-stream, and started again on the same spool.
    append(&log, 1000, 2000);
    until_received(&server, 1200, &name).await;
    podman_ok(&["kill", "--signal", "KILL", &name], LIMIT).await;
    podman_ok(&["wait", &name], LIMIT).await;
    podman_ok(&["start", &name], LIMIT).await;
    until_received(&server, 2000, &name).await;

    // copytruncate: copy, then truncate in place (nothing written in between here).
    std::fs::copy(&log, logs.join("app.log.2")).expect("copy");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .and_then(|file| file.set_len(0))
        .expect("truncate");
    // Written at once: seen by the shrink, or by the first bytes changing.
    append(&log, 2000, TOTAL);
    until_received(&server, TOTAL, &name).await;

    podman_ok(&["stop", "--time", "30", &name], LIMIT).await;
    let code = podman_ok(
        &["inspect", "--format", "{{.State.ExitCode}}", &name],
        LIMIT,
    )
    .await;
    let logs = run(podman(&["logs", &name]), LIMIT).await;
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    );
    assert_eq!(code.trim(), "0", "the stop's exit status; log:\n{logs}");
    for seen in ["rotated file read to its end", "truncated", "resuming"] {
        assert!(logs.contains(seen), "{seen:?} not in the log:\n{logs}");
    }
    drop(container);

    let got: BTreeSet<Vec<u8>> = support::received_once_each(&server).into_keys().collect();
    let want: BTreeSet<Vec<u8>> = (0..TOTAL)
        .map(|i| format!("pod {i:05}").into_bytes())
        .collect();
    assert_eq!(got.len(), want.len(), "messages received");
    assert_eq!(got, want);
    Ok(())
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    crate::trials![the_sidecar_image_survives_a_kill_and_rotations_and_stops_cleanly]
}
