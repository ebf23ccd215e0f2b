//! What a line becomes before it is sent: its message text, id, sequence number, and the cut
//! into fragments when it does not fit in one request.
//!
//! Ids (`--ids`) must stay the same when rsyslog sends a message again and differ between two
//! events whose text is identical, so they come from the message, not from this process:
//!
//! - `prefix`: the line is `<id> <message>`, written by an rsyslog template from the `uuid`
//!   property, which rsyslog keeps with the message across retries and, with a disk queue,
//!   across restarts. A line without a valid id falls back to `content`, with a warning.
//! - `content`: the id is a hash of the whole line (128 bits of SHA-256). Re-sends keep it;
//!   two events collapse into one only if their lines are byte-identical, timestamp included,
//!   so use a template with sub-second timestamps (`RSYSLOG_FileFormat` has microseconds).
//!
//! A sequence number (`--sequence`) is this process's own counter, under a random sender name,
//! so `decode` can tell which messages never reached the logs. A message handed back to rsyslog
//! gives its number back, and the next message read takes it, so a retry leaves no gap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::wire::{self, BudgetError, Fields, Fragment, Pieces, Sequence, Split, TargetFormat};

/// Where message ids come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IdMode {
    /// The line starts with the id and one space (rsyslog: `%uuid% %msg%`).
    Prefix,
    /// A hash of the whole line.
    Content,
}

/// Hex digits of the random sender name: 48 bits, so ten thousand sender processes share a
/// name with a chance of about 2 in 10 million.
const SENDER_DIGITS: usize = 12;
/// Hex digits of a `content` id: 128 bits of SHA-256.
const CONTENT_ID_DIGITS: usize = 32;
/// Lines without a usable id reported one by one; the rest are only counted.
const REPORTED_FALLBACKS: u64 = 10;

/// One line on its way: what was read, and what goes on the wire.
#[derive(Debug)]
pub struct Outgoing {
    /// The line as read: what the dead-letter file and rsyslog get back.
    pub line: Vec<u8>,
    /// The message is `line[text_start..]` (after a `prefix` id).
    text_start: usize,
    pub id: Option<String>,
    pub sequence: Option<u64>,
    /// Set when the message goes in fragments.
    pub split: Option<Split>,
}

impl Outgoing {
    pub fn text(&self) -> &[u8] {
        &self.line[self.text_start..]
    }

    pub fn fragment_count(&self) -> u64 {
        self.split.map_or(1, |split| split.count)
    }
}

/// Gives out sequence numbers from 1; numbers handed back are given out again first.
#[derive(Debug, Default)]
struct Sequencer {
    state: Mutex<SequencerState>,
}

#[derive(Debug, Default)]
struct SequencerState {
    last: u64,
    returned: BinaryHeap<Reverse<u64>>,
}

impl Sequencer {
    fn next(&self) -> u64 {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match state.returned.pop() {
            Some(Reverse(number)) => number,
            None => {
                state.last += 1;
                state.last
            }
        }
    }

    fn give_back(&self, number: u64) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.returned.push(Reverse(number));
    }
}

/// Turns lines into [`Outgoing`] messages and those into request targets.
#[derive(Debug)]
pub struct Labeler {
    format: TargetFormat,
    ids: Option<IdMode>,
    sequencer: Option<Sequencer>,
    sender: String,
    /// Ids made up for fragmented messages when `--ids` is off.
    made_up: AtomicU64,
    fallbacks: AtomicU64,
}

