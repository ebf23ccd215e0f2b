//! One access-log line at a time: which requests are drifter's, their query taken apart and
//! checked, fragments joined, duplicates dropped, sequence gaps tracked; everything that is
//! not a message is counted, never mixed into the output.
//!
//! Over 400 lines because every check of a line (request, query, fragment, id, sequence) is
//! a step of one pass over it, and the pass reads best top to bottom.

use std::io::{self, BufRead, BufReader, Write};

use flate2::bufread::MultiGzDecoder;

use super::config::Config;
use super::gaps::{Gap, Gaps, Policy};
use super::output::{Found, Output};
use super::reassembly::{Added, Fragments, Incomplete, RecentIds};
use super::window::{self, Range, Timestamp};
use crate::access_log::{self, Entry};
use crate::lines::BoundedLine;
use crate::wire::{self, Fields, Signer};

/// Malformed lines, forged requests, incomplete messages and senders with gaps are reported
/// one by one up to this many of each kind; the rest are only counted.
const REPORTED_EACH: u64 = 20;
const DRIFTER_USER_AGENT: &[u8] = b"drifter-rsyslog/";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub files: u64,
    pub lines: u64,
    pub messages: u64,
    /// Requests from other clients, or outside `--path`.
    pub other: u64,
    /// Drifter requests without a message (the `--probe` request).
    pub without_message: u64,
    pub malformed: u64,
    pub unreadable: u64,
    /// Requests dropped because their message (or fragment) was already decoded.
    pub duplicates: u64,
    /// Requests whose MAC did not verify with `--verify-key`.
    pub forged: u64,
    /// Messages some of whose fragments never arrived.
    pub incomplete: u64,
    /// Sequence numbers that never arrived, between ones that did.
    pub missing: u64,
    /// Entries logged outside `--since`/`--until`.
    pub outside: u64,
    /// Messages written out of their place: they came after the reorder window had passed it.
    pub late: u64,
}

/// Longer lines are not access-log entries (ALB caps the request line at 16 K): skipped as
/// malformed without being held in memory.
pub(super) const MAX_LINE_BYTES: usize = 1 << 20;
enum Selection {
    UserAgent,
    PathPrefix(Vec<u8>),
}

/// Turns access-log streams into messages on `W`: each line parsed as an entry, drifter's
/// requests selected (by User-Agent or `--path`), their queries verified and taken apart,
/// fragments joined, copies dropped by id, and sequence gaps counted. The sources (local
/// files in `walk`, S3 objects in `s3`) feed it streams; it reads nothing by itself.
/// [`finish`](Self::finish) writes what the order still holds and reports what never
/// completed.
pub struct Decoder<W: Write> {
    selection: Selection,
    range: Range,
    pub(super) output: Output<W>,
    pub counts: Counts,
    verifier: Option<Signer>,
    recent_ids: RecentIds,
    fragments: Fragments,
    gaps: Gaps,
    /// The time of the newest entry read, as logged (the format sorts as the times do).
    newest_time: Vec<u8>,
    /// Reused for each line and message: the decoding allocates nothing per line.
    line: Vec<u8>,
    message: Vec<u8>,
}

/// Whether a stream starting with `head` is gzip-compressed (its magic number).
pub(super) fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
}

/// An access-log entry and its log time, read once.
struct Logged<'a> {
    entry: &'a Entry<'a>,
    /// `None` when it was not needed or cannot be read.
    time: Option<Timestamp>,
}

impl<W: Write> Decoder<W> {
    /// `range` is `args`' --since/--until, resolved against the run's clock.
    pub fn new(args: &Config, range: Range, verifier: Option<Signer>, out: W) -> Self {
        Decoder {
            range,
            selection: match &args.path {
                Some(prefix) => Selection::PathPrefix(prefix.as_bytes().to_vec()),
                None => Selection::UserAgent,
            },
            output: Output::new(args.json, args.ordering(), out),
            counts: Counts::default(),
            verifier,
            recent_ids: RecentIds::new(usize::try_from(args.dedup_window).unwrap_or(usize::MAX)),
            fragments: Fragments::new(
                usize::try_from(args.max_pending_bytes).unwrap_or(usize::MAX),
            ),
            gaps: Gaps::new(Policy {
                range,
                edge_slack: args.edge_slack,
                follow: args.follow.then_some(args.gap_grace),
            }),
            newest_time: Vec::new(),
            line: Vec::new(),
            message: Vec::new(),
        }
    }

