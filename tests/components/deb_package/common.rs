//! What the package test's steps share: the package's paths, and running a command with a
//! clean environment and a time limit.

use std::process::{Output, Stdio};
use std::time::Duration;

use crate::support;

pub(super) const PACKAGE: &str = "drifter-rsyslog";
pub(super) const INSTALLED: &str = "/usr/bin/drifter-rsyslog";
pub(super) const SPOOL: &str = "/var/spool/drifter-rsyslog";
pub(super) const DOC: &str = "/usr/share/doc/drifter-rsyslog";
pub(super) const UNIT: &str = "/lib/systemd/system/drifter-rsyslog@.service";
/// Where the unit's instances spool (StateDirectory=drifter-rsyslog/NAME).
pub(super) const UNIT_STATE: &str = "/var/lib/drifter-rsyslog";
/// The placeholder URL of the example configurations.
pub(super) const PLACEHOLDER_URL: &str = "http://my-elb-1234567890.eu-west-1.elb.amazonaws.com/";
/// A release build from scratch on a loaded two-core machine, and the packing.
pub(super) const BUILD_LIMIT: Duration = Duration::from_secs(1800);
pub(super) const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// Runs `program` with a clean environment (plus `env`), stdin closed, within `limit`.
pub(super) async fn run(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> Output {
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
pub(super) async fn run_ok(program: &str, args: &[&str]) -> String {
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

pub(super) fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}
