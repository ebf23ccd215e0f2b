//! The spool under faults injected through its file-operation seam ([`super::disk`]): a slow
//! fsync, EIO, ENOSPC, EMFILE. Deterministic: the faults are set and cleared by the test.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use super::disk::faults::{Faulty, Op};
use super::{Limits, Refused, Spool, Spools, SyncPolicy};

const EIO: i32 = 5;
const ENOSPC: i32 = 28;
const EMFILE: i32 = 24;

fn limits() -> Limits {
    Limits {
        max_bytes: 1 << 20,
        segment_bytes: 8 * 1024,
        window_bytes: 16 * 1024,
        sync: SyncPolicy::Interval,
    }
}

fn open(dir: &std::path::Path) -> (Spools<Vec<u8>>, Arc<Faulty>) {
    let faulty = Arc::new(Faulty::default());
    let spools = Spools::open_on(dir, limits(), faulty.clone()).expect("open");
    // The ids are the sequence numbers.
    spools.own.extend_lease(1 << 30).expect("lease");
    (spools, faulty)
}

fn payload(id: u64) -> Vec<u8> {
    let mut bytes = id.to_le_bytes().to_vec();
    bytes.resize(200, b'x');
    bytes
}

fn append(spool: &Spool<Vec<u8>>, id: u64) -> Result<(), Refused<Vec<u8>>> {
    let bytes = payload(id);
    spool.append(&bytes, id, bytes.clone())
}

/// Takes everything available, marking each done: the ids in order.
fn drain(spool: &Spool<Vec<u8>>) -> Vec<u64> {
    let mut ids = Vec::new();
    while let Some(taken) = spool.take() {
        spool.done(taken.meta.index);
        let bytes = match taken.body {
            super::Body::Item(bytes) | super::Body::Payload(bytes) => bytes,
        };
        ids.push(u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")));
    }
    ids
}

/// Runs `work` on a thread of its own; fails if it has not finished within a minute, which
/// only a `work` held up by the stalled sync takes (the sync stays stalled until after).
fn finishes_beside_a_stalled_sync(work: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        work();
        let _ = done.send(());
    });
    assert!(
        finished.recv_timeout(Duration::from_secs(60)).is_ok(),
        "appending and taking were held up by a slow fsync"
    );
}

/// Appends `ids` (rotating through several segments), writes them and takes them back.
fn append_and_take(spool: Arc<Spool<Vec<u8>>>, ids: std::ops::Range<u64>) {
    for id in ids.clone() {
        assert!(append(&spool, id).is_ok(), "append {id}");
    }
    assert!(spool.flush().is_ok(), "flush");
    assert_eq!(drain(&spool), ids.collect::<Vec<_>>());
}

/// Issue 21 item 6: a 3 s fdatasync of the state file stopped every OK, dot and metrics
/// answer, because the state was stored under the lock that appends and takes need.
#[test]
fn a_slow_fsync_of_the_state_or_a_segment_never_holds_up_appends_and_takes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (spools, faulty) = open(dir.path());
    let spool = spools.own.clone();
    append_and_take(spool.clone(), 0..100);

    // The state's fdatasync (reclaim, on the maintenance task's blocking thread) stalls.
    faulty.stall_syncs();
    let reclaiming = std::thread::spawn({
        let spool = spool.clone();
        move || spool.reclaim()
    });
    faulty.wait_for_a_stalled_sync();
    finishes_beside_a_stalled_sync({
        let spool = spool.clone();
        move || append_and_take(spool, 100..300)
    });
    faulty.release();
    assert!(reclaiming.join().expect("reclaim thread").is_ok());

    // A segment's fdatasync (the interval sync, or a strict acknowledgement's) stalls.
    assert!(append(&spool, 300).is_ok());
    assert!(spool.flush().is_ok());
    faulty.stall_syncs();
    let syncing = std::thread::spawn({
        let spool = spool.clone();
        move || spool.sync()
    });
    faulty.wait_for_a_stalled_sync();
    finishes_beside_a_stalled_sync({
        let spool = spool.clone();
        move || {
            assert_eq!(drain(&spool), [300]);
            append_and_take(spool, 301..500);
        }
    });
    faulty.release();
    assert!(syncing.join().expect("sync thread").is_ok());
}

/// An fdatasync that fails is never taken for success: the spool stops acknowledging for
/// good, even once the disk works again.
#[test]
fn eio_on_fdatasync_fails_the_spool_for_good() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (spools, faulty) = open(dir.path());
    let spool = &spools.own;
    assert!(append(spool, 1).is_ok());
    assert!(spool.flush().is_ok());
    faulty.fail(Op::Sync, EIO);
    assert!(spool.sync().is_err());
    faulty.clear(Op::Sync);
    assert!(matches!(append(spool, 2), Err(Refused::Failed(_))));
    assert!(spool.failure().is_some());
    // What was written before is still delivered.
    assert_eq!(drain(spool), [1]);
}