    /// The log time of the newest entry read.
    pub(super) fn newest_entry(&self) -> Option<Timestamp> {
        window::entry_time(&self.newest_time)
    }

    /// Numbers confirmed missing per sender with an entry logged at or after `since`.
    pub(super) fn active_senders(&self, since: Timestamp) -> Vec<(String, u64)> {
        self.gaps.active_senders(since)
    }

    pub(super) fn decode_line(&mut self, source: &str, number: u64, line: &[u8]) -> io::Result<()> {
        let entry = match access_log::parse_entry(line) {
            Ok(entry) => entry,
            Err(e) => {
                self.malformed(source, number, &e.to_string());
                return Ok(());
            }
        };
        match self.range.contains_entry(entry.time) {
            Some(true) => {}
            Some(false) => {
                self.counts.outside += 1;
                return Ok(());
            }
            None => {
                self.malformed(source, number, "the time cannot be read");
                return Ok(());
            }
        }
        if entry.time > self.newest_time.as_slice() {
            self.newest_time.clear();
            self.newest_time.extend_from_slice(entry.time);
        }
        let url = entry.raw_url();
        let (path, query) = access_log::split_url(&url);
        let selected = entry.method == b"GET"
            && match &self.selection {
                Selection::UserAgent => entry
                    .raw_user_agent()
                    .is_some_and(|agent| agent.starts_with(DRIFTER_USER_AGENT)),
                Selection::PathPrefix(prefix) => path.starts_with(prefix),
            };
        if !selected {
            self.counts.other += 1;
            return Ok(());
        }
        let Some(query) = query.filter(|q| !q.is_empty()) else {
            self.counts.without_message += 1;
            return Ok(());
        };
        let parsed = match wire::parse_query(query) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.malformed(source, number, &format!("not drifter's query string: {e}"));
                return Ok(());
            }
        };
        // Extensions alone (`/?&i=x`) carry no message either: send never sends an empty one
        // (nor an empty fragment), so it is counted like `/?`, not printed as an empty line.
        if parsed.message.is_empty() {
            self.counts.without_message += 1;
            return Ok(());
        }
        if let Some(verifier) = &self.verifier {
            let genuine = parsed
                .mac
                .is_some_and(|mac| verifier.verify(parsed.signed, &mac));
            if !genuine {
                self.counts.forged += 1;
                if self.counts.forged <= REPORTED_EACH {
                    tracing::warn!("{source}:{number}: forged: the MAC does not verify");
                }
                return Ok(());
            }
        }
        // Read once, when the gaps or the order need it.
        let time = match parsed.fields.sequence.is_some() || self.output.is_ordered() {
            true => window::entry_time(entry.time),
            false => None,
        };
        if let Some(sequence) = parsed.fields.sequence {
            self.gaps
                .saw(sequence.sender, sequence.number, time, entry.format);
        }
        let mut message = std::mem::take(&mut self.message);
        let decoded = wire::percent_decode_strict(parsed.message, &mut message);
        let logged = Logged {
            entry: &entry,
            time,
        };
        let written = if decoded {
            self.accept(source, number, &logged, &parsed.fields, &message)
        } else {
            self.malformed(source, number, "the query string is not percent-encoded");
            Ok(())
        };
        self.message = message;
        written
    }

    /// A whole message is emitted unless its id was seen; a fragment waits for the rest.
    fn accept(
        &mut self,
        source: &str,
        number: u64,
        logged: &Logged<'_>,
        fields: &Fields<'_>,
        piece: &[u8],
    ) -> io::Result<()> {
        let Some(fragment) = fields.fragment else {
            if let Some(id) = fields.id
                && !self.recent_ids.insert(id)
            {
                self.counts.duplicates += 1;
                return Ok(());
            }
            return self.emit(source, number, logged, fields, piece);
        };
        let Some(id) = fields.id else {
            self.malformed(source, number, "a fragment without a message id");
            return Ok(());
        };
        if self.recent_ids.contains(id) {
            self.counts.duplicates += 1;
            return Ok(());
        }
        let added = self.fragments.add(id, fragment, piece);
        for incomplete in self.fragments.take_given_up() {
            self.incomplete(&incomplete, "given up, --max-pending-bytes reached");
        }
        match added {
            Added::Waiting => Ok(()),
            Added::Duplicate => {
                self.counts.duplicates += 1;
                Ok(())
            }
            Added::Inconsistent => {
                self.malformed(source, number, "fragment count differs from the message's");
                Ok(())
            }
            Added::Complete(whole) => {
                self.recent_ids.insert(id);
                self.emit(source, number, logged, fields, &whole)
            }
        }
    }

    fn incomplete(&mut self, incomplete: &Incomplete, why: &str) {
        self.counts.incomplete += 1;
        if self.counts.incomplete <= REPORTED_EACH {
            let missing: Vec<String> = incomplete.missing.iter().map(u64::to_string).collect();
            let more = incomplete.count - incomplete.arrived > incomplete.missing.len() as u64;
            tracing::warn!(
                "message {}: {} of {} fragments arrived, missing {}{} ({why})",
                incomplete.id,
                incomplete.arrived,
                incomplete.count,
                missing.join(", "),
                if more { ", ..." } else { "" }
            );
        }
    }

    fn emit(
        &mut self,
        source: &str,
        number: u64,
        logged: &Logged<'_>,
        fields: &Fields<'_>,
        message: &[u8],
    ) -> io::Result<()> {
        if message.contains(&b'\n') {
            // drifter never sends one; printing it would turn one request into two lines.
            self.malformed(source, number, "the decoded message holds a line feed");
            return Ok(());
        }
        self.counts.messages += 1;
        let found = Found {
            entry: logged.entry,
            time: logged.time,
            source,
            fields,
            message,
        };
        let written = self.output.emit(&found);
        self.counts.late = self.output.late();
        written
    }

    pub(super) fn malformed(&mut self, source: &str, number: u64, reason: &str) {
        self.counts.malformed += 1;
        if self.counts.malformed <= REPORTED_EACH {
            tracing::warn!("{source}:{number}: malformed access-log line: {reason}");
        } else if self.counts.malformed == REPORTED_EACH + 1 {
            tracing::warn!("more malformed lines: only counted from now on");
        }
    }

    /// Writes out what is buffered (`--follow` shows each file as it is read).
    pub fn flush(&mut self) -> io::Result<()> {
        self.output.out.flush()
    }

    /// `--follow`: writes what the order held whose window `now` has passed, so lines flow
    /// when nothing new lands.
    pub fn release_until(&mut self, now: Timestamp) -> io::Result<()> {
        let released = self.output.advance(now.0);
        self.counts.late = self.output.late();
        released
    }

    /// `--follow`: reports the sequence gaps confirmed by `now`, one line per sender and range,
    /// and counts them as missing.
    pub fn confirm_gaps(&mut self, now: Timestamp) {
        let confirmed = self.gaps.confirmed(now);
        for (reported, gap) in confirmed.iter().enumerate() {
            self.counts.missing += gap.missing();
            if reported as u64 == REPORTED_EACH {
                tracing::warn!("{} more gaps confirmed", confirmed.len() - reported);
            }
            if reported as u64 >= REPORTED_EACH {
                continue;
            }
            tracing::warn!(
                "sender {}: sequence numbers {} missing ({} messages)",
                gap.sender,
                numbers(gap),
                gap.missing()
            );
        }
    }

    /// Reports what never completed and the sequence gaps, writes what the order held back,
    /// and flushes.
    pub fn finish(&mut self) -> io::Result<()> {
        for incomplete in self.fragments.finish() {
            self.incomplete(&incomplete, "never completed");
        }
        let left = self.gaps.finish();
        let mut by_sender: Vec<(&str, Vec<&Gap>)> = Vec::new();
        for gap in &left.missing {
            self.counts.missing += gap.missing();
            match by_sender.last_mut() {
                Some((sender, gaps)) if *sender == gap.sender => gaps.push(gap),
                _ => by_sender.push((&gap.sender, vec![gap])),
            }
        }
        for (sender, gaps) in by_sender.iter().take(REPORTED_EACH as usize) {
            let ranges: Vec<String> = gaps
                .iter()
                .take(LISTED_GAPS)
                .map(|gap| numbers(gap))
                .collect();
            tracing::warn!(
                "sender {sender}: {} messages missing, sequence numbers {}{}",
                gaps.iter().map(|gap| gap.missing()).sum::<u64>(),
                ranges.join(", "),
                if gaps.len() > LISTED_GAPS {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        if left.near_edges > 0 {
            tracing::info!(
                "not counted as missing: {} sequence numbers in gaps within --edge-slack of --since/--until (they may have been logged outside)",
                left.near_edges
            );
        }
        if left.unconfirmed > 0 {
            tracing::info!(
                "not counted as missing: {} sequence numbers in gaps still within --gap-grace (their files may still land)",
                left.unconfirmed
            );
        }
        let finished = self.output.finish();
        self.counts.late = self.output.late();
        finished
    }
}

/// Gaps listed per sender at the end; the rest are only counted.
const LISTED_GAPS: usize = 10;

fn numbers(gap: &Gap) -> String {
    if gap.from == gap.to {
        gap.from.to_string()
    } else {
        format!("{}-{}", gap.from, gap.to)
    }
}

/// Reading an input failed (reported, counted, and the next input is read), or writing the
/// output did (which ends the command).
enum Failure {
    Input(io::Error),
    Output(io::Error),
}

impl<W: Write> Decoder<W> {
    /// One input, gzip-compressed or not (decided by its first bytes, not its name).
    pub fn decode_stream<R: BufRead>(&mut self, source: &str, mut input: R) -> io::Result<()> {
        self.counts.files += 1;
        let is_gzip = match input.fill_buf() {
            Ok(head) => is_gzip(head),
            Err(e) => {
                tracing::error!("cannot read {source}: {e}");
                self.counts.unreadable += 1;
                return Ok(());
            }
        };
        let read = if is_gzip {
            let gunzipped = BufReader::with_capacity(256 * 1024, MultiGzDecoder::new(input));
            self.decode_lines(source, gunzipped)
        } else {
            self.decode_lines(source, input)
        };
        match read {
            Ok(()) => Ok(()),
            Err(Failure::Output(e)) => Err(e),
            Err(Failure::Input(e)) => {
                tracing::error!("cannot read {source} to its end: {e}");
                self.counts.unreadable += 1;
                Ok(())
            }
        }
    }

    fn decode_lines<R: BufRead>(&mut self, source: &str, mut input: R) -> Result<(), Failure> {
        let mut number = 0u64;
        let mut line = std::mem::take(&mut self.line);
        let mut bounded = BoundedLine::new(MAX_LINE_BYTES);
        loop {
            line.clear();
            let Some(too_long) = next_line(&mut input, &mut bounded, &mut line)? else {
                break;
            };
            number += 1;
            if too_long {
                self.counts.lines += 1;
                self.malformed(source, number, "line longer than 1 MiB");
                continue;
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                continue;
            }
            self.counts.lines += 1;
            self.decode_line(source, number, &line)
                .map_err(Failure::Output)?;
        }
        self.line = line;
        Ok(())
    }
}

/// Reads one line into `line` (without the LF). Returns `None` at end of input and
/// `Some(true)` for a line over the bound, which is skipped, not kept.
fn next_line<R: BufRead>(
    input: &mut R,
    bounded: &mut BoundedLine,
    line: &mut Vec<u8>,
) -> Result<Option<bool>, Failure> {
    loop {
        let available = input.fill_buf().map_err(Failure::Input)?;
        if available.is_empty() {
            let ended = bounded.in_progress(line);
            return Ok(ended.then(|| bounded.finish().is_some()));
        }
        let (used, found_end) = bounded.take(available, line);
        input.consume(used);
        if found_end {
            return Ok(Some(bounded.finish().is_some()));
        }
    }
}
