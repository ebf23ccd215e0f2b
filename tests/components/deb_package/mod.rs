//! The Debian package, as an operator gets it: `examples/deb/build.sh` builds it (cargo-deb),
//! lintian checks it, dpkg installs it on this machine, then the installed files are used (the
//! binary, the manual, bash completion, the example rsyslog configurations under a real
//! rsyslogd, the systemd unit) and `dpkg --purge` must leave nothing behind but a spool that
//! still holds messages.
//!
//! It changes the machine (/usr/bin, /var/spool, dpkg's database) and needs root, so it runs
//! only where DRIFTER_DEB_INSTALL=1 says so (`.ci/run` does, as root); elsewhere it is ignored,
//! with that reason, even when DRIFTER_RSYSLOG_E2E requires components.

mod common;
mod installed;
mod package;
mod spool;

use std::path::Path;

use common::{PACKAGE, SPOOL, UNIT_STATE, on_path, run_ok};
use installed::{
    delivers_through_rsyslogd, installed_configs, rsyslogd_accepts, the_installed_files_work,
    the_unit_checks_its_settings,
};
use package::{build, install, lintian_finds_nothing, nothing_is_left, package_files, purge};
use spool::{PrivilegeDrop, leave_a_message_in_the_spool, segments, spool_is_owned_by, unit_state};

use crate::rsyslogd;
use crate::support::{self, Missing};

pub fn trials() -> Vec<libtest_mimic::Trial> {
    crate::trials![the_package_installs_works_and_purges_clean]
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
    unit_state(false);
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
    unit_state(true);
    let said = purge().await;
    drop(installed);
    for kept in [SPOOL, UNIT_STATE] {
        assert!(
            !segments(Path::new(kept)).is_empty(),
            "purge removed {kept}, which holds a message"
        );
        assert!(
            said.contains(&format!("{kept} still holds messages and is kept")),
            "purge did not say why it kept {kept}: {said}"
        );
        std::fs::remove_dir_all(kept).expect("remove the kept spool");
    }
    nothing_is_left(&files);
    step("purged twice");
    Ok(())
}
