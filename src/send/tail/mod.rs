//! `send --file`: log files read in place of stdin, with each file's position kept in the
//! spool directory, so a restart resumes at the next line and rotation loses nothing.
//!
//! Lines go the way stdin's go in plain mode (counted, labelled by the `Labeler`, appended
//! to the spool), with one difference: when `--ids` is off, each line's id is its file's key
//! and its offset (see [`Tracked::line_id`]), so a line read again after a kill carries the id
//! it first had, and `decode` drops the copy. A position moves only once the lines before it
//! are in the spool and synced as `--spool-sync` says ([`Tail::commit`]).
//!
//! Files are found by polling (every `--file-poll-interval` once everything was read) rather
//! than inotify: it works the same on overlay, NFS and bind mounts, where inotify misses
//! events, one code path covers rotation, deletion and globs, and while lines keep coming no
//! poll waits at all.
//!
//! Rotation: a path that names another file (rename and create) or none (deletion) leaves the
//! old file open; it is read to its end, and once a poll interval passes with nothing new, its
//! last line without LF is sent as is and it is closed. The file now at the path is read only
//! after that. A file that shrank, or whose first bytes or bytes before the position changed,
//! was truncated (copytruncate): its line in progress is sent as is and it is read again from
//! 0 under a new key. At start-up, a stored position is resumed only in the file it was kept
//! for ([`resume`]), found by the patterns or, if it was renamed away while being read,
//! next to where it was.

mod discover;
mod identity;
mod look;
mod metrics;
mod positions;
mod resume;
mod tracked;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::config::{Config, FileStart};
use super::input::Line;
use super::outgoing::Labeler;
use super::session::{Ending, Session};
use super::settle::Settler;
use super::spooling::{Spooler, Unspooled};
use super::stats::Stats;
use crate::spool::{SpoolError, SyncPolicy};
use discover::Pattern;

pub(super) use metrics::FileMetrics;
use positions::{Entry, Positions};
use tracked::{FileLine, Tracked};

/// Hex digits of a file's key in message ids.
const KEY_DIGITS: usize = 12;
/// Chunks read from one file before the next file gets its turn.
const CHUNKS_PER_TURN: usize = 4;

/// `--file` and what goes with it, checked and locked before anything is read.
pub(super) struct TailInput {
    patterns: Vec<Pattern>,
    start: FileStart,
    poll: Duration,
    /// `--spool-sync` and its interval: when positions are stored.
    sync: SyncPolicy,
    sync_interval: Duration,
    positions: Positions,
    pub metrics: Arc<FileMetrics>,
}

impl TailInput {
    /// `None` without `--file`. Checked before the spool is opened: a mistake here reads
    /// nothing and writes nothing.
    pub(super) fn check(args: &Config) -> anyhow::Result<Option<Vec<Pattern>>> {
        if args.file.is_empty() {
            return Ok(None);
        }
        if args.spool.is_none() {
            anyhow::bail!("--file needs --spool DIR, where each file's read position is kept");
        }
        if args.confirm || args.transactions || args.dry_run {
            anyhow::bail!("--file cannot go with --confirm, --transactions or --dry-run");
        }
        if args.file_poll_interval.is_zero() {
            anyhow::bail!("--file-poll-interval must be above zero");
        }
        let patterns = args
            .file
            .iter()
            .map(|text| Pattern::parse(text))
            .collect::<anyhow::Result<_>>()?;
        Ok(Some(patterns))
    }

    /// Locks the positions in the spool directory (which the spool created); `None`
    /// without `--file`.
    pub(super) fn open(
        args: &Config,
        patterns: Option<Vec<Pattern>>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(patterns) = patterns else {
            return Ok(None);
        };
        let dir = args
            .spool
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--file needs --spool DIR"))?;
        Ok(Some(TailInput {
            patterns,
            start: args.file_start,
            poll: args.file_poll_interval,
            sync: args.spool_sync,
            sync_interval: args.spool_sync_interval,
            positions: Positions::open(dir, args.spool_sync != SyncPolicy::Off)?,
            metrics: Arc::default(),
        }))
    }
}