impl Labeler {
    /// Fails if a message of `max_line_bytes` could not be sent within the budget.
    pub fn new(
        format: TargetFormat,
        ids: Option<IdMode>,
        sequence: bool,
        max_line_bytes: u64,
    ) -> Result<Self, BudgetError> {
        let labeler = Labeler {
            format,
            ids,
            sequencer: sequence.then(Sequencer::default),
            sender: crate::hex::random(SENDER_DIGITS),
            made_up: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        };
        // A made-up id (`<sender>-<counter>`) when the line brings none.
        let longest_id_len = match ids {
            Some(IdMode::Prefix) => wire::MAX_ID_BYTES,
            Some(IdMode::Content) => CONTENT_ID_DIGITS,
            None => SENDER_DIGITS + 1 + u64::MAX.to_string().len(),
        };
        let longest_id = "x".repeat(longest_id_len);
        let longest = Fields {
            id: Some(&longest_id),
            sequence: sequence.then_some(Sequence {
                sender: &labeler.sender,
                number: u64::MAX,
            }),
            fragment: None,
        };
        labeler.format.check_budget(max_line_bytes, &longest)?;
        Ok(labeler)
    }

    pub fn format(&self) -> &TargetFormat {
        &self.format
    }

    /// The message a line carries, labelled and cut to fit; `None` when it carries no text
    /// (a `prefix` line that is only an id).
    pub fn prepare(&self, line_number: u64, line: Vec<u8>) -> Option<Outgoing> {
        let (id, text_start) = match self.ids {
            None => (None, 0),
            Some(IdMode::Content) => (Some(content_id(&line)), 0),
            Some(IdMode::Prefix) => match split_prefix_id(&line) {
                Some((id, text_start)) => (Some(id), text_start),
                None => {
                    self.report_fallback(line_number);
                    (Some(content_id(&line)), 0)
                }
            },
        };
        if text_start == line.len() {
            return None;
        }
        let mut outgoing = Outgoing {
            line,
            text_start,
            id,
            sequence: self.sequencer.as_ref().map(Sequencer::next),
            split: None,
        };
        let encoded_len = wire::encoded_len(outgoing.text());
        if !self.format.fits(encoded_len, &self.fields(&outgoing, None)) {
            if outgoing.id.is_none() {
                let n = self.made_up.fetch_add(1, Ordering::Relaxed) + 1;
                outgoing.id = Some(format!("{}-{n}", self.sender));
            }
            // Labeler::new checked that the longest line fits in fragments.
            outgoing.split = self
                .format
                .split(outgoing.text(), encoded_len, &self.fields(&outgoing, None))
                .ok();
        }
        Some(outgoing)
    }

    /// A message handed back undelivered gives its sequence number back.
    pub fn give_back(&self, outgoing: &Outgoing) {
        if let (Some(sequencer), Some(number)) = (&self.sequencer, outgoing.sequence) {
            sequencer.give_back(number);
        }
    }

    fn fields<'a>(&'a self, outgoing: &'a Outgoing, fragment: Option<Fragment>) -> Fields<'a> {
        Fields {
            id: outgoing.id.as_deref(),
            sequence: outgoing.sequence.map(|number| Sequence {
                sender: &self.sender,
                number,
            }),
            fragment,
        }
    }

    /// The request targets for a message, one per fragment, built as they are asked for.
    pub fn targets<'a>(&'a self, outgoing: &'a Outgoing) -> impl Iterator<Item = String> + 'a {
        let text = outgoing.text();
        let pieces = match outgoing.split {
            Some(split) => split.pieces(text),
            None => Pieces::whole(text),
        };
        let count = outgoing.split.map(|split| split.count);
        pieces.enumerate().map(move |(i, piece)| {
            let fragment = count.map(|count| Fragment {
                index: i as u64 + 1,
                count,
            });
            self.format.target(piece, &self.fields(outgoing, fragment))
        })
    }

    fn report_fallback(&self, line_number: u64) {
        let seen = self.fallbacks.fetch_add(1, Ordering::Relaxed) + 1;
        if seen <= REPORTED_FALLBACKS {
            tracing::warn!(
                line = line_number,
                "--ids prefix: the line does not start with an id (1-64 of A-Z a-z 0-9 - _ . and a space); its id is a hash of the line"
            );
        } else if seen == REPORTED_FALLBACKS + 1 {
            tracing::warn!("more lines without an id: only counted from now on");
        }
    }
}

