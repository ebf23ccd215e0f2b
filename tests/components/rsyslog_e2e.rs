//! A real rsyslogd feeding the binary through the shipped rsyslog.d configs. Ignored, with
//! the reason, where rsyslogd is not installed (a failure with DRIFTER_RSYSLOG_E2E set).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::rsyslogd::{self, Rsyslogd};
use crate::support;
use crate::support::{Missing, Outage, Reply, TestServer};

/// Long enough for rsyslogd to resume an action whose program was killed: the shipped
/// configs' resumeInterval is 10 s, and rsyslogd lengthens it after repeated retries.
const RESUMED: Duration = Duration::from_secs(180);

/// The installed rsyslogd.
fn rsyslogd() -> Result<PathBuf, Missing> {
    rsyslogd::binary().map_err(|_| {
        Missing::because(
            "rsyslogd is not on PATH",
            "apt-get install rsyslog, with /usr/sbin on PATH",
        )
    })
}

fn shipped_configs() -> Vec<PathBuf> {
    let mut configs: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("rsyslog.d"))
            .expect("rsyslog.d exists")
            .map(|entry| entry.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
    configs.sort();
    configs
}

async fn every_shipped_config_passes_rsyslogd_check() -> Result<(), Missing> {
    rsyslogd()?;
    let configs = shipped_configs();
    assert!(!configs.is_empty());
    for config in configs {
        let output = support::clean_command(rsyslogd()?)
            .arg("-N1")
            .arg("-f")
            .arg(&config)
            .output()
            .expect("run rsyslogd -N1");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{}: {stderr}", config.display());
        assert!(!stderr.contains("error"), "{}: {stderr}", config.display());
    }
    Ok(())
}

/// Syslog frames for rsyslogd's TCP input, one line each.
fn syslog_frames(messages: &[String]) -> Vec<u8> {
    messages
        .iter()
        .flat_map(|message| format!("<13>Nov 23 11:00:00 e2ehost e2etag: {message}\n").into_bytes())
        .collect()
}

/// The shipped config with the placeholders replaced by this test's binary, server and files.
fn adapt(config: &Path, server_url: &str, dir: &Path) -> String {
    std::fs::read_to_string(config)
        .expect("read shipped config")
        .replace("/usr/local/bin/drifter-rsyslog", support::BIN)
        .replace(
            "http://my-elb-1234567890.eu-west-1.elb.amazonaws.com/",
            server_url,
        )
        .replace(
            "/var/spool/drifter-rsyslog.dead",
            &dir.join("dead.log").display().to_string(),
        )
        .replace(
            "/var/spool/drifter-rsyslog",
            &dir.join("spool").display().to_string(),
        )
        .replace(
            "/var/log/drifter-rsyslog.log",
            &dir.join("drifter.log").display().to_string(),
        )
}

/// The five-digit ids of the test messages found in what the server accepted, with counts.
fn ids_received(server: &TestServer) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for target in server.answered(503) {
        let line = String::from_utf8_lossy(&support::decode(&target)).into_owned();
        if let Some(at) = line.find("drifter-e2e ") {
            let id: String = line[at + 12..].chars().take(5).collect();
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    ids
}

/// For each test message (by its five-digit number), the message ids (`&i=`) its copies
/// arrived with.
fn message_ids_received(server: &TestServer) -> BTreeMap<String, BTreeSet<String>> {
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for target in server.answered(503) {
        let line = String::from_utf8_lossy(&support::decode(&target)).into_owned();
        let target = String::from_utf8_lossy(&target).into_owned();
        let id = target
            .split('&')
            .find_map(|field| field.strip_prefix("i="))
            .unwrap_or_default()
            .to_string();
        if let Some(at) = line.find("drifter-e2e ") {
            let number: String = line[at + 12..].chars().take(5).collect();
            found.entry(number).or_default().insert(id);
        }
    }
    found
}

/// The shipped confirming configs give every message rsyslog's uuid as its id: one id per
/// message, however often it was sent, and never the same for two messages.
fn assert_one_stable_id_per_message(config: &str, server: &TestServer) {
    let ids = message_ids_received(server);
    let mut seen = BTreeSet::new();
    for (number, message_ids) in &ids {
        assert_eq!(
            message_ids.len(),
            1,
            "{config}: message {number} arrived with ids {message_ids:?}"
        );
        for id in message_ids {
            assert!(
                id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{config}: message {number}: id `{id}` is not rsyslog's uuid"
            );
            assert!(seen.insert(id.clone()), "{config}: id {id} used twice");
        }
    }
    eprintln!(
        "{config}: {} messages, each with one id (e.g. {:?})",
        ids.len(),
        seen.first()
    );
}

/// The pids of the drifter-rsyslog programs that rsyslogd `parent` started.
fn programs_of(parent: u32) -> Vec<u32> {
    rsyslogd::children_of(parent)
        .into_iter()
        .filter(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            exe.as_deref() == Some(Path::new(support::BIN))
        })
        .collect()
}