struct Tail<'a> {
    input: TailInput,
    spooler: &'a Spooler,
    settler: &'a Settler,
    labeler: &'a Labeler,
    max_line_bytes: usize,
}

/// Reads the files until `stop`, in place of `session` reading stdin, with its spool, its
/// labels and its accounting.
pub(super) async fn read<R, W>(
    input: TailInput,
    session: &Session<'_, R, W>,
    stop: watch::Receiver<bool>,
) -> Ending {
    let input_ok = match session.spool {
        Some(spooler) => {
            let tail = Tail {
                input,
                spooler,
                settler: session.settler,
                labeler: session.labeler,
                max_line_bytes: session.max_line_bytes,
            };
            tail.run(stop).await
        }
        // TailInput::check requires --spool.
        None => false,
    };
    Ending {
        input_ok,
        uncommitted: Vec::new(),
    }
}

/// Why reading stopped early.
enum Halt {
    /// The spool failed: nothing more may be read.
    Failed(String),
    /// Stopped with the disk full: the line in hand stays in its file for the next run.
    GaveUp,
}

impl From<SpoolError> for Halt {
    fn from(e: SpoolError) -> Self {
        Halt::Failed(e.to_string())
    }
}

struct Reading<'a> {
    tail: Tail<'a>,
    files: Vec<Tracked>,
    line_number: u64,
    /// Lines handed on, or entries changed, since positions were last stored.
    uncommitted: bool,
    last_commit: Instant,
    /// Paths that could not be opened, reported once.
    unreadable: BTreeSet<PathBuf>,
}

impl Tail<'_> {
    /// Reads until `stop`; false if the spool or the positions failed.
    async fn run(self, mut stop: watch::Receiver<bool>) -> bool {
        let poll = self.input.poll;
        let mut reading = Reading {
            tail: self,
            files: Vec::new(),
            line_number: 0,
            uncommitted: false,
            last_commit: Instant::now(),
            unreadable: BTreeSet::new(),
        };
        let mut last_look: Option<Instant> = None;
        let halted = loop {
            if *stop.borrow() {
                break None;
            }
            if last_look.is_none_or(|at| at.elapsed() >= poll) {
                if let Err(halt) = reading.look(last_look.is_none()).await {
                    break Some(halt);
                }
                last_look = Some(Instant::now());
            }
            let progressed = match reading.read_round(false).await {
                Ok(progressed) => progressed,
                Err(halt) => break Some(halt),
            };
            if let Err(halt) = reading.commit(false).await {
                break Some(halt);
            }
            if !progressed {
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|stopped| *stopped) => break None,
                    _ = tokio::time::sleep(poll) => {}
                }
            }
        };
        let mut ok = match halted {
            None => reading.drain_rotated().await,
            Some(Halt::GaveUp) => true,
            Some(Halt::Failed(e)) => {
                tracing::error!("{e}; stopping");
                false
            }
        };
        // After a failure the positions stay where the last commit left them: a flush that
        // failed at the abort may have abandoned lines already handed on (counted handed
        // back), and a later flush of the then empty buffer would succeed, so committing now
        // would store positions past lines that are in neither the spool nor the next read.
        // Reading them again costs only copies under the same ids.
        if ok && let Err(halt) = reading.commit(true).await {
            if let Halt::Failed(e) = halt {
                tracing::error!("{e}");
            }
            ok = false;
        }
        ok
    }
}

