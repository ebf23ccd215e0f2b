//! The `decode` command: access-log files in, the messages drifter sent out.
//!
//! Streams: one line at a time, bounded in length, so memory does not grow with the input
//! (except with `--sort`, which holds the selected messages to order them). Everything that
//! is not a drifter message is counted, never mixed into the output: other clients (a public
//! load balancer gets scanners and bots), lines that do not parse (reported with file and line
//! number), and requests that carry no message (the `--probe` request).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use flate2::bufread::MultiGzDecoder;

use crate::access_log::{self, Entry};
use crate::cli::DecodeArgs;
use crate::key_file;
use crate::reassembly::{Added, Fragments, Incomplete, RecentIds, Sequences};
use crate::send::{EXIT_LOST, EXIT_USAGE};
use crate::wire::{self, Fields, Signer};

/// Longer lines are not access-log entries (ALB caps the request line at 16 K): skipped as
/// malformed without being held in memory.
const MAX_LINE_BYTES: usize = 1 << 20;
/// Malformed lines, forged requests, incomplete messages and senders with gaps are reported
/// one by one up to this many of each kind; the rest are only counted.
const REPORTED_EACH: u64 = 20;
const DRIFTER_USER_AGENT: &[u8] = b"drifter-rsyslog/";
const AWS_TEST_FILE: &str = "ELBAccessLogTestFile";

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
}

enum Selection {
    UserAgent,
    PathPrefix(Vec<u8>),
}

/// A message with where it came from, for `--json` and `--sort`.
struct Found<'a> {
    entry: &'a Entry<'a>,
    source: &'a str,
    fields: &'a Fields<'a>,
    message: &'a [u8],
}

pub struct Decoder<W: Write> {
    selection: Selection,
    json: bool,
    sort: bool,
    out: W,
    pub counts: Counts,
    verifier: Option<Signer>,
    recent_ids: RecentIds,
    fragments: Fragments,
    sequences: Sequences,
    /// `--sort`: (request time, arrival order, rendered output line).
    held: Vec<(Vec<u8>, u64, Vec<u8>)>,
    line: Vec<u8>,
    /// Reused for each message: the decoding allocates nothing per line.
    message: Vec<u8>,
    rendered: Vec<u8>,
}