/// ENOSPC on a write is waited out: refused as full, nothing half-written, and everything
/// appended comes out once there is room.
#[test]
fn enospc_on_write_is_waited_out_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (spools, faulty) = open(dir.path());
    let spool = &spools.own;
    for id in 0..10 {
        assert!(append(spool, id).is_ok());
    }
    assert!(spool.flush().is_ok());
    faulty.fail(Op::Write, ENOSPC);
    for id in 10..20 {
        assert!(append(spool, id).is_ok(), "buffered");
    }
    assert!(matches!(spool.flush(), Err(Refused::Full(()))));
    assert!(spool.failure().is_none());
    assert_eq!(
        drain(spool),
        (0..10).collect::<Vec<_>>(),
        "only what was written"
    );
    faulty.clear(Op::Write);
    assert!(spool.flush().is_ok());
    assert_eq!(drain(spool), (10..20).collect::<Vec<_>>());
}

/// EMFILE when a segment is created (at rotation) is waited out like a full disk, rather than
/// giving the spool up.
#[test]
fn emfile_at_rotation_is_waited_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (spools, faulty) = open(dir.path());
    let spool = &spools.own;
    faulty.fail(Op::Create, EMFILE);
    // The first segment cannot be created either.
    assert!(matches!(append(spool, 0), Err(Refused::Full(_))));
    faulty.clear(Op::Create);
    let mut id = 0;
    while spool.bytes() < 7 * 1024 {
        assert!(append(spool, id).is_ok());
        id += 1;
    }
    faulty.fail(Op::Create, EMFILE);
    let held_at = loop {
        match append(spool, id) {
            Ok(()) => id += 1,
            Err(Refused::Full(_)) => break id,
            Err(Refused::Failed(e)) => panic!("given up for EMFILE: {e}"),
        }
    };
    assert!(spool.failure().is_none());
    faulty.clear(Op::Create);
    assert!(append(spool, held_at).is_ok());
    assert!(spool.flush().is_ok());
    assert_eq!(drain(spool), (0..=held_at).collect::<Vec<_>>());
}

/// Appends `text` under `sequence`, leasing first as the spooler does.
fn append_numbered(spool: &Spool<Vec<u8>>, sequence: u64, text: &str) {
    spool.extend_lease(sequence).expect("lease");
    let bytes = text.as_bytes().to_vec();
    assert!(spool.append(&bytes, sequence, bytes.clone()).is_ok());
}

/// Takes everything available, marking each done: (sequence number, message).
fn deliver(spool: &Spool<Vec<u8>>) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(taken) = spool.take() {
        spool.done(taken.meta.index);
        let (super::Body::Item(bytes) | super::Body::Payload(bytes)) = taken.body;
        out.push((taken.meta.sequence, bytes));
    }
    out
}

/// Issue 21 item 8: a host crash drops the unsynced tail, whose messages were delivered with
/// their numbers; the next start must not give those numbers to new messages (it did: it
/// carried on after the highest number left in the files), so no number means two messages.
#[test]
fn after_a_host_crash_no_sequence_number_is_given_to_two_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let faulty = Arc::new(Faulty::default());
    let spools = Spools::open_on(dir.path(), limits(), faulty.clone()).expect("open");
    let spool = &spools.own;
    for n in 1..=50 {
        append_numbered(spool, n, &format!("before the sync {n}"));
    }
    assert!(spool.flush().is_ok());
    spool.sync().expect("sync");
    for n in 51..=80 {
        append_numbered(spool, n, &format!("after the sync {n}"));
    }
    assert!(spool.flush().is_ok());
    // All 80 go out (the load balancer has them), then the host crashes before the next sync.
    let mut sent: Vec<(u64, Vec<u8>)> = deliver(spool);
    assert_eq!(sent.len(), 80);
    drop(spools);
    faulty.crash();

    let spools = Spools::open_on(dir.path(), limits(), faulty.clone()).expect("reopen");
    let spool = &spools.own;
    let resumed = spool.last_sequence();
    for n in resumed + 1..=resumed + 20 {
        append_numbered(spool, n, &format!("after the crash {n}"));
    }
    assert!(spool.flush().is_ok());
    // What survived the crash is sent again (duplicates ids remove), and the new messages.
    sent.extend(deliver(spool));
    let mut messages: std::collections::BTreeMap<u64, Vec<u8>> = Default::default();
    for (number, message) in sent {
        let first = messages.entry(number).or_insert_with(|| message.clone());
        assert_eq!(
            *first, message,
            "sequence number {number} was given to two messages"
        );
    }
    // What `decode` then reports missing: from 81 to the end of the lease, at most a block.
    assert!((80..=80 + 2048).contains(&resumed), "{resumed}");
    drop(spools);

    // A clean stop gives the unused numbers back: after a reboot, no gap.
    let spools = Spools::open_on(dir.path(), limits(), faulty.clone()).expect("reopen");
    let last = spools.own.last_sequence();
    append_numbered(&spools.own, last + 1, "before a clean stop");
    assert!(spools.own.flush().is_ok());
    spools.own.sync().expect("sync");
    spools.own.release_lease().expect("release");
    drop(spools);
    faulty.crash();
    let spools: Spools<Vec<u8>> = Spools::open_on(dir.path(), limits(), faulty).expect("reopen");
    assert_eq!(spools.own.last_sequence(), last + 1);
}