#[derive(Clone)]
enum Fault {
    None,
    /// SIGKILL the program once this many messages have arrived, then open `killed` (which
    /// the server holds requests on until then).
    KillProgramAfter(usize, Arc<AtomicBool>),
    /// The load balancer is down until this many requests were refused (probes, spaced by
    /// the program's backoff), then `Outage` ends it.
    DownUntilRefused(usize, Outage),
}

/// Feeds `count` numbered messages through a real rsyslogd and the shipped `config` into the
/// binary, and checks every one reached `server` (duplicates allowed only if `at_least_once`).
async fn deliver_through(config: &str, server: &TestServer, count: usize, at_least_once: bool) {
    deliver_with_fault(config, server, count, at_least_once, Fault::None).await;
}

async fn deliver_with_fault(
    config: &str,
    server: &TestServer,
    count: usize,
    at_least_once: bool,
    fault: Fault,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config_dir = dir.path().to_path_buf();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("rsyslog.d")
        .join(config);
    let action = adapt(&shipped, &server.url(), &config_dir);
    let rsyslogd = Rsyslogd::start(&action, dir).await.expect("start rsyslogd");

    let messages: Vec<String> = (0..count)
        .map(|i| format!("drifter-e2e {i:05} & é \"quoted\""))
        .collect();
    let frames = syslog_frames(&messages);
    let sending = async { rsyslogd.send(&frames).await.expect("send to rsyslogd") };
    if let Fault::KillProgramAfter(arrived, killed_flag) = fault {
        let rsyslogd_pid = rsyslogd.child.id().expect("rsyslogd is running");
        let killing = async {
            let reached = support::eventually(Duration::from_secs(60), || {
                ids_received(server).len() >= arrived
            })
            .await;
            assert!(reached, "{config}: {arrived} messages never arrived");
            let programs = programs_of(rsyslogd_pid);
            assert_eq!(programs.len(), 1, "{config}: one program under rsyslogd");
            for &pid in &programs {
                support::signal_pid(pid, "KILL");
            }
            killed_flag.store(true, Ordering::SeqCst);
            let before = ids_received(server).len();
            eprintln!("{config}: killed program {programs:?} after {before} messages arrived");
            programs
        };
        let (killed, ()) = tokio::join!(killing, sending);
        let restarted = support::eventually(Duration::from_secs(60), || {
            let now = programs_of(rsyslogd_pid);
            !now.is_empty() && now != killed
        })
        .await;
        assert!(restarted, "{config}: rsyslogd did not restart the program");
    } else if let Fault::DownUntilRefused(refusals, outage) = fault {
        sending.await;
        let refused =
            support::eventually(Duration::from_secs(60), || server.replied(502) >= refusals).await;
        assert!(refused, "{config}: {refusals} requests were refused");
        outage.end();
    } else {
        sending.await;
    }
    let all_arrived = support::eventually(Duration::from_secs(60), || {
        ids_received(server).len() >= count
    })
    .await;
    let log = std::fs::read_to_string(config_dir.join("drifter.log")).unwrap_or_default();
    rsyslogd.stop().await.expect("stop rsyslogd");
    let ids = ids_received(server);
    assert!(
        all_arrived,
        "{config}: {} of {count} arrived; drifter log: {log}",
        ids.len()
    );
    let expected: BTreeSet<String> = (0..count).map(|i| format!("{i:05}")).collect();
    assert_eq!(
        ids.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "{config}"
    );
    let duplicates: usize = ids.values().map(|n| n - 1).sum();
    eprintln!("{config}: {count} messages delivered, {duplicates} duplicates");
    if action.contains("--ids prefix") {
        assert_one_stable_id_per_message(config, server);
    }
    if !at_least_once {
        assert_eq!(duplicates, 0, "{config}: no duplicates without faults");
    }
}

