//! The decoder over streams of access-log lines (`decode::Decoder`, `decode_stream`): what
//! `send` puts on the wire, mixed with arbitrary lines, spread over files of both formats,
//! plain or gzip, copied and shuffled; fragments, ids, sequence numbers, signatures, and the
//! reassembly limits (`--dedup-window`, `--max-pending-bytes`).
//!
//! The input is lines. The first holds the options, read with `arbitrary`. A line starting
//! with `>` is a message to send (the text after one to three `>`, that many copies of each of
//! its requests reach the logs when it has an id, as re-sends do): it is labelled, cut and
//! signed by send's own `Labeler` and logged as the stand-in logs it. Any other line is noise,
//! logged as it is (the seeds hold the test data's lines).
//!
//! Properties:
//! - nothing decoded was not encoded: every message printed is non-empty and is the
//!   percent-decoded message part of one line's query, or several joined (fragments);
//! - the counts add up: every non-empty line is counted, each printed message once, and no
//!   line counts as more than one of message, other client, without a message, malformed,
//!   duplicate or forged;
//! - with `--verify-key`, every message printed is one that was sent, and no more often than
//!   its requests reached the logs;
//! - when nothing can interfere (signed, or no noise line is a drifter request with a
//!   message) and the limits are not reached, every message sent comes out exactly once, and
//!   none is reported incomplete or missing.

#![no_main]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write as _;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use clap::Parser as _;
use drifter_rsyslog::access_log::{self, Balancer, Format, Request};
use drifter_rsyslog::cli::{Cli, Command};
use drifter_rsyslog::decode::{Config, Decoder, Range};
use drifter_rsyslog::send::outgoing::{IdMode, Labeler};
use drifter_rsyslog::wire::{self, Signer, TargetFormat};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz key: never in the seed corpus";
const PATH: &str = "/p";

#[derive(Debug, Arbitrary)]
struct Options {
    signed: bool,
    ids: u8,
    sequence: bool,
    budget: u16,
    files: u8,
    alb_files: u8,
    gzip_files: u8,
    /// `None`: large enough never to be reached.
    dedup_window: Option<u8>,
    max_pending_bytes: Option<u16>,
    sort: bool,
    select_by_path: bool,
    shuffle: u64,
    seconds: u32,
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let options_line = lines.next().unwrap_or_default();
    let Ok(options) = Options::arbitrary_take_rest(Unstructured::new(options_line)) else {
        return;
    };
    let mut sent = Vec::new();
    let mut noise = Vec::new();
    for line in lines {
        let copies = line.iter().take(3).take_while(|&&b| b == b'>').count();
        match copies {
            0 => noise.push(line),
            _ if line.len() > copies => sent.push((&line[copies..], copies as u8)),
            _ => {}
        }
    }
    check(&options, &sent, &noise, data.len());
});

/// One line of a log file: a request `send` made, or noise.
enum Logged<'a> {
    Sent(String),
    Noise(&'a [u8]),
}