/// Issue 21 item 14 (a): on a full copy-on-write filesystem, storing the state fails with
/// ENOSPC; delivered segments are still deleted (nothing was, so no room ever came back),
/// and a restart loses nothing.
#[test]
fn enospc_storing_the_state_still_lets_delivered_segments_go() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (spools, faulty) = open(dir.path());
    let spool = &spools.own;
    // About 50 KB in segments of 8 KiB.
    for id in 0..250 {
        assert!(append(spool, id).is_ok());
    }
    assert!(spool.flush().is_ok());
    assert_eq!(drain(spool).len(), 250);
    faulty.fail(Op::WriteState, ENOSPC);
    let before = spool.bytes();
    spool.reclaim().expect("a full disk is no failure");
    assert!(spool.failure().is_none());
    // All but the newest segment went (it keeps the highest sequence number on disk).
    assert!(
        spool.bytes() <= limits().segment_bytes,
        "{} of {before} bytes left",
        spool.bytes()
    );
    // The lease cannot be stored either: appends wait as on a full disk.
    assert!(matches!(
        spool.extend_lease(1 << 31),
        Err(Refused::Full(()))
    ));
    for id in 250..260 {
        assert!(append(spool, id).is_ok());
    }
    assert!(spool.flush().is_ok());
    let name = spool.name.clone();
    drop(spools);

    // The stored frontier is behind: the kept segment comes out again (duplicates), and
    // everything not delivered comes out.
    faulty.clear(Op::WriteState);
    let spools = Spools::open_on(dir.path(), limits(), faulty).expect("reopen");
    assert_eq!(spools.own.name, name);
    assert!(spools.own.last_sequence() >= 259);
    let ids = drain(&spools.own);
    assert!(ids.ends_with(&(250..260).collect::<Vec<_>>()), "{ids:?}");
    assert!(ids.iter().all(|&id| id >= 200), "{ids:?}");
}

/// Issue 21 item 14 (b): a damaged segment found at start on a full disk cannot be rewritten;
/// recovery passes over its damage in place instead of giving the spool up (it was left
/// alone, and the next spool could not be created either).
#[test]
fn a_damaged_segment_on_a_full_disk_is_recovered_without_room() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (spools, faulty) = open(dir.path());
    for id in 0..20 {
        assert!(append(&spools.own, id).is_ok());
    }
    assert!(spools.own.flush().is_ok());
    let name = spools.own.name.clone();
    drop(spools);
    let spool_dir = dir.path().join(&name);
    let segment = std::fs::read_dir(&spool_dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("a segment");
    // One byte of the 6th record's payload flipped (records are 32 + 200 bytes after a
    // 16-byte segment header), and garbage after it: one damaged stretch, larger than a scan
    // chunk.
    let mut bytes = std::fs::read(&segment).expect("read");
    bytes[16 + 5 * 232 + 100] ^= 0xff;
    let garbage = vec![0xaa; 2 * super::scan::CHUNK_BYTES];
    bytes.splice(16 + 6 * 232..16 + 6 * 232, garbage);
    std::fs::write(&segment, &bytes).expect("write");

    faulty.fail(Op::Write, ENOSPC);
    let spools = Spools::open_on(dir.path(), limits(), faulty.clone()).expect("open");
    assert_eq!(
        spools.own.name, name,
        "the spool is recovered, not left alone"
    );
    assert_eq!(spools.recovered.corrupt, 1);
    assert_eq!(spools.recovered.lost, 1);
    assert_eq!(
        std::fs::read(&segment).expect("read"),
        bytes,
        "not rewritten"
    );
    // The stretches to pass over came from the chunked scan: never the whole file at once
    // (issue 28).
    let (_, largest_read) = faulty.reads();
    assert!(
        largest_read <= super::scan::CHUNK_BYTES,
        "read {largest_read} bytes at once"
    );
    let expected: Vec<u64> = (0..20).filter(|&id| id != 5).collect();
    assert_eq!(drain(&spools.own), expected, "the damage is passed over");
    faulty.clear(Op::Write);
    assert!(append(&spools.own, 20).is_ok());
    assert!(spools.own.flush().is_ok());
    assert_eq!(drain(&spools.own), [20]);
}
