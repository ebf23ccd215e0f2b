//! `decode`'s order: each sender's messages by sequence number (`send --sequence`), the
//! messages without one by request time, senders interleaved by time. Streaming, through a
//! reorder buffer bounded by log time and by bytes, never by holding everything.
//!
//! A message is held until the clock is its window past its log time: the clock is the newest
//! log time read (with `--follow`, also the wall clock after each look, so lines flow when
//! nothing new lands). The inputs come in interval order (see `walk` and `s3`), so what can
//! still come before a message is what the rest of its interval's files hold, from the other
//! load-balancer nodes, plus requests retried or in flight at once: the window covers an
//! interval and its delivery (by default the `--gap-grace` of its format: 10 minutes for ALB,
//! 75 for Classic). Over the byte bound, the earliest message is written early.
//!
//! When a numbered message is due, its sender's held messages with lower numbers go first, in
//! number order. A message that arrives after its place was passed is written at once and
//! counted as late: a number lower than one its sender already had written, or a message
//! without a number that sorts before one already written.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::io;

/// Memory per turn waiting in the heap, counted until it is popped: a turn outlives its
/// message when the message went early with a higher number of its sender.
const TURN_BYTES: usize = 48;
/// Memory per held text beyond its bytes: the map node, the allocation's header.
const TEXT_BYTES: usize = 48;
/// Memory of a sender's map while it holds anything: its first node, of eleven keys and texts.
const MAP_BYTES: usize = 16 + 11 * (16 + 24);
/// Buffers of written texts kept for the next messages (small ones only): holding and
/// writing then allocate nothing per message once the buffer is full.
const SPARE_BUFFERS: usize = 1024;
const SPARE_CAPACITY: usize = 1024;

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

/// A held message's turn: written once the clock reaches `due`, ties by arrival.
struct Turn {
    due: i64,
    arrival: u64,
    what: Waiting,
}

enum Waiting {
    /// A message without a number (or a late one), with its text.
    Alone(Vec<u8>),
    /// A numbered message, its text held by its sender.
    Numbered { sender: usize, number: u64 },
}

/// The turns waiting, earliest first. Most come in the order they are due (log time grows as
/// the files are read): those queue in a ring, cheap and cache-friendly however many are held;
/// only the others go through a heap.
#[derive(Default)]
struct Turns {
    in_order: VecDeque<Turn>,
    out_of_order: BinaryHeap<Turn>,
}

impl Turns {
    fn push(&mut self, turn: Turn) {
        match self.in_order.back() {
            Some(last) if last.due > turn.due => self.out_of_order.push(turn),
            _ => self.in_order.push_back(turn),
        }
    }

    /// Whether the earliest turn is the ring's (else the heap's, if any).
    fn earliest_in_order(&self) -> Option<bool> {
        match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(ring), Some(heap)) => Some(ring >= heap),
            (Some(_), None) => Some(true),
            (None, Some(_)) => Some(false),
            (None, None) => None,
        }
    }

    fn peek_due(&self) -> Option<i64> {
        match self.earliest_in_order()? {
            true => self.in_order.front().map(|turn| turn.due),
            false => self.out_of_order.peek().map(|turn| turn.due),
        }
    }

    fn pop(&mut self) -> Option<Turn> {
        match self.earliest_in_order()? {
            true => self.in_order.pop_front(),
            false => self.out_of_order.pop(),
        }
    }
}

impl PartialEq for Turn {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.arrival) == (other.due, other.arrival)
    }
}

impl Eq for Turn {}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Turn {
    /// Reversed: the heap's top is the earliest turn.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.arrival).cmp(&(self.due, self.arrival))
    }
}