pub fn run(args: &DecodeArgs) -> ExitCode {
    let verifier = match args.verify_key.as_deref().map(key_file::load).transpose() {
        Ok(verifier) => verifier,
        Err(e) => {
            eprintln!("drifter-rsyslog: error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let stdout = io::stdout().lock();
    let mut decoder = Decoder::new(
        args,
        verifier,
        io::BufWriter::with_capacity(256 * 1024, stdout),
    );
    let paths: Vec<PathBuf> = if args.paths.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.paths.clone()
    };
    let result = paths
        .iter()
        .try_for_each(|path| decoder.decode_path(path))
        .and_then(|()| decoder.finish());
    match result {
        Ok(()) => {}
        // `decode ... | head`: the reader has what it wanted.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drifter-rsyslog: error: cannot write the output: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let counts = &decoder.counts;
    tracing::info!(
        "decoded {} messages from {} lines in {} files; skipped {} from other clients, {} without a message, {} malformed, {} duplicates, {} forged; {} incomplete messages, {} missing by sequence number",
        counts.messages,
        counts.lines,
        counts.files,
        counts.other,
        counts.without_message,
        counts.malformed,
        counts.duplicates,
        counts.forged,
        counts.incomplete,
        counts.missing
    );
    if counts.unreadable > 0 {
        ExitCode::from(EXIT_USAGE)
    } else if counts.incomplete > 0 || counts.missing > 0 {
        ExitCode::from(EXIT_LOST)
    } else {
        ExitCode::SUCCESS
    }
}

impl<W: Write> Decoder<W> {
    pub fn new(args: &DecodeArgs, verifier: Option<Signer>, out: W) -> Self {
        Decoder {
            selection: match &args.path {
                Some(prefix) => Selection::PathPrefix(prefix.as_bytes().to_vec()),
                None => Selection::UserAgent,
            },
            json: args.json,
            sort: args.sort,
            out,
            counts: Counts::default(),
            verifier,
            recent_ids: RecentIds::new(usize::try_from(args.dedup_window).unwrap_or(usize::MAX)),
            fragments: Fragments::new(
                usize::try_from(args.max_pending_bytes).unwrap_or(usize::MAX),
            ),
            sequences: Sequences::default(),
            held: Vec::new(),
            line: Vec::new(),
            message: Vec::new(),
            rendered: Vec::new(),
        }
    }

    /// A file, a directory (recursively, in name order, hidden entries skipped) or `-`.
    /// Unreadable paths are reported and counted; only output errors are returned.
    pub fn decode_path(&mut self, path: &Path) -> io::Result<()> {
        if path == Path::new("-") {
            let stdin = io::stdin().lock();
            return self.decode_stream("<stdin>", BufReader::with_capacity(256 * 1024, stdin));
        }
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(e) => return self.unreadable(path, &e),
        };
        if metadata.is_dir() {
            let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
                Ok(entries) => entries
                    .filter_map(Result::ok)
                    .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
                    // Symlinked directories are not followed: a link to a parent would loop.
                    .filter(|entry| {
                        !entry.file_type().is_ok_and(|t| t.is_symlink()) || entry.path().is_file()
                    })
                    .map(|entry| entry.path())
                    .collect(),
                Err(e) => return self.unreadable(path, &e),
            };
            entries.sort();
            for entry in entries {
                self.decode_path(&entry)?;
            }
            return Ok(());
        }
        let name = path.display().to_string();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains(AWS_TEST_FILE))
        {
            tracing::debug!("skipping AWS's test file {name}");
            return Ok(());
        }
        match File::open(path) {
            Ok(file) => self.decode_stream(&name, BufReader::with_capacity(256 * 1024, file)),
            Err(e) => self.unreadable(path, &e),
        }
    }

    fn unreadable(&mut self, path: &Path, error: &io::Error) -> io::Result<()> {
        tracing::error!("cannot read {}: {error}", path.display());
        self.counts.unreadable += 1;
        Ok(())
    }

    /// One input, gzip-compressed or not (decided by its first bytes, not its name).
    pub fn decode_stream<R: BufRead>(&mut self, source: &str, mut input: R) -> io::Result<()> {
        self.counts.files += 1;
        let is_gzip = match input.fill_buf() {
            Ok(head) => head.starts_with(&[0x1f, 0x8b]),
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
        loop {
            line.clear();
            let read = read_bounded_line(&mut input, &mut line, MAX_LINE_BYTES);
            let too_long = match read.map_err(Failure::Input)? {
                None => break,
                Some(too_long) => too_long,
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

    fn decode_line(&mut self, source: &str, number: u64, line: &[u8]) -> io::Result<()> {
        let entry = match access_log::parse_entry(line) {
            Ok(entry) => entry,
            Err(e) => {
                self.malformed(source, number, &e.to_string());
                return Ok(());
            }
        };
        let url = entry.raw_url();
        let (path, query) = split_url(&url);
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
        if let Some(sequence) = parsed.fields.sequence {
            self.sequences.saw(sequence.sender, sequence.number);
        }
        let mut message = std::mem::take(&mut self.message);
        let decoded = percent_decode_strict(parsed.message, &mut message);
        let written = if decoded {
            self.accept(source, number, &entry, &parsed.fields, &message)
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
        entry: &Entry<'_>,
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
            return self.emit(source, number, entry, fields, piece);
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
                self.emit(source, number, entry, fields, &whole)
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
        entry: &Entry<'_>,
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
            entry,
            source,
            fields,
            message,
        };
        let mut rendered = std::mem::take(&mut self.rendered);
        rendered.clear();
        self.render(&found, &mut rendered);
        if self.sort {
            self.held
                .push((entry.time.to_vec(), self.counts.messages, rendered));
            Ok(())
        } else {
            let written = self.out.write_all(&rendered);
            self.rendered = rendered;
            written
        }
    }

    fn render(&self, found: &Found<'_>, out: &mut Vec<u8>) {
        if self.json {
            let entry = found.entry;
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            let status = std::str::from_utf8(entry.status)
                .ok()
                .and_then(|s| s.parse::<u16>().ok());
            let mut object = serde_json::json!({
                "time": text(entry.time),
                "load_balancer": text(entry.balancer),
                "client": text(entry.client),
                "status": status,
                "file": found.source,
                "message": text(found.message),
            });
            let fields = found.fields;
            if let Some(fields_object) = object.as_object_mut() {
                if let Some(id) = fields.id {
                    fields_object.insert("id".into(), id.into());
                }
                if let Some(sequence) = fields.sequence {
                    fields_object.insert("sender".into(), sequence.sender.into());
                    fields_object.insert("sequence".into(), sequence.number.into());
                }
                if let Some(fragment) = fields.fragment {
                    fields_object.insert("fragments".into(), fragment.count.into());
                }
            }
            // Serialising a json! value to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &object);
        } else {
            out.extend_from_slice(found.message);
        }
        out.push(b'\n');
    }

    fn malformed(&mut self, source: &str, number: u64, reason: &str) {
        self.counts.malformed += 1;
        if self.counts.malformed <= REPORTED_EACH {
            tracing::warn!("{source}:{number}: malformed access-log line: {reason}");
        } else if self.counts.malformed == REPORTED_EACH + 1 {
            tracing::warn!("more malformed lines: only counted from now on");
        }
    }

    /// Reports what never completed and the sequence gaps, writes what `--sort` held back,
    /// and flushes.
    pub fn finish(&mut self) -> io::Result<()> {
        for incomplete in self.fragments.finish() {
            self.incomplete(&incomplete, "never completed");
        }
        for (reported, gaps) in self.sequences.gaps().into_iter().enumerate() {
            self.counts.missing += gaps.missing;
            if reported as u64 >= REPORTED_EACH {
                continue;
            }
            let ranges: Vec<String> = gaps
                .ranges
                .iter()
                .map(|&(from, to)| {
                    if from == to {
                        from.to_string()
                    } else {
                        format!("{from}-{to}")
                    }
                })
                .collect();
            tracing::warn!(
                "sender {}: {} messages missing, sequence numbers {}{}",
                gaps.sender,
                gaps.missing,
                ranges.join(", "),
                if listed_missing(&gaps.ranges) < gaps.missing {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        let mut held = std::mem::take(&mut self.held);
        held.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        for (_, _, rendered) in held {
            self.out.write_all(&rendered)?;
        }
        self.out.flush()
    }
}

fn listed_missing(ranges: &[(u64, u64)]) -> u64 {
    ranges.iter().map(|(from, to)| to - from + 1).sum()
}

enum Failure {
    Input(io::Error),
    Output(io::Error),
}

/// Reads one LF-terminated line into `line` (without the LF). Returns `None` at end of input
/// and `Some(true)` for a line over `max`, which is skipped, not kept.
fn read_bounded_line<R: BufRead>(
    input: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok(any.then_some(too_long));
        }
        any = true;
        let (chunk, found_end) = match memchr::memchr(b'\n', available) {
            Some(end) => (&available[..end], true),
            None => (available, false),
        };
        if !too_long && line.len() + chunk.len() <= max {
            line.extend_from_slice(chunk);
        } else {
            too_long = true;
            line.clear();
        }
        let used = chunk.len() + usize::from(found_end);
        input.consume(used);
        if found_end {
            return Ok(Some(too_long));
        }
    }
}

/// `scheme://host:port/path?query` (or just `/path?query`) → path and query.
fn split_url(url: &[u8]) -> (&[u8], Option<&[u8]>) {
    let after_scheme = match memchr::memmem::find(url, b"://") {
        Some(at) => &url[at + 3..],
        None => url,
    };
    let target = match memchr::memchr(b'/', after_scheme) {
        Some(at) => &after_scheme[at..],
        None => &after_scheme[after_scheme.len()..],
    };
    match memchr::memchr(b'?', target) {
        Some(at) => (&target[..at], Some(&target[at + 1..])),
        None => (target, None),
    }
}

/// Percent-decodes `query` into `out`, refusing a `%` not followed by two hex digits rather
/// than passing it through: such a query was not written by drifter.
fn percent_decode_strict(query: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut rest = query;
    while let Some(at) = memchr::memchr(b'%', rest) {
        out.extend_from_slice(&rest[..at]);
        let hex = |i: usize| rest.get(at + i).and_then(|&c| access_log::hex_value(c));
        let (Some(high), Some(low)) = (hex(1), hex(2)) else {
            return false;
        };
        out.push(high << 4 | low);
        rest = &rest[at + 3..];
    }
    out.extend_from_slice(rest);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> DecodeArgs {
        DecodeArgs {
            paths: Vec::new(),
            path: None,
            json: false,
            sort: false,
            verify_key: None,
            dedup_window: 1000,
            max_pending_bytes: 1 << 20,
        }
    }

    fn decode(args: &DecodeArgs, input: &[u8]) -> (Vec<u8>, Counts) {
        let mut decoder = Decoder::new(args, None, Vec::new());
        decoder.decode_stream("test", input).expect("decodes");
        decoder.finish().expect("flushes");
        (decoder.out, decoder.counts)
    }

    const DRIFTER: &str = "2015-05-13T23:39:43.945958Z lb 10.0.0.9:2817 - -1 -1 -1 503 0 0 0 \"GET http://h:80/?hello%20w%C3%B6rld HTTP/1.1\" \"drifter-rsyslog/0.1.0\" - -\n";
    const SCANNER: &str = "2015-05-13T23:39:44.000000Z lb 10.0.0.9:2817 - -1 -1 -1 503 0 0 0 \"GET http://h:80/wp-login.php?x=1 HTTP/1.1\" \"Mozilla/5.0\" - -\n";
    const PROBE: &str = "2015-05-13T23:39:42.000000Z lb 10.0.0.9:2817 - -1 -1 -1 503 0 0 0 \"GET http://h:80/ HTTP/1.1\" \"drifter-rsyslog/0.1.0\" - -\n";
    const LF_INSIDE: &str = "2015-05-13T23:39:45.000000Z lb 10.0.0.9:2817 - -1 -1 -1 503 0 0 0 \"GET http://h:80/?a%0Ab HTTP/1.1\" \"drifter-rsyslog/0.1.0\" - -\n";

    #[test]
    fn keeps_drifter_messages_and_counts_the_rest() {
        let input = [DRIFTER, SCANNER, PROBE, LF_INSIDE, "garbage\n"].concat();
        let (out, counts) = decode(&args(), input.as_bytes());
        assert_eq!(out, "hello wörld\n".as_bytes());
        assert_eq!(
            counts,
            Counts {
                files: 1,
                lines: 5,
                messages: 1,
                other: 1,
                without_message: 1,
                malformed: 2,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn selects_by_path_prefix_instead() {
        let mut by_path = args();
        by_path.path = Some("/app".into());
        let other_agent = DRIFTER
            .replace("h:80/?", "h:80/app?")
            .replace("drifter-rsyslog/0.1.0", "curl/8.0");
        let input = [DRIFTER, SCANNER, &other_agent].concat();
        let (out, counts) = decode(&by_path, input.as_bytes());
        assert_eq!(out, "hello wörld\n".as_bytes());
        assert_eq!(counts.other, 2);
        by_path.path = Some("/wp-".into());
        let (out, counts) = decode(&by_path, SCANNER.as_bytes());
        assert!(out.is_empty(), "`x=1` is not a query drifter writes");
        assert_eq!(counts.malformed, 1);
    }

    #[test]
    fn reads_gzip_by_content_and_sorts_by_time() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let later = DRIFTER
            .replace("43.945958Z", "59.000000Z")
            .replace("hello", "later");
        gz.write_all(later.as_bytes()).expect("compress");
        gz.write_all(DRIFTER.as_bytes()).expect("compress");
        let compressed = gz.finish().expect("compress");
        let mut sorted = args();
        sorted.sort = true;
        let (out, _) = decode(&sorted, &compressed);
        assert_eq!(out, "hello wörld\nlater wörld\n".as_bytes());
    }

    #[test]
    fn json_lines_carry_the_metadata() {
        let mut json = args();
        json.json = true;
        let (out, _) = decode(&json, DRIFTER.as_bytes());
        let value: serde_json::Value = serde_json::from_slice(&out).expect("one JSON object");
        assert_eq!(value["message"], "hello wörld");
        assert_eq!(value["status"], 503);
        assert_eq!(value["client"], "10.0.0.9:2817");
        assert_eq!(value["time"], "2015-05-13T23:39:43.945958Z");
        assert_eq!(value["file"], "test");
    }

    #[test]
    fn over_long_lines_are_skipped_unbuffered() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.push(b'\n');
        input.extend_from_slice(DRIFTER.as_bytes());
        let (out, counts) = decode(&args(), &input);
        assert_eq!(out, "hello wörld\n".as_bytes());
        assert_eq!(counts.malformed, 1);
    }

    #[test]
    fn directories_are_walked_without_following_symlinked_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a.log"), DRIFTER).expect("write");
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).expect("symlink");
        std::os::unix::fs::symlink(dir.path().join("a.log"), dir.path().join("b.log"))
            .expect("symlink");
        let mut decoder = Decoder::new(&args(), None, Vec::new());
        decoder.decode_path(dir.path()).expect("decodes");
        assert_eq!(
            decoder.counts.files, 2,
            "a.log and the file link, not the loop"
        );
        assert_eq!(decoder.counts.messages, 2);
    }

    #[test]
    fn strict_percent_decoding() {
        let mut out = Vec::new();
        assert!(percent_decode_strict(b"a%41%c3%A9z", &mut out));
        assert_eq!(out, "aAéz".as_bytes());
        for bad in [&b"%"[..], b"%4", b"%zz", b"a%4g"] {
            assert!(!percent_decode_strict(bad, &mut out), "{bad:?}");
        }
    }
}
