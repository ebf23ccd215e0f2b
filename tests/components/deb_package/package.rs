//! The package itself: built by the README's command, checked by lintian, installed and purged
//! with dpkg, and what it puts on the machine.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::common::{
    BUILD_LIMIT, COMMAND_LIMIT, INSTALLED, PACKAGE, SPOOL, UNIT, UNIT_STATE, run, run_ok,
};
use crate::support;

/// Purges the package when dropped, so that a failed check does not leave it installed.
pub(super) struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = support::clean_command("dpkg")
            .args(["--purge", PACKAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `examples/deb/build.sh`, the README's packaging command; the .deb's path.
pub(super) async fn build() -> PathBuf {
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
pub(super) async fn lintian_finds_nothing(deb: &Path) {
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

pub(super) async fn install(deb: &Path) -> Installed {
    run_ok("dpkg", &["-i", deb.to_str().expect("UTF-8 path")]).await;
    Installed
}

/// `dpkg --purge`; what it wrote on stderr.
pub(super) async fn purge() -> String {
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
pub(super) async fn package_files() -> BTreeSet<PathBuf> {
    let mut files: BTreeSet<PathBuf> = run_ok("dpkg", &["-L", PACKAGE])
        .await
        .lines()
        .map(PathBuf::from)
        // Shared folders such as /usr/share/man stay, of course.
        .filter(|path| path.is_file() || path.to_string_lossy().contains(PACKAGE))
        .collect();
    files.insert(PathBuf::from(SPOOL));
    files.insert(PathBuf::from(UNIT_STATE));
    files.insert(PathBuf::from("/etc/drifter-rsyslog"));
    eprintln!("installed: {files:#?}");
    for expected in [INSTALLED, UNIT, SPOOL, "/etc/drifter-rsyslog"] {
        assert!(Path::new(expected).exists(), "{expected} is not installed");
    }
    files
}

pub(super) fn nothing_is_left(files: &BTreeSet<PathBuf>) {
    let left: Vec<&PathBuf> = files
        .iter()
        .filter(|path| path.exists() || path.is_symlink())
        .collect();
    assert!(left.is_empty(), "left after purge: {left:?}");
}