async fn plain_config_delivers_every_message_through_rsyslogd() -> Result<(), Missing> {
    rsyslogd()?;
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    deliver_through("drifter-plain.conf", &server, 500, false).await;
    // RSYSLOG_FileFormat: the message is the tail of the line, byte for byte.
    let sample = server
        .answered(503)
        .first()
        .map(|t| support::decode(t))
        .unwrap_or_default();
    let sample = String::from_utf8_lossy(&sample).into_owned();
    assert!(
        sample.contains(" e2ehost e2etag: drifter-e2e ") && sample.ends_with(" & é \"quoted\""),
        "{sample}"
    );
    Ok(())
}

async fn reliable_config_delivers_every_message_through_rsyslogd() -> Result<(), Missing> {
    rsyslogd()?;
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    deliver_through("drifter-reliable.conf", &server, 300, false).await;
    Ok(())
}

async fn transactions_config_delivers_every_message_through_rsyslogd() -> Result<(), Missing> {
    rsyslogd()?;
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    deliver_through("drifter-transactions.conf", &server, 2000, false).await;
    Ok(())
}

async fn confirming_configs_lose_nothing_while_the_load_balancer_is_down_for_a_while()
-> Result<(), Missing> {
    rsyslogd()?;
    for config in ["drifter-reliable.conf", "drifter-transactions.conf"] {
        // Down, with every message sent to rsyslogd, until three probes were refused: the
        // program's backoff, not a clock of the test's, makes it last a while.
        let (server, outage) = TestServer::down(502).await;
        let fault = Fault::DownUntilRefused(3, outage);
        deliver_with_fault(config, &server, 300, true, fault).await;
        assert!(server.replied(502) >= 3, "{config}: the outage was hit");
    }
    Ok(())
}

async fn reliable_config_loses_nothing_when_the_program_is_killed_mid_stream() -> Result<(), Missing>
{
    rsyslogd()?;
    // The first 100 are answered; later requests are held until the program is killed, so
    // the kill always lands with most messages still in flight or queued in rsyslog.
    let killed = Arc::new(AtomicBool::new(false));
    let answering = killed.clone();
    let server = TestServer::start(move |n, _| {
        if n < 100 || answering.load(Ordering::SeqCst) {
            Reply::Status(503)
        } else {
            Reply::Hang
        }
    })
    .await;
    deliver_with_fault(
        "drifter-reliable.conf",
        &server,
        1000,
        true,
        Fault::KillProgramAfter(100, killed),
    )
    .await;
    Ok(())
}

