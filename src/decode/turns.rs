//! The reorder buffer's turns waiting, earliest first (see [`super::order`]).
//!
//! Most turns come in the order they are due: log time grows as a file is read. Some come a
//! few places early (requests in flight together, logged as they ended). And each file of an
//! interval from another load-balancer node starts again from the interval's start: a second
//! sorted run, read after the first. So the turns queue in a few sorted runs (rings), each
//! taking a turn at its end or by a short scan back from it, and the earliest is the least of
//! the runs' fronts: placing and taking a turn cost the same however many are held. Only a turn
//! that fits no run, with every run in use, goes through a heap, whose pops cost the log of
//! all it holds (a file from a second node through it cost a quarter of `decode`'s time).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// How far back from a run's end a turn is placed before it starts a run of its own.
const NEAR: usize = 64;
/// Runs at most: more load-balancer nodes' files than that in one window go through the heap.
const RUNS: usize = 16;

/// A held message's turn: due once the clock reaches `due`, ties by arrival.
pub(super) struct Turn<T> {
    pub due: i64,
    pub arrival: u64,
    pub what: T,
}

impl<T> Turn<T> {
    fn key(&self) -> (i64, u64) {
        (self.due, self.arrival)
    }
}

/// The turns waiting; see the module documentation.
pub(super) struct Turns<T> {
    /// Each sorted by (due, arrival), none empty.
    runs: Vec<VecDeque<Turn<T>>>,
    /// Each run's front key: a front was pushed a window ago, its memory cold, and the
    /// earliest is looked for after each message read: reading the fronts was a seventh of what
    /// the order cost in a profile of a tree of two nodes.
    fronts: Vec<(i64, u64)>,
    out_of_order: BinaryHeap<Latest<T>>,
}

impl<T> Default for Turns<T> {
    fn default() -> Self {
        Turns {
            runs: Vec::new(),
            fronts: Vec::new(),
            out_of_order: BinaryHeap::new(),
        }
    }
}

impl<T> Turns<T> {
    pub(super) fn push(&mut self, turn: Turn<T>) {
        // Ties keep arrival order: this turn arrived last, so it goes after equal ones. It
        // joins the run whose end is latest at or before it, so that runs stay apart.
        let mut fits: Option<(usize, i64)> = None;
        // Else the run whose end is earliest after it, where a short scan may place it.
        let mut nearest: Option<(usize, i64)> = None;
        for (index, run) in self.runs.iter().enumerate() {
            let Some(back) = run.back().map(|last| last.due) else {
                continue;
            };
            if back <= turn.due {
                if fits.is_none_or(|(_, best)| back > best) {
                    fits = Some((index, back));
                }
            } else if nearest.is_none_or(|(_, best)| back < best) {
                nearest = Some((index, back));
            }
        }
        if let Some((index, _)) = fits {
            return self.runs[index].push_back(turn);
        }
        if let Some((index, _)) = nearest {
            let run = &mut self.runs[index];
            let len = run.len();
            let stop = len.saturating_sub(NEAR);
            let mut at = len;
            while at > stop && run[at - 1].due > turn.due {
                at -= 1;
            }
            if at > stop || at == 0 || run[at - 1].due <= turn.due {
                if at == 0 {
                    self.fronts[index] = turn.key();
                }
                return run.insert(at, turn);
            }
        }
        if self.runs.len() < RUNS {
            self.fronts.push(turn.key());
            self.runs.push(VecDeque::from([turn]));
        } else {
            self.out_of_order.push(Latest(turn));
        }
    }

    /// The run whose front is earliest, and that front's key.
    fn earliest_run(&self) -> Option<(usize, (i64, u64))> {
        self.fronts
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|&(_, key)| key)
    }

    /// Where the earliest turn is: `Some(run)`, or `None` for the heap's top.
    fn earliest(&self) -> Option<Option<usize>> {
        let run = self.earliest_run();
        let heap = self.out_of_order.peek().map(|top| top.0.key());
        match (run, heap) {
            (Some((index, key)), Some(top)) if key <= top => Some(Some(index)),
            (Some((index, _)), None) => Some(Some(index)),
            (_, Some(_)) => Some(None),
            (None, None) => None,
        }
    }

    pub(super) fn peek_due(&self) -> Option<i64> {
        match self.earliest()? {
            Some(index) => Some(self.fronts[index].0),
            None => self.out_of_order.peek().map(|top| top.0.due),
        }
    }

    pub(super) fn pop(&mut self) -> Option<Turn<T>> {
        match self.earliest()? {
            Some(index) => {
                let run = &mut self.runs[index];
                let turn = run.pop_front();
                match run.front() {
                    Some(front) => self.fronts[index] = front.key(),
                    None => {
                        self.runs.swap_remove(index);
                        self.fronts.swap_remove(index);
                    }
                }
                turn
            }
            None => self.out_of_order.pop().map(|top| top.0),
        }
    }

    /// Turns that went through the heap and wait there.
    #[cfg(test)]
    pub(super) fn in_heap(&self) -> usize {
        self.out_of_order.len()
    }
}