/// `<id> <text>` → the id and where the text starts.
fn split_prefix_id(line: &[u8]) -> Option<(String, usize)> {
    let space = memchr::memchr(b' ', &line[..line.len().min(wire::MAX_ID_BYTES + 1)])?;
    let id = &line[..space];
    if !wire::is_valid_id(id) {
        return None;
    }
    Some((String::from_utf8_lossy(id).into_owned(), space + 1))
}

fn content_id(line: &[u8]) -> String {
    let digest = Sha256::digest(line);
    let mut id = String::with_capacity(CONTENT_ID_DIGITS);
    crate::hex::push(&mut id, &digest[..CONTENT_ID_DIGITS / 2]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labeler(ids: Option<IdMode>, sequence: bool, budget: usize) -> Labeler {
        Labeler::new(TargetFormat::new("/", budget, None), ids, sequence, 1 << 20)
            .expect("budget is enough")
    }

    #[test]
    fn compatible_default_has_no_extension() {
        let labeler = labeler(None, false, 8192);
        let outgoing = labeler.prepare(1, b"hello world".to_vec()).expect("text");
        let targets: Vec<String> = labeler.targets(&outgoing).collect();
        assert_eq!(targets, ["/?hello%20world"]);
    }

    #[test]
    fn prefix_ids_are_taken_off_the_line() {
        let labeler = labeler(Some(IdMode::Prefix), false, 8192);
        let outgoing = labeler
            .prepare(1, b"9F3A2B connection reset".to_vec())
            .expect("text");
        assert_eq!(outgoing.id.as_deref(), Some("9F3A2B"));
        assert_eq!(outgoing.text(), b"connection reset");
        let targets: Vec<String> = labeler.targets(&outgoing).collect();
        assert_eq!(targets, ["/?connection%20reset&i=9F3A2B"]);
        assert!(labeler.prepare(2, b"9F3A2B ".to_vec()).is_none());
        let fallback = labeler.prepare(3, b"no:id here".to_vec()).expect("text");
        assert_eq!(fallback.text(), b"no:id here");
        assert_eq!(fallback.id, Some(content_id(b"no:id here")));
    }

    #[test]
    fn content_ids_follow_the_bytes() {
        let labeler = labeler(Some(IdMode::Content), false, 8192);
        let first = labeler.prepare(1, b"same".to_vec()).expect("text");
        let again = labeler.prepare(2, b"same".to_vec()).expect("text");
        let other = labeler.prepare(3, b"other".to_vec()).expect("text");
        assert_eq!(first.id, again.id);
        assert_ne!(first.id, other.id);
        assert_eq!(first.id.as_deref().map(str::len), Some(32));
    }

    #[test]
    fn sequence_numbers_given_back_are_reused_first() {
        let labeler = labeler(None, true, 8192);
        let numbers: Vec<Option<u64>> = (0..3)
            .map(|i| labeler.prepare(i, b"m".to_vec()).and_then(|o| o.sequence))
            .collect();
        assert_eq!(numbers, [Some(1), Some(2), Some(3)]);
        let second = labeler.prepare(4, b"m".to_vec()).expect("text");
        assert_eq!(second.sequence, Some(4));
        labeler.give_back(&second);
        assert_eq!(
            labeler.prepare(5, b"m".to_vec()).and_then(|o| o.sequence),
            Some(4)
        );
        assert_eq!(
            labeler.prepare(6, b"m".to_vec()).and_then(|o| o.sequence),
            Some(5)
        );
    }

    #[test]
    fn long_messages_get_a_made_up_id_and_fragments() {
        let labeler = labeler(None, false, 80);
        let outgoing = labeler.prepare(1, vec![b'a'; 1000]).expect("text");
        let id = outgoing.id.clone().expect("made-up id");
        assert!(id.starts_with(&labeler.sender));
        let targets: Vec<String> = labeler.targets(&outgoing).collect();
        assert_eq!(targets.len() as u64, outgoing.fragment_count());
        assert!(targets.len() > 10);
        for (i, target) in targets.iter().enumerate() {
            assert!(target.len() <= 80);
            assert!(target.ends_with(&format!("&i={id}&f={}.{}", i + 1, targets.len())));
        }
    }
}
