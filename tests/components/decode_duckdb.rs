//! The read side at scale: the Athena text of README's "Querying at scale with Athena"
//! (`examples/aws/athena.sql`), run through its DuckDB translation by sqlglot
//! (`examples/aws/duckdb.sql`, generated, checked to be sqlglot's output), gives `decode`'s
//! messages row for row and in the same order (each sender's by sequence number, as decode
//! writes them, then the rest by time), over `mock-elb` output with fragments, duplicates,
//! bytes that are not UTF-8, `+ % & = " \`, a forged request, another client's and a
//! scanner's.

use std::path::Path;
use std::time::Duration;

use drifter_rsyslog::access_log::Format;

use crate::decode_s3::{DRIFTER_AGENT, corpus_tree_sent_with, entry};
use crate::support::{self, Missing, Moto};

const LIMIT: Duration = Duration::from_secs(60);
const DUCKDB_SQL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/aws/duckdb.sql");
const ATHENA_SQL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/aws/athena.sql");

/// Requests decode must not print, or (the forged one, without --verify-key) must print, in a
/// file of their own beside the stand-in's.
fn add_strangers(tree: &Path, format: Format) {
    let files = support::log_files(tree);
    let dir = files[0].parent().expect("a day directory");
    let mut lines = Vec::new();
    for (agent, target) in [
        ("curl/8.5.0", "/?another%20client"),
        ("Mozilla/5.0", "/wp-login.php?action=register"),
        (
            DRIFTER_AGENT,
            "/?forged%20line&m=00000000000000000000000000000000",
        ),
        (DRIFTER_AGENT, "/?bad%escape"),
        // Raw quotes and a backslash, which no sender of drifter's writes: ALB logs them as
        // \x22 and \x5c, Classic as they are. Both readers must agree on them too.
        (DRIFTER_AGENT, "/?raw%20\"quotes\"%20and%20\\back"),
        (DRIFTER_AGENT, "/"),
        // Extensions without a message: counted like "/" by both (issue 28, finding 3).
        (DRIFTER_AGENT, "/?&i=empty1"),
    ] {
        entry(
            format,
            time::OffsetDateTime::now_utc(),
            agent,
            target,
            &mut lines,
        );
    }
    std::fs::write(dir.join("zz_strangers.log"), lines).expect("write");
}

/// The view groups by sender (messages without one last), where decode interleaves senders by
/// time: decode's rows are grouped so too, each sender's kept in decode's own order, which must
/// be the view's (by sequence number). The rest are ordered as the view orders them, by request
/// time then message (decode breaks ties of time by arrival).
fn grouped_as_the_view(row: &serde_json::Value) -> (bool, String, String, String) {
    let text = |key: &str| row[key].as_str().unwrap_or_default().to_string();
    match row.get("sender") {
        Some(_) => (false, text("sender"), String::new(), String::new()),
        None => (true, String::new(), text("time"), text("message")),
    }
}

/// One JSON object a line, with only the keys the view gives.
fn rows(json_lines: &[u8]) -> Vec<serde_json::Value> {
    json_lines
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut row: serde_json::Value = serde_json::from_slice(line).expect("a JSON line");
            if let Some(object) = row.as_object_mut() {
                object.retain(|key, _| ["sender", "sequence", "time", "message"].contains(&&**key));
            }
            row
        })
        .collect()
}

async fn the_athena_view_translated_to_duckdb_gives_decodes_rows_in_order() -> Result<(), Missing> {
    // moto's venv holds duckdb and sqlglot too; Moto is only used to find it.
    let python = Moto::python_with("duckdb, sqlglot")?;
    support::python_script(&python, "athena_to_duckdb.py", &["--check"]);
    for (name, format) in [("classic", Format::Classic), ("alb", Format::Alb)] {
        // Two senders (one per batch), each numbering its messages.
        let tree = corpus_tree_sent_with(name, &["--sequence"]).await;
        add_strangers(tree.path(), format);
        let dir = tree.path().display().to_string();
        let decoded = support::run_with_input(&["decode", "--json", &dir], b"", LIMIT).await;
        assert_eq!(decoded.code(), Some(0), "{name}: {}", decoded.stderr);
        decoded.assert_logged("skipped 2 from other clients, 2 without a message, 1 malformed");
        assert!(
            support::logged_count(&decoded, "duplicates") > Some(0),
            "{name}"
        );
        // decode writes bytes; Athena has text only, and the JSON lines hold what Trino's
        // url_decode makes of bytes that are not UTF-8: one U+FFFD per ill-formed sequence.
        let mut expected = rows(&decoded.stdout);
        for message in [
            "not utf-8: \u{fffd}\u{fffd} \u{fffd}(",
            "raw \"quotes\" and \\back",
        ] {
            assert!(
                expected.iter().any(|row| row["message"] == message),
                "{name}: {message} is in it"
            );
        }
        let senders: std::collections::BTreeSet<_> = expected
            .iter()
            .filter_map(|row| row["sender"].as_str())
            .collect();
        assert_eq!(senders.len(), 2, "{name}: one sender per batch");
        // A stable sort: within a sender, decode's order stays as it wrote it.
        expected.sort_by_cached_key(grouped_as_the_view);
        let glob = format!("{dir}/AWSLogs/**/*.log*");
        let queried = rows(&support::python_script(
            &python,
            "duckdb_decode.py",
            &[DUCKDB_SQL, &glob],
        ));
        assert_eq!(queried.len(), expected.len(), "{name}: {queried:#?}");
        for (row, (got, want)) in queried.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "{name}: row {row}");
        }
    }
    Ok(())
}

/// Athena cannot be reached from here: the whole text is parsed as Athena SQL (sqlglot),
/// the --sign-key line too, which has no DuckDB translation (DuckDB has no HMAC).
async fn the_athena_text_parses_as_athena_sql() -> Result<(), Missing> {
    let python = Moto::python_with("sqlglot")?;
    support::python_script(&python, "athena_parse.py", &[ATHENA_SQL]);
    Ok(())
}

async fn the_readme_shows_the_athena_text_as_it_is_in_the_repository() -> Result<(), Missing> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let text = std::fs::read_to_string(ATHENA_SQL).expect("query text");
    assert!(
        readme.contains(text.trim_end()),
        "README.md must hold {ATHENA_SQL} verbatim"
    );
    Ok(())
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    crate::trials![
        the_athena_view_translated_to_duckdb_gives_decodes_rows_in_order,
        the_athena_text_parses_as_athena_sql,
        the_readme_shows_the_athena_text_as_it_is_in_the_repository,
    ]
}