fn check(options: &Options, sent: &[(&[u8], u8)], noise: &[&[u8]], input_len: usize) {
    let signer = options.signed.then(|| Signer::new(KEY));
    let budget = 200 + usize::from(options.budget % 1800);
    let ids = match options.ids % 3 {
        0 => None,
        1 => Some(IdMode::Content),
        _ => Some(IdMode::Prefix),
    };
    let format = TargetFormat::new(PATH, budget, signer.clone());
    let sender = Some(("f0f0f0f0f0f0".to_string(), 0));
    let max_line = input_len as u64 + 64;
    let Ok(labeler) = Labeler::new(format, ids, options.sequence, max_line, sender) else {
        return;
    };

    // What send puts on the wire, and what may come back: per text, how often at most.
    let mut logged = Vec::new();
    let mut expected: Vec<Vec<u8>> = Vec::new();
    let mut allowed: HashMap<Vec<u8>, usize> = HashMap::new();
    for (n, &(text, copies)) in sent.iter().enumerate() {
        let line = match ids {
            Some(IdMode::Prefix) => [format!("ID-{n} ").as_bytes(), text].concat(),
            _ => text.to_vec(),
        };
        let outgoing = labeler
            .prepare(n as u64 + 1, line)
            .expect("a non-empty text is a message");
        assert_eq!(outgoing.text(), text);
        let copies = if outgoing.id.is_some() { copies } else { 1 };
        for target in labeler.targets(&outgoing) {
            assert!(target.len() <= budget);
            for _ in 0..copies {
                logged.push(Logged::Sent(target.clone()));
            }
        }
        // `content` ids merge byte-identical lines by design.
        if ids != Some(IdMode::Content) || !expected.iter().any(|e| e == text) {
            expected.push(text.to_vec());
        }
        *allowed.entry(text.to_vec()).or_default() += usize::from(copies);
    }
    logged.extend(noise.iter().copied().map(Logged::Noise));
    let files = lay_out(options, logged);

    // Decoding.
    let mut args = base_args().clone();
    args.sort = options.sort;
    args.path = options.select_by_path.then(|| PATH.to_string());
    args.dedup_window = options
        .dedup_window
        .map_or(1_000_000, |n| u64::from(n.max(1)));
    args.max_pending_bytes = options.max_pending_bytes.map_or(u64::MAX, u64::from);
    let mut out = Vec::new();
    let mut decoder = Decoder::new(&args, Range::default(), signer, &mut out);
    for (i, file) in files.iter().enumerate() {
        decoder
            .decode_stream(&format!("file-{i}"), &file.bytes[..])
            .expect("writing to a Vec cannot fail");
    }
    decoder.finish().expect("writing to a Vec cannot fail");
    let counts = decoder.counts.clone();
    drop(decoder);
    let printed: Vec<&[u8]> = out
        .strip_suffix(b"\n")
        .map(|all| all.split(|&b| b == b'\n').collect())
        .unwrap_or_default();

    // Nothing decoded was not encoded.
    let lines: Vec<&[u8]> = files.iter().flat_map(|file| file.lines()).collect();
    let pieces = Pieces::of(&lines);
    for message in &printed {
        assert!(!message.is_empty(), "an empty message was printed");
        assert!(pieces.join_to(message), "not from the logs: {message:?}");
    }

    // The counts add up.
    assert_eq!(counts.files, files.len() as u64);
    assert_eq!(counts.lines, lines.len() as u64);
    assert_eq!(counts.messages, printed.len() as u64);
    assert_eq!((counts.outside, counts.unreadable), (0, 0));
    let each = counts.messages
        + counts.other
        + counts.without_message
        + counts.malformed
        + counts.duplicates
        + counts.forged;
    assert!(each <= counts.lines, "{counts:?}");

    // Signed: only what was sent, at most as often as it was logged.
    if options.signed {
        let mut seen: HashMap<&[u8], usize> = HashMap::new();
        for message in &printed {
            *seen.entry(message).or_default() += 1;
        }
        for (message, times) in seen {
            let most = allowed.get(message).copied().unwrap_or(0);
            assert!(
                times <= most,
                "{message:?} printed {times} times, sent {most}"
            );
        }
    }

    // Nothing interferes and no limit is reached: every message exactly once.
    let quiet = options.signed || noise.iter().all(|line| !is_drifter_request(line));
    if quiet && options.dedup_window.is_none() && options.max_pending_bytes.is_none() {
        let mut printed: Vec<Vec<u8>> = printed.iter().map(|m| m.to_vec()).collect();
        printed.sort();
        expected.sort();
        assert_eq!(printed, expected);
        assert_eq!((counts.incomplete, counts.missing), (0, 0));
    }
}

fn base_args() -> &'static Config {
    static ARGS: OnceLock<Config> = OnceLock::new();
    ARGS.get_or_init(
        || match Cli::try_parse_from(["drifter-rsyslog", "decode"]) {
            Ok(Cli {
                command: Command::Decode(args),
                ..
            }) => Config::from(&args),
            other => panic!("`decode` parses to {other:?}"),
        },
    )
}

/// A small deterministic generator: the order and the files come from the input.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

struct File {
    bytes: Vec<u8>,
    plain: Vec<u8>,
}

impl File {
    /// The lines the decoder counts: split at LF, a CR before it dropped, empty ones skipped.
    fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.plain
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .filter(|line| !line.is_empty())
    }
}