/// Per shipped config, with `--sequence` added: the load balancer is down while messages
/// arrive in bursts, and after each burst is in the spool the program is SIGKILLed (rsyslogd
/// starts a new one for the next burst). Once the load balancer is back, every message
/// arrives, and each sender's sequence numbers run from 1 with no gap: the replays kept theirs.
async fn every_shipped_config_loses_nothing_to_kills_during_an_outage() -> Result<(), Missing> {
    rsyslogd()?;
    for config in [
        "drifter-plain.conf",
        "drifter-reliable.conf",
        "drifter-transactions.conf",
    ] {
        let down = Arc::new(AtomicBool::new(true));
        let is_down = down.clone();
        let server = TestServer::start(move |_, _| {
            if is_down.load(Ordering::SeqCst) {
                Reply::Status(502)
            } else {
                Reply::Status(503)
            }
        })
        .await;
        let dir = tempfile::tempdir().expect("temp dir");
        let config_dir = dir.path().to_path_buf();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("rsyslog.d")
            .join(config);
        let action =
            adapt(&shipped, &server.url(), &config_dir).replace(" send ", " send --sequence ");
        assert!(action.contains("--spool "), "{config} ships with a spool");
        let spool_dir = config_dir.join("spool");
        let rsyslogd = Rsyslogd::start(&action, dir).await.expect("start rsyslogd");
        let rsyslogd_pid = rsyslogd.child.id().expect("rsyslogd is running");
        let (bursts, per_burst) = (4, 400);
        let mut sent = 0;
        for burst in 0..bursts {
            let messages: Vec<String> = (sent..sent + per_burst)
                .map(|i| format!("drifter-e2e {i:05} & é \"quoted\""))
                .collect();
            rsyslogd
                .send(&syslog_frames(&messages))
                .await
                .expect("send");
            sent += per_burst;
            // rsyslogd restarts a killed program when it resumes the action, so a burst can
            // wait a resumeInterval (10 s in the shipped configs) for a program to read it.
            let held = support::eventually_async(RESUMED, || async {
                support::spooled(&spool_dir).await >= sent as u64
            })
            .await;
            if !held {
                let log =
                    std::fs::read_to_string(config_dir.join("drifter.log")).unwrap_or_default();
                let rows = support::spool_rows(&spool_dir).await;
                panic!(
                    "{config}: burst {burst} never reached the spool: {rows:?}; drifter log: {log}"
                );
            }
            let programs = programs_of(rsyslogd_pid);
            assert!(!programs.is_empty(), "{config}: a program under rsyslogd");
            for &pid in &programs {
                support::signal_pid(pid, "KILL");
            }
            // Until rsyslogd has reaped a killed program, a thread of it may still hold the
            // pipe open (its /proc entry already without an exe): rsyslogd's writes still
            // succeed, and in plain mode what it writes then is lost with the pipe, the
            // documented window, and no failed write tells it to start a new program.
            let reaped = support::eventually(Duration::from_secs(10), || {
                let children = rsyslogd::children_of(rsyslogd_pid);
                programs.iter().all(|pid| !children.contains(pid))
            })
            .await;
            assert!(reaped, "{config}: killed programs exit and are reaped");
        }
        down.store(false, Ordering::SeqCst);
        // One more burst: rsyslogd starts a program for it, which delivers the spool too.
        let last: Vec<String> = (sent..sent + 100)
            .map(|i| format!("drifter-e2e {i:05} & é \"quoted\""))
            .collect();
        rsyslogd.send(&syslog_frames(&last)).await.expect("send");
        sent += 100;
        let all_arrived =
            support::eventually(RESUMED, || ids_received(&server).len() >= sent).await;
        let log = std::fs::read_to_string(config_dir.join("drifter.log")).unwrap_or_default();
        rsyslogd.stop().await.expect("stop rsyslogd");
        let ids = ids_received(&server);
        assert!(
            all_arrived,
            "{config}: {} of {sent} arrived; drifter log: {log}",
            ids.len()
        );
        let expected: BTreeSet<String> = (0..sent).map(|i| format!("{i:05}")).collect();
        assert_eq!(
            ids.keys().cloned().collect::<BTreeSet<_>>(),
            expected,
            "{config}"
        );
        let mut by_sender: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        for (sender, number) in support::sequences(&server.answered(503)) {
            by_sender.entry(sender).or_default().insert(number);
        }
        for (sender, numbers) in &by_sender {
            let max = numbers.last().copied().unwrap_or(0);
            assert_eq!(
                numbers.len() as u64,
                max,
                "{config}: sender {sender} has gaps"
            );
        }
        let duplicates: usize = ids.values().map(|n| n - 1).sum();
        eprintln!(
            "{config}: {sent} messages through {} kills, {duplicates} duplicates, senders {:?}",
            bursts,
            by_sender
                .iter()
                .map(|(s, n)| (s.clone(), n.len()))
                .collect::<Vec<_>>()
        );
        assert!(server.replied(502) > 0, "{config}: the outage was hit");
    }
    Ok(())
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    crate::trials![
        every_shipped_config_passes_rsyslogd_check,
        plain_config_delivers_every_message_through_rsyslogd,
        reliable_config_delivers_every_message_through_rsyslogd,
        transactions_config_delivers_every_message_through_rsyslogd,
        confirming_configs_lose_nothing_while_the_load_balancer_is_down_for_a_while,
        reliable_config_loses_nothing_when_the_program_is_killed_mid_stream,
        every_shipped_config_loses_nothing_to_kills_during_an_outage,
    ]
}