/// A turn in the heap, ordered so that the earliest is on top.
struct Latest<T>(Turn<T>);

impl<T> PartialEq for Latest<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl<T> Eq for Latest<T> {}

impl<T> PartialOrd for Latest<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Latest<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.key().cmp(&self.0.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(turns: &mut Turns<()>) -> Vec<(i64, u64)> {
        std::iter::from_fn(|| turns.pop().map(|turn| turn.key())).collect()
    }

    fn push_all(turns: &mut Turns<()>, dues: &[i64]) {
        for (arrival, &due) in dues.iter().enumerate() {
            let arrival = arrival as u64;
            turns.push(Turn {
                due,
                arrival,
                what: (),
            });
        }
    }

    fn sorted(dues: &[i64]) -> Vec<(i64, u64)> {
        let mut keys: Vec<(i64, u64)> = dues
            .iter()
            .enumerate()
            .map(|(arrival, &due)| (due, arrival as u64))
            .collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn a_few_places_early_and_far_behind_come_out_in_one_order_without_the_heap() {
        let mut turns = Turns::default();
        // Runs of 8 logged in reverse (requests in flight together), then one far behind.
        let mut dues: Vec<i64> = (0..400).map(|i| (i / 8) * 8 + 7 - i % 8).collect();
        dues.push(-1_000);
        push_all(&mut turns, &dues);
        assert_eq!(turns.runs.len(), 2, "the far one starts a run of its own");
        assert_eq!(turns.in_heap(), 0);
        assert_eq!(drained(&mut turns), sorted(&dues));
    }

    #[test]
    fn a_second_nodes_file_of_the_interval_is_a_run_of_its_own() {
        // Two files of one interval, read one after the other, each in time order, ties too.
        let mut dues: Vec<i64> = (0..1000).map(|i| i * 2).collect();
        dues.extend((0..1000).map(|i| i * 2 + 1));
        dues.extend([500, 500, 1998]);
        let mut turns = Turns::default();
        push_all(&mut turns, &dues);
        assert_eq!(turns.in_heap(), 0);
        assert_eq!(drained(&mut turns), sorted(&dues));
    }

    #[test]
    fn more_runs_than_allowed_go_through_the_heap_in_the_same_order() {
        // Blocks longer than a scan, each far behind the ones before: a run each, then the
        // heap (a block at a run's front would be placed by the scan).
        let block = NEAR as i64 + 1;
        let blocks = RUNS as i64 + 4;
        let dues: Vec<i64> = (0..blocks)
            .flat_map(|k| (0..block).map(move |i| -k * 1_000_000 + i))
            .collect();
        let mut turns = Turns::default();
        push_all(&mut turns, &dues);
        assert_eq!(turns.runs.len(), RUNS);
        assert_eq!(turns.in_heap(), 4 * (NEAR + 1));
        assert_eq!(drained(&mut turns), sorted(&dues));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Whatever the dues, pushes and pops interleaved: always the least (due, arrival).
        #[test]
        fn pops_the_least_due_then_arrival(
            steps in proptest::collection::vec(
                proptest::option::weighted(0.7, (0i64..50, 0i64..2000)),
                1..600,
            )
        ) {
            let mut turns = Turns::default();
            let mut model = std::collections::BTreeSet::new();
            for (arrival, step) in steps.into_iter().enumerate() {
                let arrival = arrival as u64;
                match step {
                    // Mostly growing, with jumps back: several nodes, in flight, far behind.
                    Some((wobble, base)) => {
                        let due = if wobble < 40 { arrival as i64 * 10 - wobble } else { base };
                        turns.push(Turn { due, arrival, what: () });
                        model.insert((due, arrival));
                    }
                    None => {
                        proptest::prop_assert_eq!(turns.peek_due(), model.first().map(|key| key.0));
                        proptest::prop_assert_eq!(turns.pop().map(|turn| turn.key()), model.pop_first());
                    }
                }
            }
            let rest: Vec<(i64, u64)> = model.into_iter().collect();
            proptest::prop_assert_eq!(drained(&mut turns), rest);
        }
    }
}
