//! Shared by the example programs: finding the built binary and reading process counters.
#![allow(dead_code)] // each example uses its own subset

use std::path::PathBuf;

/// The `drifter-rsyslog` binary of the same build profile as this example
/// (`target/<profile>/examples/NAME` → `target/<profile>/drifter-rsyslog`).
pub fn binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|examples| examples.parent())
        .ok_or_else(|| {
            anyhow::anyhow!("cannot locate the target directory from {}", exe.display())
        })?;
    let binary = profile_dir.join("drifter-rsyslog");
    if !binary.exists() {
        anyhow::bail!(
            "{} not found: build it first with `cargo build --release` (or without --release for a debug example)",
            binary.display()
        );
    }
    Ok(binary)
}

/// Peak resident set size of a running process, in KiB (VmHWM).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}
