//! `decode`'s order: each sender's messages by sequence number (`send --sequence`), the
//! messages without one by request time, senders interleaved by time. Streaming, through a
//! reorder buffer bounded by log time and by bytes, never by holding everything.
//!
//! A message is held until the clock is its window past its log time: the clock is the newest
//! log time read (with `--follow`, also the wall clock after each look, so lines flow when
//! nothing new lands). The inputs come in interval order (see `queue`), so what can
//! still come before a message is what the rest of its interval's files hold, from the other
//! load-balancer nodes, plus requests retried or in flight at once: the window covers an
//! interval and its delivery (by default the `--gap-grace` of its format: 10 minutes for ALB,
//! 75 for Classic). Over the byte bound, the earliest message is written early.
//! The texts wait in chunks, in the order read (see `texts`).
//!
//! When a numbered message is due, its sender's held messages with lower numbers go first, in
//! number order. A message that arrives after its place was passed is written at once and
//! counted as late: a number lower than one its sender already had written, or a message
//! without a number that sorts before one already written.

use std::collections::HashMap;
use std::io;

use super::numbered::Numbered;
use super::texts::{Text, Texts};
use super::turns::{Turn, Turns};

/// Memory per turn waiting, counted until it is popped: a turn outlives its
/// message when the message went early with a higher number of its sender.
const TURN_BYTES: usize = 48;

/// Where a message goes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Place<'a> {
    /// Its log time, in microseconds, if it can be read: if not, the clock's (as if it had
    /// just been logged), so that it neither goes out at once nor takes its sender's lower
    /// numbers with it.
    pub time: Option<i64>,
    /// How long it may wait for what comes before it, in microseconds.
    pub window: i64,
    /// Its sender and number, with `send --sequence`.
    pub sequence: Option<(&'a str, u64)>,
}

enum Waiting {
    /// A message without a number (or a late one), with its text.
    Alone(Text),
    /// A numbered message, its text held by its sender.
    Numbered { sender: usize, number: u64 },
}

#[derive(Default)]
struct Sender {
    held: Numbered<Text>,
    /// The highest number written.
    written: Option<u64>,
}

/// The reorder buffer; see the module documentation.
pub(super) struct Reorder {
    max_bytes: usize,
    bytes: usize,
    clock: i64,
    /// The latest turn written: a message without a number due before it is late.
    written_due: i64,
    arrivals: u64,
    turns: Turns<Waiting>,
    names: HashMap<String, usize>,
    /// The last sender looked up: runs of one sender's messages skip the hashing.
    last_sender: Option<(String, usize)>,
    senders: Vec<Sender>,
    texts: Texts,
    /// Messages written out of their place.
    pub late: u64,
}

impl Reorder {
    pub(super) fn new(max_bytes: usize) -> Self {
        Reorder {
            max_bytes,
            bytes: 0,
            clock: i64::MIN,
            written_due: i64::MIN,
            arrivals: 0,
            turns: Turns::default(),
            names: HashMap::new(),
            last_sender: None,
            senders: Vec::new(),
            texts: Texts::new(max_bytes),
            late: 0,
        }
    }

    /// Holds `text` for its place; a late one is written at the next [`release`](Self::release).
    pub(super) fn hold(&mut self, place: Place<'_>, text: &[u8]) {
        self.arrivals += 1;
        let arrival = self.arrivals;
        let due = place
            .time
            .unwrap_or(self.clock)
            .saturating_add(place.window);
        self.bytes += TURN_BYTES;
        let text = self.texts.push(text);
        let Some((name, number)) = place.sequence else {
            if due < self.written_due {
                self.late += 1;
            }
            let what = Waiting::Alone(text);
            self.turns.push(Turn { due, arrival, what });
            return;
        };
        let sender = self.sender(name);
        let room = self.max_bytes.saturating_sub(self.held_bytes());
        let state = &mut self.senders[sender];
        if state.written.is_some_and(|written| number < written) {
            self.late += 1;
            // Out of its sender's order whatever happens now: written at once.
            let what = Waiting::Alone(text);
            self.turns.push(Turn {
                due: i64::MIN,
                arrival,
                what,
            });
            return;
        }
        let before = state.held.footprint();
        state.held.insert(number, arrival, text, room);
        self.bytes = (self.bytes + state.held.footprint()).saturating_sub(before);
        let what = Waiting::Numbered { sender, number };
        self.turns.push(Turn { due, arrival, what });
    }

    fn sender(&mut self, name: &str) -> usize {
        if let Some((last, sender)) = &self.last_sender
            && last == name
        {
            return *sender;
        }
        let sender = match self.names.get(name) {
            Some(&sender) => sender,
            None => {
                self.senders.push(Sender::default());
                self.names.insert(name.to_string(), self.senders.len() - 1);
                self.senders.len() - 1
            }
        };
        self.last_sender = Some((name.to_string(), sender));
        sender
    }

    /// Moves the clock to `now` (it never goes back).
    pub(super) fn advance(&mut self, now: i64) {
        self.clock = self.clock.max(now);
    }

    /// Writes, in order, every message whose turn the clock has reached, and the earliest
    /// ones while over the byte bound.
    pub(super) fn release(
        &mut self,
        write: &mut impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        while let Some(due) = self.turns.peek_due() {
            if due > self.clock && self.held_bytes() <= self.max_bytes {
                break;
            }
            let Some(turn) = self.turns.pop() else { break };
            self.bytes -= TURN_BYTES;
            self.written_due = self.written_due.max(turn.due);
            match turn.what {
                Waiting::Alone(text) => {
                    write(self.texts.get(text))?;
                    self.texts.free(text);
                }
                Waiting::Numbered { sender, number } => {
                    self.release_sender(sender, (number, turn.arrival), write)?;
                }
            }
        }
        Ok(())
    }

    /// Writes everything held, in order: the end of the input.
    pub(super) fn finish(
        &mut self,
        write: &mut impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        self.advance(i64::MAX);
        self.release(write)
    }

    /// A numbered message is due: its sender's held messages up to its number go, in order.
    /// Nothing, if it went already with a higher number of its sender.
    fn release_sender(
        &mut self,
        sender: usize,
        key: (u64, u64),
        write: &mut impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let state = &mut self.senders[sender];
        let (number, arrival) = key;
        if !state.held.holds(number, arrival) {
            return Ok(());
        }
        state.written = state.written.max(Some(number));
        let before = state.held.footprint();
        let texts = &mut self.texts;
        let released = state.held.release_through(number, &mut |text| {
            write(texts.get(text))?;
            texts.free(text);
            Ok(())
        });
        self.bytes = (self.bytes + state.held.footprint()).saturating_sub(before);
        released
    }

    /// Bytes held, counted as the bound counts them: turns and senders' slots, and texts.
    fn held_bytes(&self) -> usize {
        self.bytes + self.texts.held_bytes()
    }
}

#[cfg(test)]
#[path = "order_tests.rs"]
mod tests;
