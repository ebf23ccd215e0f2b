//! The maintenance task under faults (issue 21 items 10 and 11).

use std::sync::Arc;
use std::time::Duration;

use super::super::dead_letter::DeadLetter;
use super::super::outgoing::Labeler;
use super::*;
use crate::spool::disk::faults::{Faulty, Op};

const EIO: i32 = 5;

/// Polls `condition` every 10 ms until it holds or a minute passes (a bound, not a pace).
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..6000 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

/// A 1 MiB spool of 8 KiB segments, synced on the interval policy.
fn limits() -> Limits {
    Limits {
        max_bytes: 1 << 20,
        segment_bytes: 8 * 1024,
        window_bytes: 1 << 20,
        sync: SyncPolicy::Interval,
    }
}

fn open(dir: &std::path::Path) -> (Arc<Spooler>, Arc<Faulty>, Labeler) {
    let faulty = Arc::new(Faulty::default());
    let limits = limits();
    let spools = Spools::open_on(dir, limits, faulty.clone()).expect("open");
    let stats = Arc::new(Stats::default());
    let spooler = Spooler::new(spools, limits, Duration::from_millis(10), stats);
    let labeler = Labeler::plain();
    (Arc::new(spooler), faulty, labeler)
}

async fn spool_lines(spooler: &Spooler, labeler: &Labeler, count: u64) {
    for n in 1..=count {
        let outgoing = labeler
            .prepare(n, format!("line {n} {}", "x".repeat(100)).into_bytes())
            .expect("a message");
        assert!(spooler.append(n, outgoing).await.is_ok());
    }
    assert!(spooler.flush().await.is_ok());
}

/// Issue 21 item 10: a rejected message's segment could be deleted (its frontier stored)
/// before its dead-letter line was synced. /dev/null takes the line and fails the fsync.
#[tokio::test]
async fn no_frontier_is_stored_before_the_dead_letter_lines_are_durable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (spooler, _, labeler) = open(dir.path());
    let dead_letter = DeadLetter::open(std::path::Path::new("/dev/null")).expect("/dev/null");
    assert!(dead_letter.append(b"line 1 rejected").is_ok());
    spooler.sync_before_reclaim(Arc::new(dead_letter));
    spool_lines(&spooler, &labeler, 200).await;
    let own = spooler.spools.own.clone();
    let written = own.bytes();
    while let Some(taken) = own.take() {
        own.done(taken.meta.index);
    }
    let reclaimer = spooler.clone();
    let reclaimed =
        tokio::task::spawn_blocking(move || reclaimer.sync_and_reclaim(Sync::No, false))
            .await
            .expect("join");
    assert!(!reclaimed, "the failed dead-letter sync is an error");
    assert_eq!(own.bytes(), written, "nothing deleted");
    assert_eq!(spooler.maintenance_errors(), 1);
}

/// It returned on the first error of any spool: after a failed sync, the own spool was never
/// reclaimed again, and its delivered segments stayed on disk for good.
#[tokio::test]
async fn maintenance_goes_on_after_an_error_and_counts_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let faulty = Arc::new(Faulty::default());
    let limits = limits();
    let spools = Spools::open_on(dir.path(), limits, faulty.clone()).expect("open");
    let stats = Arc::new(Stats::default());
    let spooler = Arc::new(Spooler::new(
        spools,
        limits,
        Duration::from_millis(10),
        stats,
    ));
    let labeler = Labeler::plain();
    for n in 1..=200 {
        let outgoing = labeler
            .prepare(n, format!("line {n} {}", "x".repeat(100)).into_bytes())
            .expect("a message");
        assert!(spooler.append(n, outgoing).await.is_ok());
    }
    assert!(spooler.flush().await.is_ok());
    let own = spooler.spools.own.clone();
    let written = own.bytes();
    faulty.fail(Op::Sync, EIO);
    let task = tokio::spawn(spooler.clone().maintain());
    assert!(
        eventually(|| spooler.maintenance_errors() > 0).await,
        "the failed sync is counted"
    );
    faulty.clear(Op::Sync);
    while let Some(taken) = own.take() {
        own.done(taken.meta.index);
    }
    assert!(
        eventually(|| own.bytes() < written / 4).await,
        "delivered segments are deleted after the error: {} of {written} bytes left",
        own.bytes()
    );
    assert!(!task.is_finished(), "the task goes on");
    spooler.finishing.send_replace(true);
    assert!(task.await.is_ok());
}