impl Reading<'_> {
    /// Stopped: a rotated file is read to its end now, since after a restart it may no
    /// longer be found.
    async fn drain_rotated(&mut self) -> bool {
        loop {
            match self.read_round(true).await {
                Ok(true) => {}
                Ok(false) | Err(Halt::GaveUp) => return true,
                Err(Halt::Failed(e)) => {
                    tracing::error!("{e}; stopping");
                    return false;
                }
            }
        }
    }

    /// Reads what each file has (rotated ones only, if asked); true if anything was read.
    async fn read_round(&mut self, rotated_only: bool) -> Result<bool, Halt> {
        let mut progressed = false;
        for i in 0..self.files.len() {
            if rotated_only && self.files[i].rotated.is_none() {
                continue;
            }
            if let Some(before) = self.files[i].after {
                // Waits while the file it replaced is being read to its end; not if that one
                // turned up under another name that is read too (it is live again).
                if self
                    .files
                    .iter()
                    .any(|t| t.id == before && t.rotated.is_some())
                {
                    continue;
                }
                self.files[i].after = None;
            }
            for _ in 0..CHUNKS_PER_TURN {
                // As stdin's lines before the next read: what was appended is written, so a
                // kill finds it in the spool (and its sequence numbers used).
                self.tail.spooler.flush().await?;
                let read = self.files[i].read_lines(&mut self.line_number).await;
                let lines = match read {
                    Ok(Some(lines)) => lines,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(file = %self.files[i].path.display(), "cannot read: {e}");
                        break;
                    }
                };
                progressed = true;
                for line in lines {
                    self.hand_on(i, line).await?;
                }
            }
        }
        Ok(progressed)
    }

    /// One line of file `i` to the spool, as stdin's in plain mode; its position moves past.
    async fn hand_on(&mut self, i: usize, line: FileLine) -> Result<(), Halt> {
        let tail = &self.tail;
        let stats = &tail.settler.stats;
        match line.line {
            Line::Empty { .. } => Stats::add(&stats.empty, 1),
            Line::TooLong { number, length } => {
                Stats::add(&stats.read, 1);
                let reason = format!(
                    "line is {length} bytes, over --max-line-bytes {}",
                    tail.max_line_bytes
                );
                tail.settler.unreadable(number, &reason);
            }
            Line::Message { number, bytes } => {
                let id = self.files[i].line_id(line.start);
                match tail.labeler.prepare_identified(number, bytes, Some(id)) {
                    None => Stats::add(&stats.empty, 1),
                    Some(outgoing) => {
                        Stats::add(&stats.read, 1);
                        match tail.spooler.append(number, outgoing).await {
                            Ok(()) => {}
                            Err(Unspooled::Failed(e)) => return Err(e.into()),
                            Err(Unspooled::GaveUp(..)) => {
                                // Its position did not move: the next run reads it again.
                                stats.hand_back();
                                return Err(Halt::GaveUp);
                            }
                        }
                    }
                }
            }
        }
        let tracked = &mut self.files[i];
        tracked.done = line.end;
        tracked.anchor = line.anchor;
        let metrics = &self.tail.input.metrics;
        metrics.line(&tracked.path, line.end - line.start);
        self.uncommitted = true;
        Ok(())
    }

    /// Stores the positions of the lines handed on, once they are in the spool: synced first
    /// under `--spool-sync strict` (every time) and `interval` (at most every
    /// `--spool-sync-interval`, `force` or not), only written with `off`.
    async fn commit(&mut self, force: bool) -> Result<(), Halt> {
        if !self.uncommitted {
            return Ok(());
        }
        let (spooler, input) = (self.tail.spooler, &self.tail.input);
        let due = force
            || input.sync != SyncPolicy::Interval
            || self.last_commit.elapsed() >= input.sync_interval;
        if !due {
            spooler.flush().await?;
            return Ok(());
        }
        spooler.make_durable(input.sync != SyncPolicy::Off).await?;
        for tracked in &self.files {
            self.tail.input.positions.set(tracked.id, entry_of(tracked));
        }
        self.store_positions().await?;
        self.uncommitted = false;
        self.last_commit = Instant::now();
        Ok(())
    }

    async fn store_positions(&mut self) -> Result<(), Halt> {
        let snapshot = self.tail.input.positions.snapshot();
        tokio::task::spawn_blocking(move || snapshot.write())
            .await
            .map_err(|e| Halt::Failed(format!("the positions task failed: {e}")))?
            .map_err(|e| Halt::Failed(format!("cannot store the --file positions: {e}")))
    }
}

fn entry_of(tracked: &Tracked) -> Entry {
    Entry {
        key: tracked.key.clone(),
        fingerprint: tracked.fingerprint,
        offset: tracked.done,
        anchor: tracked.anchor,
        born: tracked.born,
        path: tracked.path.clone(),
        touched: 0,
    }
}
