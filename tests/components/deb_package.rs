//! The Debian package, as an operator gets it: `examples/deb/build.sh` builds it (cargo-deb),
//! lintian checks it, dpkg installs it on this machine, then the installed files are used (the
//! binary, the manual, bash completion, the example rsyslog configurations under a real
//! rsyslogd, the systemd unit) and `dpkg --purge` must leave nothing behind but a spool that
//! still holds messages.
//!
//! It changes the machine (/usr/bin, /var/spool, dpkg's database) and needs root, so it runs
//! only where DRIFTER_DEB_INSTALL=1 says so (`.ci/run` does, as root); elsewhere it is ignored,
//! with that reason, even when DRIFTER_RSYSLOG_E2E requires components.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::rsyslogd::{self, Rsyslogd};
use crate::support::{self, Missing, Reply, TestServer};

const PACKAGE: &str = "drifter-rsyslog";
const INSTALLED: &str = "/usr/bin/drifter-rsyslog";
const SPOOL: &str = "/var/spool/drifter-rsyslog";
const DOC: &str = "/usr/share/doc/drifter-rsyslog";
const UNIT: &str = "/lib/systemd/system/drifter-rsyslog@.service";
/// The placeholder URL of the example configurations.
const PLACEHOLDER_URL: &str = "http://my-elb-1234567890.eu-west-1.elb.amazonaws.com/";
/// A release build from scratch on a loaded two-core machine, and the packing.
const BUILD_LIMIT: Duration = Duration::from_secs(1800);
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

pub fn trials() -> Vec<libtest_mimic::Trial> {
    crate::trials![the_package_installs_works_and_purges_clean]
}

/// Runs `program` with a clean environment (plus `env`), stdin closed, within `limit`.
async fn run(program: &str, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut command = tokio::process::Command::from(support::clean_command(program));
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(limit, command.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// [`run`], which must succeed; its stdout.
async fn run_ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args, &[], COMMAND_LIMIT).await;
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// What this test needs, or why it does not run.
fn preconditions() -> Result<(), Missing> {
    if std::env::var("DRIFTER_DEB_INSTALL").as_deref() != Ok("1") {
        // Not a missing component: an opt-in, never required by DRIFTER_RSYSLOG_E2E alone.
        return Err(Missing(
            "DRIFTER_DEB_INSTALL is not 1: this test installs and purges the drifter-rsyslog \
             package on this machine (as root)"
                .into(),
        ));
    }
    if support::effective_uid() != 0 {
        return Err(Missing::because(
            "DRIFTER_DEB_INSTALL=1 but not root",
            "run the test as root: it installs a package with dpkg",
        ));
    }
    for (program, install) in [
        ("cargo-deb", "cargo install cargo-deb --locked"),
        ("lintian", "apt-get install lintian"),
        ("dpkg", "Debian's dpkg"),
        ("dpkg-reconfigure", "apt-get install debconf"),
        ("man", "apt-get install man-db"),
        ("systemd-analyze", "apt-get install systemd"),
        ("bash", "apt-get install bash"),
    ] {
        if !on_path(program) {
            return Err(Missing::because(
                &format!("{program} is not on PATH"),
                install,
            ));
        }
    }
    rsyslogd::binary()
        .map_err(|_| Missing::because("rsyslogd is not on PATH", "apt-get install rsyslog"))?;
    Ok(())
}

/// Purges the package when dropped, so that a failed check does not leave it installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = support::clean_command("dpkg")
            .args(["--purge", PACKAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

async fn the_package_installs_works_and_purges_clean() -> Result<(), Missing> {
    preconditions()?;
    // Each step's time on stderr, for CI's budget.
    let started = std::time::Instant::now();
    let step = |what: &str| eprintln!("deb_package: {what} at {:.1?}", started.elapsed());
    let deb = build().await;
    step("built");
    lintian_finds_nothing(&deb).await;
    step("lintian");

    let installed = install(&deb).await;
    let files = package_files().await;
    the_installed_files_work(&files).await;
    the_unit_checks_its_settings().await;
    step("installed and checked");
    for config in installed_configs() {
        rsyslogd_accepts(&config).await;
        delivers_through_rsyslogd(&config).await;
        step(&format!("{} through rsyslogd", config.display()));
    }
    let said = purge().await;
    assert!(!said.contains("still holds messages"), "{said}");
    drop(installed);
    nothing_is_left(&files);

    // Again, where rsyslog drops its privileges (as Ubuntu's does, to syslog): the spool is
    // that user's, and root's again once the setting is gone and the package reconfigured.
    let drop_setting = PrivilegeDrop::to("nobody");
    let installed = install(&deb).await;
    spool_is_owned_by("nobody");
    drop(drop_setting);
    run_ok("dpkg-reconfigure", &[PACKAGE]).await;
    spool_is_owned_by("root");
    // And with a message the load balancer never took: purge keeps the spool holding it.
    leave_a_message_in_the_spool().await;
    let said = purge().await;
    drop(installed);
    let kept = segments(Path::new(SPOOL));
    assert!(!kept.is_empty(), "purge removed a spool holding a message");
    assert!(
        said.contains(&format!("{SPOOL} still holds messages and is kept")),
        "purge did not say why it kept the spool: {said}"
    );
    std::fs::remove_dir_all(SPOOL).expect("remove the kept spool");
    nothing_is_left(&files);
    step("purged twice");
    Ok(())
}

/// `examples/deb/build.sh`, the README's packaging command; the .deb's path.
async fn build() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deb/build.sh");
    // Where cargo, rustup and the build's output live, if set, reach the script's cargo.
    let settings: Vec<(&str, String)> = ["CARGO_HOME", "RUSTUP_HOME", "CARGO_TARGET_DIR"]
        .into_iter()
        .filter_map(|name| Some((name, std::env::var(name).ok()?)))
        .collect();
    let env: Vec<(&str, &str)> = settings.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let output = run(script.to_str().expect("UTF-8 path"), &[], &env, BUILD_LIMIT).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "examples/deb/build.sh: {}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // cargo deb prints the package's path last.
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        deb.extension().is_some_and(|e| e == "deb") && deb.is_file(),
        "no .deb: {stdout}"
    );
    deb
}

/// No error and no warning: the ones that stay are overridden, with the reason, in
/// examples/deb/lintian-overrides.
async fn lintian_finds_nothing(deb: &Path) {
    let output = run(
        "lintian",
        &[deb.to_str().expect("UTF-8 path")],
        &[],
        COMMAND_LIMIT,
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let findings: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("E:") || line.starts_with("W:"))
        .collect();
    assert!(
        output.status.success() && findings.is_empty(),
        "lintian {}: {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn install(deb: &Path) -> Installed {
    run_ok("dpkg", &["-i", deb.to_str().expect("UTF-8 path")]).await;
    Installed
}

/// `dpkg --purge`; what it wrote on stderr.
async fn purge() -> String {
    let output = run("dpkg", &["--purge", PACKAGE], &[], COMMAND_LIMIT).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "dpkg --purge: {stderr}");
    let status = run(
        "dpkg-query",
        &["-W", "-f=${Status}", PACKAGE],
        &[],
        COMMAND_LIMIT,
    )
    .await;
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.is_empty() || status.contains("not-installed"),
        "after purge: {status}"
    );
    stderr
}

