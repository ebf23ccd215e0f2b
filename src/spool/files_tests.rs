//! The spool's open files across many rotations, under each sync policy (issue 21 item 1: a
//! rotated segment stayed open until a sync that `off`, and `strict` in plain mode, never
//! made, and a deleted segment kept its blocks).

use std::path::{Path, PathBuf};

use super::store::MAX_ROTATED;
use super::{Limits, Refused, Spool, Spools, SyncPolicy};

/// This process's file descriptors on files under `dir`: (all, those whose file is deleted).
/// Only `dir`'s, so tests running beside this one do not count.
fn open_files_under(dir: &Path) -> (usize, usize) {
    let (mut all, mut deleted) = (0, 0);
    for entry in std::fs::read_dir("/proc/self/fd").expect("list /proc/self/fd") {
        let Ok(target) = std::fs::read_link(entry.expect("fd entry").path()) else {
            continue; // closed since it was listed
        };
        let target = target.to_string_lossy().into_owned();
        if PathBuf::from(&target).starts_with(dir) {
            all += 1;
            deleted += usize::from(target.ends_with(" (deleted)"));
        }
    }
    (all, deleted)
}

fn limits(sync: SyncPolicy) -> Limits {
    Limits {
        max_bytes: 64 * 1024,
        segment_bytes: 8 * 1024,
        window_bytes: 16 * 1024,
        sync,
    }
}

fn append(spool: &Spool<Vec<u8>>, n: u64) -> Result<(), Refused<Vec<u8>>> {
    let payload = vec![b'x'; 200];
    spool.append(&payload, n, payload.clone())
}

fn deliver_all(spool: &Spool<Vec<u8>>) {
    while let Some(taken) = spool.take() {
        spool.done(taken.meta.index);
    }
}

#[test]
fn rotated_segments_are_closed_and_deleted_ones_hold_no_descriptor() {
    for sync in [SyncPolicy::Off, SyncPolicy::Strict, SyncPolicy::Interval] {
        let dir = tempfile::tempdir().expect("temp dir");
        let dir_path = dir.path().canonicalize().expect("canonical temp dir");
        let spools: Spools<Vec<u8>> = Spools::open(&dir_path, limits(sync)).expect("open");
        let spool = &spools.own;
        spool.extend_lease(1 << 30).expect("lease");
        let mut most = 0;
        // 300 rounds of 50 records of 232 framed bytes: a rotation every 35 records.
        for round in 0..300u64 {
            for n in 0..50 {
                if let Err(Refused::Failed(e)) = append(spool, round * 50 + n) {
                    panic!("{sync:?}: {e}");
                }
            }
            spool.flush().expect("flush");
            if sync != SyncPolicy::Off {
                // What the maintenance task does when woken by a rotation.
                spool.sync_rotated().expect("sync rotated");
            }
            deliver_all(spool);
            spool.reclaim().expect("reclaim");
            let (open, deleted) = open_files_under(&dir_path);
            most = most.max(open);
            assert_eq!(deleted, 0, "{sync:?}: a deleted segment is still open");
        }
        // The lock, the state, the segment written and the one read.
        assert!(most <= 4, "{sync:?}: {most} files open at most");
        eprintln!("{sync:?}: at most {most} files open under the spool");
    }
}

#[test]
fn without_syncs_rotated_files_are_bounded_and_appends_wait() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_path = dir.path().canonicalize().expect("canonical temp dir");
    let mut big = limits(SyncPolicy::Interval);
    big.max_bytes = 64 << 20;
    let spools: Spools<Vec<u8>> = Spools::open(&dir_path, big).expect("open");
    let spool = &spools.own;
    spool.extend_lease(1 << 30).expect("lease");
    let mut appended = 0u64;
    // A sync that never comes: appends are held back once MAX_ROTATED files wait for it.
    loop {
        match append(spool, appended) {
            Ok(()) => appended += 1,
            Err(Refused::Full(_)) => break,
            Err(Refused::Failed(e)) => panic!("{e}"),
        }
        spool.flush().expect("flush");
        assert!(appended < 100_000, "never held back");
    }
    let (open, _) = open_files_under(&dir_path);
    assert!(open <= MAX_ROTATED + 3, "{open} files open");
    assert!(spool.needs_sync());
    spool.sync().expect("sync");
    assert!(!spool.needs_sync());
    let (open, _) = open_files_under(&dir_path);
    assert!(open <= 3, "{open} files open after the sync");
    assert!(append(spool, appended).is_ok(), "room again once synced");
}