#[derive(Default)]
struct Sender {
    /// (number, arrival) → text: a number sent twice (without an id) is held twice.
    held: BTreeMap<(u64, u64), Vec<u8>>,
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
    turns: Turns,
    names: HashMap<String, usize>,
    /// The last sender looked up: runs of one sender's messages skip the hashing.
    last_sender: Option<(String, usize)>,
    senders: Vec<Sender>,
    spare: Vec<Vec<u8>>,
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
            spare: Vec::new(),
            late: 0,
        }
    }

    /// Holds `text` for its place; a late one is written at the next [`release`](Self::release).
    pub(super) fn hold(&mut self, place: Place<'_>, text: Vec<u8>) {
        self.arrivals += 1;
        let arrival = self.arrivals;
        let due = place
            .time
            .unwrap_or(self.clock)
            .saturating_add(place.window);
        self.bytes += TURN_BYTES + text.capacity() + TEXT_BYTES;
        let Some((name, number)) = place.sequence else {
            if due < self.written_due {
                self.late += 1;
            }
            let what = Waiting::Alone(text);
            self.turns.push(Turn { due, arrival, what });
            return;
        };
        let sender = self.sender(name);
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
        if state.held.is_empty() {
            self.bytes += MAP_BYTES;
        }
        state.held.insert((number, arrival), text);
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

    /// An empty buffer for the next message's text.
    pub(super) fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    fn recycle(spare: &mut Vec<Vec<u8>>, mut text: Vec<u8>) {
        if spare.len() < SPARE_BUFFERS && text.capacity() <= SPARE_CAPACITY {
            text.clear();
            spare.push(text);
        }
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
            if due > self.clock && self.bytes <= self.max_bytes {
                break;
            }
            let Some(turn) = self.turns.pop() else { break };
            self.bytes -= TURN_BYTES;
            self.written_due = self.written_due.max(turn.due);
            match turn.what {
                Waiting::Alone(text) => {
                    self.bytes -= text.capacity() + TEXT_BYTES;
                    write(&text)?;
                    Self::recycle(&mut self.spare, text);
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
        if !state.held.contains_key(&key) {
            return Ok(());
        }
        state.written = state.written.max(Some(key.0));
        while let Some(first) = state.held.first_entry() {
            if first.key().0 > key.0 {
                break;
            }
            let text = first.remove();
            self.bytes -= text.capacity() + TEXT_BYTES;
            write(&text)?;
            Self::recycle(&mut self.spare, text);
        }
        if state.held.is_empty() {
            // An emptied map keeps its node: one per sender ever seen, outside the bound.
            state.held = BTreeMap::new();
            self.bytes -= MAP_BYTES;
        }
        Ok(())
    }

    /// Bytes held, counted as the bound counts them.
    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000;
    const UNREADABLE_MINUTE: i64 = i64::MIN;

    /// A message offered: logged at a minute, with its sender and number if any, its text.
    type Offered<'a> = (i64, Option<(&'a str, u64)>, &'a str);

    /// Holds each (minute, sender and number, text), advancing the clock to its time; returns
    /// what was written as it went, then at the end.
    fn run(
        reorder: &mut Reorder,
        window: i64,
        messages: &[Offered<'_>],
    ) -> (Vec<String>, Vec<String>) {
        let written = std::cell::RefCell::new(Vec::new());
        let mut write = |text: &[u8]| {
            written
                .borrow_mut()
                .push(String::from_utf8_lossy(text).into_owned());
            Ok(())
        };
        for &(minute, sequence, text) in messages {
            let time = (minute != UNREADABLE_MINUTE).then(|| minute * MINUTE);
            let place = Place {
                time,
                window,
                sequence,
            };
            if let Some(time) = time {
                reorder.advance(time);
            }
            reorder.hold(place, text.as_bytes().to_vec());
            reorder.release(&mut write).expect("written");
        }
        let before_end = written.borrow().len();
        reorder.finish(&mut write).expect("written");
        let mut written = written.into_inner();
        let at_end = written.split_off(before_end);
        (written, at_end)
    }

    #[test]
    fn each_sender_in_number_order_the_rest_by_time() {
        let mut reorder = Reorder::new(1 << 20);
        let (early, late) = run(
            &mut reorder,
            10 * MINUTE,
            &[
                (0, Some(("a", 2)), "a2"),
                (0, Some(("b", 7)), "b7"),
                (1, None, "x at 1"),
                (0, Some(("a", 1)), "a1"),
                (0, None, "x at 0"),
                (2, Some(("a", 3)), "a3"),
                (1, Some(("b", 6)), "b6"),
            ],
        );
        assert!(early.is_empty(), "all within the window");
        assert_eq!(late, ["a1", "a2", "b6", "b7", "x at 0", "x at 1", "a3"]);
        assert_eq!(reorder.late, 0);
        assert_eq!(reorder.held_bytes(), 0);
    }

    #[test]
    fn the_window_passes_then_what_comes_after_its_place_is_late() {
        let mut reorder = Reorder::new(1 << 20);
        let (as_it_went, at_end) = run(
            &mut reorder,
            MINUTE,
            &[
                (0, Some(("a", 1)), "a1"),
                (0, Some(("a", 3)), "a3"),
                (0, None, "x at 0"),
                // The clock passes 1 minute: a1, a3 and x are due.
                (2, Some(("a", 4)), "a4"),
                // a2 comes after a3 was written; y sorts before x.
                (0, Some(("a", 2)), "a2"),
                (-1, None, "y at -1"),
                // A number higher than any written, behind the clock: due, after a4.
                (0, Some(("a", 5)), "a5"),
            ],
        );
        assert_eq!(
            as_it_went,
            ["a1", "a3", "x at 0", "a2", "y at -1", "a4", "a5"]
        );
        assert!(at_end.is_empty());
        assert_eq!(reorder.late, 2);
    }

    #[test]
    fn a_time_that_cannot_be_read_takes_the_clocks_and_pulls_no_number_ahead() {
        // Review of issue 25: it was due at once and took a3 out before a2 came, a2 late.
        let mut reorder = Reorder::new(1 << 20);
        let (early, at_end) = run(
            &mut reorder,
            10 * MINUTE,
            &[
                (0, Some(("a", 1)), "a1"),
                (2, Some(("a", 3)), "a3"),
                (UNREADABLE_MINUTE, Some(("a", 4)), "a4"),
                (1, Some(("a", 2)), "a2"),
            ],
        );
        assert!(early.is_empty(), "all within the window");
        assert_eq!(at_end, ["a1", "a2", "a3", "a4"]);
        assert_eq!(reorder.late, 0);
    }

    #[test]
    fn over_the_byte_bound_the_earliest_go_first() {
        let text = "m".repeat(100);
        let per_message = text.len() + TURN_BYTES + TEXT_BYTES;
        let mut reorder = Reorder::new(3 * per_message + MAP_BYTES);
        let messages: Vec<Offered<'_>> = (0..10)
            .map(|minute| (minute, Some(("a", minute as u64)), text.as_str()))
            .collect();
        let written = std::cell::Cell::new(0);
        let mut write = |_: &[u8]| {
            written.set(written.get() + 1);
            Ok(())
        };
        for &(minute, sequence, text) in &messages {
            let place = Place {
                time: Some(minute * MINUTE),
                window: 60 * MINUTE,
                sequence,
            };
            reorder.advance(minute * MINUTE);
            reorder.hold(place, text.as_bytes().to_vec());
            reorder.release(&mut write).expect("written");
            assert!(
                reorder.held_bytes() <= 3 * per_message + MAP_BYTES,
                "bounded"
            );
        }
        assert_eq!(written.get(), 7, "the window alone would hold all ten");
        // A number below the ones written early is late.
        reorder.hold(
            Place {
                time: Some(0),
                window: 60 * MINUTE,
                sequence: Some(("a", 0)),
            },
            b"a0".to_vec(),
        );
        reorder.finish(&mut write).expect("written");
        assert_eq!((written.get(), reorder.late), (11, 1));
    }

    #[test]
    fn each_sender_holding_anything_counts_its_map() {
        // Review of issue 25: a map's node (about 450 bytes) was not counted: many senders
        // holding a message each took several times the bound.
        let per_sender = 1 + TURN_BYTES + TEXT_BYTES + MAP_BYTES;
        let mut reorder = Reorder::new(10 * per_sender);
        let names: Vec<String> = (0..100).map(|sender| format!("s{sender}")).collect();
        let messages: Vec<Offered<'_>> = names
            .iter()
            .map(|name| (0, Some((name.as_str(), 1)), "m"))
            .collect();
        let (as_it_went, _) = run(&mut reorder, MINUTE, &messages);
        assert_eq!(as_it_went.len(), 90, "ten senders' messages held at most");
        assert_eq!(reorder.held_bytes(), 0);
    }

    #[test]
    fn a_number_sent_twice_is_held_twice_and_a_late_copy_is_no_late_message() {
        let mut reorder = Reorder::new(1 << 20);
        let (as_it_went, at_end) = run(
            &mut reorder,
            MINUTE,
            &[
                (0, Some(("a", 1)), "a1"),
                (0, Some(("a", 1)), "a1 again"),
                (5, Some(("a", 2)), "a2"),
                (5, Some(("a", 1)), "a1 once more"),
            ],
        );
        assert_eq!(as_it_went, ["a1", "a1 again"]);
        assert_eq!(at_end, ["a1 once more", "a2"]);
        assert_eq!(reorder.late, 0);
    }
}