/// Every path dpkg lists for the package, and what the maintainer scripts make.
async fn package_files() -> BTreeSet<PathBuf> {
    let mut files: BTreeSet<PathBuf> = run_ok("dpkg", &["-L", PACKAGE])
        .await
        .lines()
        .map(PathBuf::from)
        // Shared folders such as /usr/share/man stay, of course.
        .filter(|path| path.is_file() || path.to_string_lossy().contains(PACKAGE))
        .collect();
    files.insert(PathBuf::from(SPOOL));
    files.insert(PathBuf::from("/etc/drifter-rsyslog"));
    eprintln!("installed: {files:#?}");
    for expected in [INSTALLED, UNIT, SPOOL, "/etc/drifter-rsyslog"] {
        assert!(Path::new(expected).exists(), "{expected} is not installed");
    }
    files
}

fn nothing_is_left(files: &BTreeSet<PathBuf>) {
    let left: Vec<&PathBuf> = files
        .iter()
        .filter(|path| path.exists() || path.is_symlink())
        .collect();
    assert!(left.is_empty(), "left after purge: {left:?}");
}

/// The binary, the manual, the completions, the unit.
async fn the_installed_files_work(files: &BTreeSet<PathBuf>) {
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
async fn the_unit_checks_its_settings() {
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

/// An rsyslog setting that drops privileges to a user, in /etc/rsyslog.d while it lives.
struct PrivilegeDrop(PathBuf);

impl PrivilegeDrop {
    fn to(user: &str) -> Self {
        let path = PathBuf::from("/etc/rsyslog.d/zz-drifter-deb-test.conf");
        std::fs::write(&path, format!("$PrivDropToUser {user}\n")).expect("write");
        PrivilegeDrop(path)
    }
}

impl Drop for PrivilegeDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The spool directory belongs to `user` and its group, and to no one else.
fn spool_is_owned_by(user: &str) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let spool = std::fs::metadata(SPOOL).expect("the spool directory");
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let ids: Vec<u32> = passwd
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{user}:")))
        .map(|rest| {
            rest.split(':')
                .skip(1)
                .take(2)
                .flat_map(str::parse)
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        ids,
        [spool.uid(), spool.gid()],
        "{SPOOL}'s owner, for {user}"
    );
    assert_eq!(spool.permissions().mode() & 0o777, 0o700);
}

/// The example configurations the package installs, none of them active.
fn installed_configs() -> Vec<PathBuf> {
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

async fn rsyslogd_accepts(config: &Path) {
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
async fn delivers_through_rsyslogd(config: &Path) {
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

/// A message sent while the load balancer refuses everything, left in the package's spool.
async fn leave_a_message_in_the_spool() {
    let server = TestServer::start(|_, _| Reply::Status(502)).await;
    let mut command = tokio::process::Command::from(support::clean_command(INSTALLED));
    command
        .args([
            "send",
            &server.url(),
            "--spool",
            SPOOL,
            "--drain-timeout",
            "1s",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("start the installed binary");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"kept by purge\n").await.expect("write");
    }
    let output = tokio::time::timeout(COMMAND_LIMIT, child.wait_with_output())
        .await
        .expect("send exits after its drain timeout")
        .expect("wait for send");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.contains("1 left in the spool"),
        "{}: {stderr}",
        output.status
    );
    assert!(
        !segments(Path::new(SPOOL)).is_empty(),
        "no segment in {SPOOL}"
    );
}

/// The spool segment files under `dir`.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(spools) = std::fs::read_dir(dir) else {
        return found;
    };
    for spool in spools.flatten() {
        let Ok(files) = std::fs::read_dir(spool.path()) else {
            continue;
        };
        found.extend(
            files
                .flatten()
                .map(|file| file.path())
                .filter(|path| path.to_string_lossy().ends_with(".log")),
        );
    }
    found
}
