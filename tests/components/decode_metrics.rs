//! `decode --follow --metrics-listen`: its exposition passes `promtool check metrics`, and the
//! README's alert rules on it pass `promtool check rules`. (What the counters say after a loss
//! is checked in `tests/it/decode_gaps.rs`.)

use std::time::Duration;

use crate::metrics::promtool_accepts;
use crate::support::{self, Missing, Watched};

const LIMIT: Duration = Duration::from_secs(60);

/// The README's YAML block holding `needle`.
fn readme_yaml_with(needle: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split_once("```").map(|(yaml, _)| yaml))
        .find(|yaml| yaml.contains(needle))
        .unwrap_or_else(|| panic!("README has a YAML block with {needle}"))
        .to_string()
}

async fn decodes_metrics_and_the_readmes_alert_rules_pass_promtool() -> Result<(), Missing> {
    let Some(promtool) = support::on_path("promtool") else {
        return Err(Missing::because(
            "promtool is not on PATH",
            "apt-get install prometheus",
        ));
    };
    let rules = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(rules.path(), readme_yaml_with("name: drifter-decode")).expect("write rules");
    let checked = support::clean_command(&promtool)
        .args(["check", "rules"])
        .arg(rules.path())
        .output()
        .expect("run promtool");
    assert!(
        checked.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let logs = tempfile::tempdir().expect("temp dir");
    let dir = logs.path().display().to_string();
    let args = [
        "decode",
        "--follow",
        "--metrics-listen",
        "127.0.0.1:0",
        &dir,
    ];
    let watched = Watched::new(support::spawn(&args));
    let address = watched.metrics_address().await;
    let (status, text) = support::http_get(address, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    for name in [
        "drifter_decode_missing_messages_total",
        "drifter_decode_late_messages_total",
        "drifter_decode_lag_seconds",
    ] {
        assert!(text.contains(name), "{name} in {text}");
    }
    promtool_accepts(&text)?;
    assert_eq!(support::http_get(address, "/healthz").await.0, 200);
    support::signal(&watched.child, "TERM");
    let run = watched.wait(LIMIT).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    Ok(())
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    crate::trials![decodes_metrics_and_the_readmes_alert_rules_pass_promtool]
}
