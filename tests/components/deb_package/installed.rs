//! Using what the package installed: the binary, the manual, bash completion, the unit, and
//! each example rsyslog configuration under a real rsyslogd.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::common::{COMMAND_LIMIT, DOC, INSTALLED, PACKAGE, PLACEHOLDER_URL, UNIT, run, run_ok};
use super::spool::spool_is_owned_by;
use crate::rsyslogd::{self, Rsyslogd};
use crate::support::{self, Reply, TestServer};

/// The binary, the manual, the completions, the unit.
pub(super) async fn the_installed_files_work(files: &BTreeSet<PathBuf>) {
    let version = run_ok(INSTALLED, &["--version"]).await;
    assert_eq!(
        version.trim(),
        format!("drifter-rsyslog {}", env!("CARGO_PKG_VERSION"))
    );
    for page in [
        "drifter-rsyslog",
        "drifter-rsyslog-send",
        "drifter-rsyslog-decode",
    ] {
        let found = run_ok("man", &["-w", page]).await;
        assert!(found.trim().ends_with(".1.gz"), "man -w {page}: {found}");
    }
    // bash: the script loads and completes the commands.
    let completed = run_ok(
        "bash",
        &[
            "-c",
            "source /usr/share/bash-completion/completions/drifter-rsyslog \
             && COMP_WORDS=(drifter-rsyslog se) && COMP_CWORD=1 \
             && _drifter__rsyslog drifter-rsyslog se drifter-rsyslog \
             && echo \"${COMPREPLY[@]}\"",
        ],
    )
    .await;
    assert_eq!(completed.trim(), "send", "bash completion");
    for script in [
        "/usr/share/zsh/vendor-completions/_drifter-rsyslog",
        "/usr/share/fish/vendor_completions.d/drifter-rsyslog.fish",
    ] {
        assert!(
            files.contains(Path::new(script)),
            "{script} is not installed"
        );
    }
    let verified = run("systemd-analyze", &["verify", UNIT], &[], COMMAND_LIMIT).await;
    let complaints = String::from_utf8_lossy(&verified.stderr);
    assert!(
        verified.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
    // Installed, not enabled: no instance is wanted by any target.
    let wants = Path::new("/etc/systemd/system/multi-user.target.wants");
    let enabled = std::fs::read_dir(wants)
        .map(|entries| {
            entries
                .flatten()
                .any(|entry| entry.file_name().to_string_lossy().starts_with(PACKAGE))
        })
        .unwrap_or(false);
    assert!(!enabled, "an instance of the unit is enabled");
    // Debian's rsyslog drops no privileges: the spool is root's, and only root's.
    spool_is_owned_by("root");
}

/// The unit's ExecStartPre, run as systemd would with the example settings file: good
/// settings pass, a bad URL stops the start with exit status 2 (which is never restarted).
pub(super) async fn the_unit_checks_its_settings() {
    let unit = std::fs::read_to_string(UNIT).expect("read the unit");
    let check: Vec<&str> = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStartPre="))
        .expect("an ExecStartPre")
        .split_whitespace()
        .collect();
    assert!(unit.contains("RestartPreventExitStatus=2"), "{unit}");
    let example = std::fs::read_to_string(Path::new(DOC).join("examples/drifter-rsyslog.env"))
        .expect("read the example settings");
    let settings: Vec<(&str, &str)> = example
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .collect();
    assert!(
        settings.contains(&("DRIFTER_URL", PLACEHOLDER_URL)),
        "{example}"
    );
    let good = run(check[0], &check[1..], &settings, COMMAND_LIMIT).await;
    assert!(
        good.status.success(),
        "{check:?} with the example settings: {}",
        String::from_utf8_lossy(&good.stderr)
    );
    let mut bad = settings.clone();
    bad.push(("DRIFTER_URL", "http://my-elb.example/?query"));
    let bad = run(check[0], &check[1..], &bad, COMMAND_LIMIT).await;
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{check:?}: {stderr}");
    assert!(stderr.contains("query string"), "{stderr}");
}

/// The example configurations the package installs, none of them active.
pub(super) fn installed_configs() -> Vec<PathBuf> {
    let mut configs: Vec<PathBuf> = std::fs::read_dir(Path::new(DOC).join("examples/rsyslog.d"))
        .expect("installed examples")
        .flatten()
        .map(|entry| entry.path())
        .collect();
    configs.sort();
    assert_eq!(configs.len(), 3, "{configs:?}");
    for config in &configs {
        let active = Path::new("/etc/rsyslog.d").join(config.file_name().expect("a name"));
        assert!(!active.exists(), "{} is active", active.display());
    }
    configs
}

/// An installed example with the URL set, and the program's log in `dir`; the binary and the
/// spool stay the installed ones.
fn with_url(config: &Path, url: &str, dir: &Path) -> String {
    let text = std::fs::read_to_string(config).expect("read an installed example");
    assert!(text.contains(INSTALLED), "{}", config.display());
    text.replace(PLACEHOLDER_URL, url).replace(
        "/var/log/drifter-rsyslog.log",
        &dir.join("drifter.log").display().to_string(),
    )
}

pub(super) async fn rsyslogd_accepts(config: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("rsyslog.conf");
    std::fs::write(&path, with_url(config, "http://127.0.0.1:9/", dir.path())).expect("write");
    let rsyslogd = rsyslogd::binary().expect("rsyslogd");
    let output = run(
        rsyslogd.to_str().expect("UTF-8 path"),
        &["-N1", "-f", path.to_str().expect("UTF-8 path")],
        &[],
        COMMAND_LIMIT,
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && !stderr.contains("error"),
        "rsyslogd -N1 {}: {stderr}",
        config.display()
    );
}

/// A real rsyslogd with the installed example delivers numbered messages through the
/// installed binary, spooling in the package's spool directory.
pub(super) async fn delivers_through_rsyslogd(config: &Path) {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let action = with_url(config, &server.url(), dir.path());
    let log = dir.path().join("drifter.log");
    let rsyslogd = Rsyslogd::start(&action, dir).await.expect("start rsyslogd");
    const COUNT: usize = 200;
    let messages: Vec<String> = (0..COUNT).map(|i| format!("drifter-deb {i:05}")).collect();
    let frames: Vec<u8> = messages
        .iter()
        .flat_map(|m| format!("<13>Dec  3 11:00:00 debhost debtag: {m}\n").into_bytes())
        .collect();
    rsyslogd.send(&frames).await.expect("send to rsyslogd");
    let received = || -> BTreeSet<String> {
        server
            .answered(503)
            .iter()
            .filter_map(|target| {
                let line = String::from_utf8_lossy(&support::decode(target)).into_owned();
                messages.iter().find(|m| line.contains(m.as_str())).cloned()
            })
            .collect()
    };
    let all = support::eventually(Duration::from_secs(60), || received().len() == COUNT).await;
    let program_log = std::fs::read_to_string(&log).unwrap_or_default();
    rsyslogd.stop().await.expect("stop rsyslogd");
    assert!(
        all,
        "{}: {} of {COUNT} arrived; program log: {program_log}",
        config.display(),
        received().len()
    );
}
