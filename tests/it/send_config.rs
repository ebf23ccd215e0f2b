//! Bad usage and configuration: exit status 2 with one clear line, before any line is read.

use std::time::Duration;

use crate::support::{self, Reply, TestServer, run_with_input};

const LIMIT: Duration = Duration::from_secs(60);

async fn rejected(args: &[&str], expected: &str) {
    let run = run_with_input(
        args,
        b"a line that must not be sent\n",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(run.code(), Some(2), "{args:?}: stderr: {}", run.stderr);
    let first_line = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first_line.contains(expected),
        "{args:?}: expected `{expected}` in: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_configuration_exits_2_before_reading() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let empty_pem = dir.path().join("empty.pem");
    std::fs::write(&empty_pem, "no certificates here\n").expect("write");
    let empty_pem = empty_pem.to_str().expect("utf-8");

    rejected(
        &["send", "ftp://example.com/"],
        "the scheme must be http or https",
    )
    .await;
    rejected(&["send", "example.com"], "is not a valid URL").await;
    rejected(
        &["send", "http://example.com/?tag=x"],
        "must not have a query string",
    )
    .await;
    rejected(
        &["send", &url, "--ca-cert", "/nonexistent/ca.pem"],
        "cannot read CA certificate file /nonexistent/ca.pem",
    )
    .await;
    rejected(
        &["send", &url, "--ca-cert", empty_pem],
        "no certificate found",
    )
    .await;
    rejected(&["send", &url, "--accept", "5xx"], "not a status list").await;
    rejected(
        &["send", &url, "--proxy", "ftp://x"],
        "not a valid proxy URL",
    )
    .await;
    // Listened on by the test until it ends, so the program cannot bind it.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = holder.local_addr().expect("address").to_string();
    rejected(
        &["send", &url, "--metrics-listen", &taken],
        "cannot listen on --metrics-listen",
    )
    .await;
    rejected(&["send", &url, "--concurrency", "0"], "--concurrency").await;
    rejected(&["send", &url, "--drain-timeout", "soon"], "not a duration").await;
    rejected(
        &["send", &url, "--max-url-bytes", "2"],
        "leaves no room for the message",
    )
    .await;
    rejected(
        &["send", &url, "--dry-run", "--confirm"],
        "cannot be used with",
    )
    .await;
    rejected(&["send", &url, "--ids", "uuid"], "invalid value 'uuid'").await;
    rejected(
        &["send", &url, "--dead-letter", "/nonexistent/dir/dead.log"],
        "cannot open dead-letter file",
    )
    .await;
    rejected(
        &["send", &url, "--log-level", "loud=="],
        "invalid --log-level",
    )
    .await;
    rejected(&["send"], "required").await;
    assert!(
        server.seen().is_empty(),
        "nothing may be sent with a bad configuration"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn our_own_errors_are_one_line() {
    let run = run_with_input(
        &["send", "ftp://example.com/"],
        b"",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(run.stderr.lines().count(), 1, "stderr: {}", run.stderr);
    assert!(
        run.stderr.starts_with("drifter-rsyslog: error: "),
        "stderr: {}",
        run.stderr
    );
}

/// The README's `send` flag table and `send --help` cannot disagree: every flag of `send`
/// (and the global ones) has its row, and every row names a flag that exists.
#[test]
fn the_readme_flag_table_lists_exactly_the_flags_of_send() {
    use clap::CommandFactory;
    let mut command = drifter_rsyslog::cli::Cli::command();
    command.build();
    let send = command.find_subcommand("send").expect("a send command");
    let flags: std::collections::BTreeSet<String> = send
        .get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .filter_map(|arg| arg.get_long().map(|long| format!("--{long}")))
        .filter(|flag| flag != "--help")
        .collect();
    let readme = include_str!("../../README.md");
    let table = readme
        .split("## Flags of `send`")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the README's flag table");
    let documented: std::collections::BTreeSet<String> = table
        .lines()
        .filter(|line| line.starts_with("| `"))
        .flat_map(|line| {
            let first_cell = line.split(" | ").next().unwrap_or_default();
            first_cell
                .split('`')
                .filter(|part| part.starts_with("--"))
                .map(|part| part.split(' ').next().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let missing: Vec<_> = flags.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&flags).collect();
    assert!(
        missing.is_empty(),
        "flags of send without a README row: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "README rows for flags send does not have: {stale:?}"
    );
}

/// `completions` and `man` come from the same definitions as `--help`.
#[tokio::test(flavor = "multi_thread")]
async fn completions_load_in_bash_and_man_pages_name_every_command() {
    let script = support::run_with_input(&["completions", "bash"], b"", LIMIT).await;
    assert_eq!(script.code(), Some(0), "{}", script.stderr);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("drifter-rsyslog.bash");
    std::fs::write(&path, &script.stdout).expect("write");
    let loaded = support::clean_command("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p drifter-rsyslog",
            path.display()
        ))
        .output()
        .expect("run bash");
    assert!(
        loaded.status.success()
            && String::from_utf8_lossy(&loaded.stdout).contains("drifter-rsyslog"),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    let pages = dir.path().join("man");
    let pages_arg = pages.display().to_string();
    let man = support::run_with_input(&["man", "--dir", &pages_arg], b"", LIMIT).await;
    assert_eq!(man.code(), Some(0), "{}", man.stderr);
    for command in ["", "-send", "-decode", "-mock-elb", "-spool"] {
        let page = std::fs::read_to_string(pages.join(format!("drifter-rsyslog{command}.1")))
            .expect("a page per command");
        assert!(page.contains(".TH"), "a roff page");
    }
    let send_page = std::fs::read_to_string(pages.join("drifter-rsyslog-send.1")).expect("read");
    assert!(send_page.contains("spool\\-max\\-bytes") && send_page.contains("log\\-level"));
}

/// Issue 21 item 12: a `--max-line-bytes` that one spool record cannot hold is refused at
/// start, with nothing created and nothing read. It was accepted: a line above 1 GiB was
/// acknowledged and then dropped as damaged, and one above `--spool-max-bytes` waited for an
/// empty spool, which never comes during an outage.
#[tokio::test(flavor = "multi_thread")]
async fn a_line_bound_the_spool_cannot_hold_is_refused_at_start() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("spool");
    let spool = spool.to_str().expect("utf-8");
    for (spool_max, line_max) in [("64K", "1M"), ("8G", "2G")] {
        rejected(
            &[
                "send",
                "--confirm",
                "--spool",
                spool,
                "--spool-max-bytes",
                spool_max,
                "--max-line-bytes",
                line_max,
                &url,
            ],
            "--max-line-bytes",
        )
        .await;
        assert!(!dir.path().join("spool").exists(), "nothing created");
    }
    assert!(server.seen().is_empty(), "nothing sent");
}