/// Shuffles the lines (or not, for a zero seed) into one to four files of either format.
fn lay_out(options: &Options, mut logged: Vec<Logged<'_>>) -> Vec<File> {
    let count = 1 + usize::from(options.files % 4);
    let mut random = XorShift(options.shuffle | 1);
    if options.shuffle != 0 {
        for i in (1..logged.len()).rev() {
            logged.swap(i, random.below(i + 1));
        }
    }
    let mut plain = vec![Vec::new(); count];
    let time = time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(options.seconds.into());
    for item in logged {
        let file = if count > 1 { random.below(count) } else { 0 };
        let format = if options.alb_files >> file & 1 == 1 {
            Format::Alb
        } else {
            Format::Classic
        };
        match item {
            Logged::Sent(target) => log(format, &target, time, &mut plain[file]),
            Logged::Noise(line) => {
                plain[file].extend_from_slice(line);
                plain[file].push(b'\n');
            }
        }
    }
    plain
        .into_iter()
        .enumerate()
        .map(|(i, mut plain)| {
            // A plain file whose first line starts like gzip would be read as gzip: an empty
            // line first (skipped, not counted) keeps it plain.
            if plain.starts_with(&[0x1f, 0x8b]) {
                plain.insert(0, b'\n');
            }
            let gzip = options.gzip_files >> i & 1 == 1;
            let bytes = if gzip { gzip_of(&plain) } else { plain.clone() };
            File { bytes, plain }
        })
        .collect()
}

fn gzip_of(plain: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(plain).expect("writing to a Vec cannot fail");
    gz.finish().expect("writing to a Vec cannot fail")
}

fn log(format: Format, target: &str, time: time::OffsetDateTime, out: &mut Vec<u8>) {
    let balancer = Balancer {
        name: "fuzz".into(),
        id: "0123456789abcdef".into(),
        account: "123456789012".into(),
        region: "us-east-1".into(),
        node_ip: "127.0.0.1".into(),
    };
    let request = Request {
        time,
        client: ([127, 0, 0, 1], 40000).into(),
        method: "GET".into(),
        url: format!("http://127.0.0.1:80{target}").into_bytes(),
        version: "HTTP/1.1".into(),
        user_agent: Some(b"drifter-rsyslog/fuzz".to_vec()),
        status: 503,
        received_bytes: 0,
        sent_bytes: 0,
        tls: None,
        unreadable: false,
    };
    access_log::write_entry(format, &balancer, &request, out);
}

/// The query of a line's URL, if it parses as an access-log entry.
fn query_of(line: &[u8]) -> Option<Vec<u8>> {
    let entry = access_log::parse_entry(line).ok()?;
    let url = entry.raw_url();
    access_log::split_url(&url).1.map(<[u8]>::to_vec)
}

/// Whether a line could bring the decoder a message: a query drifter writes, with text.
fn is_drifter_request(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    query_of(line).is_some_and(|query| {
        wire::parse_query(&query).is_ok_and(|parsed| !parsed.message.is_empty())
    })
}

/// The percent-decoded message parts (before the first `&`) of every line's query: what any
/// message printed must be made of.
struct Pieces {
    set: HashSet<Vec<u8>>,
    lengths: BTreeSet<usize>,
}

impl Pieces {
    fn of(lines: &[&[u8]]) -> Self {
        let mut set = HashSet::new();
        for line in lines {
            let Some(query) = query_of(line) else {
                continue;
            };
            let message = query.split(|&b| b == b'&').next().unwrap_or_default();
            let mut piece = Vec::new();
            if wire::percent_decode_strict(message, &mut piece) && !piece.is_empty() {
                set.insert(piece);
            }
        }
        let lengths = set.iter().map(Vec::len).collect();
        Pieces { set, lengths }
    }

    /// Whether `message` is one or more pieces joined.
    fn join_to(&self, message: &[u8]) -> bool {
        let mut reachable = vec![false; message.len() + 1];
        reachable[0] = true;
        for start in 0..message.len() {
            if !reachable[start] {
                continue;
            }
            for &length in self.lengths.range(..=message.len() - start) {
                if self.set.contains(&message[start..start + length]) {
                    reachable[start + length] = true;
                }
            }
        }
        reachable[message.len()]
    }
}
