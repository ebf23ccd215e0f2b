//! The read side at scale: the DuckDB text of README's "Querying at scale with Athena" section
//! (`examples/aws/duckdb.sql`, the embedded stand-in for the Athena text beside it) gives the
//! same messages as `decode`, byte for byte and in the same order, over `mock-elb` output
//! with fragments, duplicates, bytes that are not UTF-8, `+ % & = " \`, a forged request,
//! another client's and a scanner's.

use std::path::Path;
use std::time::Duration;

use drifter_rsyslog::access_log::Format;

use crate::decode_s3::{DRIFTER_AGENT, corpus_tree, entry};
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

async fn the_duckdb_query_gives_decodes_messages_byte_for_byte() -> Result<(), Missing> {
    // moto's venv holds duckdb too; Moto is only used to find it.
    let python = Moto::python_with("duckdb")?;
    for (name, format) in [("classic", Format::Classic), ("alb", Format::Alb)] {
        let tree = corpus_tree(name).await;
        add_strangers(tree.path(), format);
        let dir = tree.path().display().to_string();
        let decoded = support::run_with_input(&["decode", &dir], b"", LIMIT).await;
        assert_eq!(decoded.code(), Some(0), "{name}: {}", decoded.stderr);
        decoded.assert_logged("skipped 2 from other clients, 2 without a message, 1 malformed");
        assert!(
            support::logged_count(&decoded, "duplicates") > Some(0),
            "{name}"
        );
        for expected in [&b"not utf-8: \xff\xfe "[..], b"raw \"quotes\" and \\back\n"] {
            assert!(
                decoded
                    .stdout
                    .windows(expected.len())
                    .any(|w| w == expected),
                "{name}: {} is in it",
                String::from_utf8_lossy(expected)
            );
        }
        let glob = format!("{dir}/AWSLogs/**/*.log*");
        let queried = support::python_script(&python, "duckdb_decode.py", &[DUCKDB_SQL, &glob]);
        assert_eq!(
            String::from_utf8_lossy(&queried),
            String::from_utf8_lossy(&decoded.stdout),
            "{name}"
        );
        assert_eq!(queried, decoded.stdout, "{name}: byte for byte");
    }
    Ok(())
}

/// Athena cannot be reached from here: the text is parsed as Athena SQL (sqlglot) instead.
async fn the_athena_text_parses_as_athena_sql() -> Result<(), Missing> {
    let python = Moto::python_with("sqlglot")?;
    support::python_script(&python, "athena_parse.py", &[ATHENA_SQL]);
    Ok(())
}

async fn the_readme_shows_both_query_texts_as_they_are_in_the_repository() -> Result<(), Missing> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    for path in [DUCKDB_SQL, ATHENA_SQL] {
        let text = std::fs::read_to_string(path).expect("query text");
        assert!(
            readme.contains(text.trim_end()),
            "README.md must hold {path} verbatim"
        );
    }
    Ok(())
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    crate::trials![
        the_duckdb_query_gives_decodes_messages_byte_for_byte,
        the_athena_text_parses_as_athena_sql,
        the_readme_shows_both_query_texts_as_they_are_in_the_repository,
    ]
}
