//! One sender's held messages, by number, for the reorder buffer ([`super::order`]).
//!
//! A sender's numbers come nearly dense and nearly in order: each request is numbered, and
//! the requests logged together were sent together. So they are held in slots indexed by
//! number, a ring that grows at its end and is released from its start: placing and
//! releasing a message cost the same however many are held, where a sorted map paid its depth
//! in cache misses for each (about a quarter of `decode`'s time with a full buffer). What does
//! not fit the slots goes to a sorted map: a number held twice (sent twice without an id), or
//! one so far from the others that the empty slots between would cost more than the messages
//! (or than the reorder buffer's bound has room for).

use std::collections::{BTreeMap, VecDeque};
use std::io;

/// Slots the ring may span beyond four per message it holds: a few gaps, or a sender's first
/// messages logged out of order, fit; an outlier does not make every later number a slot.
const SLACK: usize = 1024;
/// Slots a ring keeps however few it spans: below, shrinking would only churn.
const SHRUNK_ABOVE: usize = 64;
/// Memory of a map node per text held outside the slots (a sorted map's node of eleven).
const NODE_BYTES: usize = 40;
/// Memory of a map holding anything: its first node.
const MAP_BYTES: usize = 16 + 11 * NODE_BYTES;

struct Held<T> {
    arrival: u64,
    text: T,
}

pub(super) struct Numbered<T> {
    /// Slot `i` holds number `base + i`, if it was logged and is not written yet.
    base: u64,
    slots: VecDeque<Option<Held<T>>>,
    /// Messages in the slots.
    in_slots: usize,
    /// (number, arrival) → text: what the slots do not take.
    others: BTreeMap<(u64, u64), T>,
}

impl<T> Default for Numbered<T> {
    fn default() -> Self {
        Numbered {
            base: 0,
            slots: VecDeque::new(),
            in_slots: 0,
            others: BTreeMap::new(),
        }
    }
}

impl<T> Numbered<T> {
    /// Memory of a slot, held or not.
    pub(super) const SLOT_BYTES: usize = size_of::<Option<Held<T>>>();

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.in_slots == 0 && self.others.is_empty()
    }

    /// Memory held besides the texts' own bytes, as the reorder buffer's bound counts it.
    pub(super) fn footprint(&self) -> usize {
        let map = match self.others.len() {
            0 => 0,
            held => MAP_BYTES + held * NODE_BYTES,
        };
        self.slots.capacity() * Self::SLOT_BYTES + map
    }

    /// Holds `text`; `room` is what the reorder buffer's bound has left, in bytes.
    pub(super) fn insert(&mut self, number: u64, arrival: u64, text: T, room: usize) {
        let held = Held { arrival, text };
        if self.slots.is_empty() {
            self.base = number;
            self.slots.push_back(Some(held));
            self.in_slots = 1;
            return;
        }
        let span = |len: u64| usize::try_from(len).unwrap_or(usize::MAX);
        let fits = |len: usize| len <= SLACK + 4 * (self.in_slots + 1);
        // Past a few, empty slots (for a number far ahead of a backlog) cost more than what is
        // held: only within the room, or the bound would write everything held at once.
        let affords =
            |empty: usize| empty <= SLACK || empty.saturating_mul(Self::SLOT_BYTES) <= room;
        if number >= self.base {
            let index = span(number - self.base);
            let len = self.slots.len();
            match self.slots.get_mut(index) {
                Some(slot @ None) => *slot = Some(held),
                Some(Some(_)) => return self.hold_apart(number, held),
                None if fits(index.saturating_add(1)) && affords(index - len) => {
                    // One growth for the empty slots and the message, not one for each.
                    self.slots.reserve(index + 1 - len);
                    self.slots.resize_with(index, || None);
                    self.slots.push_back(Some(held));
                }
                None => return self.hold_apart(number, held),
            }
        } else {
            // Below the first slot: a sender's earlier message logged after its later ones.
            let before = span(self.base - number);
            if !fits(self.slots.len().saturating_add(before)) || !affords(before - 1) {
                return self.hold_apart(number, held);
            }
            for _ in 1..before {
                self.slots.push_front(None);
            }
            self.slots.push_front(Some(held));
            self.base = number;
        }
        self.in_slots += 1;
    }

    fn hold_apart(&mut self, number: u64, held: Held<T>) {
        self.others.insert((number, held.arrival), held.text);
    }

    /// Whether the message sent as `number` that arrived as `arrival` is still held.
    pub(super) fn holds(&self, number: u64, arrival: u64) -> bool {
        let in_slot = number
            .checked_sub(self.base)
            .and_then(|index| self.slots.get(usize::try_from(index).ok()?))
            .is_some_and(|slot| slot.as_ref().is_some_and(|held| held.arrival == arrival));
        in_slot || self.others.contains_key(&(number, arrival))
    }

    /// Writes every message held up to `number`, in order of number then arrival.
    pub(super) fn release_through(
        &mut self,
        number: u64,
        write: &mut impl FnMut(T) -> io::Result<()>,
    ) -> io::Result<()> {
        while self.in_slots > 0 && self.base <= number {
            let slot_key = self
                .slots
                .front()
                .and_then(|slot| slot.as_ref())
                .map(|held| (self.base, held.arrival));
            if let Some(other) = self.others.first_entry()
                && slot_key.is_none_or(|key| *other.key() < key)
                && other.key().0 <= self.base
            {
                write(other.remove())?;
                continue;
            }
            let Some(slot) = self.slots.pop_front() else {
                break;
            };
            // No slot follows u64::MAX's (the ring ends with a held message): it stays put.
            self.base = self.base.saturating_add(1);
            if let Some(held) = slot {
                self.in_slots -= 1;
                write(held.text)?;
            }
        }
        if self.in_slots == 0 {
            // Only gaps left (numbers never logged, or written already): freed, so that an
            // idle sender holds no memory.
            self.slots = VecDeque::new();
        } else if self.slots.capacity() > SHRUNK_ABOVE
            && self.slots.capacity() / 4 > self.slots.len()
        {
            // A burst written: its ring would stay, counted against the bound, as long as the
            // sender holds anything (a steady sender always does). Shrunk to twice what is
            // left once under a quarter full, the copy costs less than the writes before it.
            self.slots.shrink_to(2 * self.slots.len());
        }
        while let Some(other) = self.others.first_entry() {
            if other.key().0 > number {
                break;
            }
            write(other.remove())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn released(held: &mut Numbered<String>, number: u64) -> Vec<String> {
        let mut written = Vec::new();
        held.release_through(number, &mut |text| {
            written.push(text);
            Ok(())
        })
        .expect("written");
        written
    }

    fn insert(held: &mut Numbered<String>, number: u64, arrival: u64) {
        held.insert(number, arrival, format!("{number}.{arrival}"), usize::MAX);
    }

    #[test]
    fn numbers_out_of_order_and_twice_come_out_by_number_then_arrival() {
        let mut held = Numbered::default();
        for (arrival, number) in [5, 3, 4, 3, 1, 9, 5, 2].into_iter().enumerate() {
            insert(&mut held, number, arrival as u64);
        }
        assert!(held.holds(3, 1) && held.holds(3, 3) && held.holds(1, 4));
        assert!(!held.holds(3, 2) && !held.holds(6, 0));
        assert_eq!(released(&mut held, 4), ["1.4", "2.7", "3.1", "3.3", "4.2"]);
        assert!(!held.holds(3, 1));
        assert_eq!(released(&mut held, 8), ["5.0", "5.6"]);
        assert_eq!(released(&mut held, u64::MAX), ["9.5"]);
        assert!(held.is_empty());
        assert_eq!(held.footprint(), 0, "an empty sender holds no memory");
    }

    #[test]
    fn a_number_far_from_the_others_is_held_apart_and_costs_no_slots() {
        let mut held = Numbered::default();
        insert(&mut held, 10, 0);
        insert(&mut held, 10_000_000, 1);
        insert(&mut held, 1, 2);
        assert!(held.footprint() < 64 * 1024, "{}", held.footprint());
        assert_eq!(released(&mut held, 10), ["1.2", "10.0"]);
        assert_eq!(released(&mut held, 9_999_999), Vec::<String>::new());
        assert_eq!(released(&mut held, 10_000_000), ["10000000.1"]);
        assert!(held.is_empty());
    }

    #[test]
    fn a_release_below_the_slots_writes_nothing_and_keeps_them() {
        let mut held = Numbered::default();
        insert(&mut held, 100, 0);
        insert(&mut held, 101, 1);
        assert!(released(&mut held, 99).is_empty());
        assert_eq!(released(&mut held, 100), ["100.0"]);
        assert_eq!(released(&mut held, 200), ["101.1"]);
    }

    #[test]
    fn gaps_are_skipped_and_freed() {
        let mut held = Numbered::default();
        for number in (0..100).step_by(3) {
            insert(&mut held, number, number);
        }
        let expected: Vec<String> = (0..=50)
            .step_by(3)
            .map(|number| format!("{number}.{number}"))
            .collect();
        assert_eq!(released(&mut held, 50), expected);
        assert!(!held.is_empty());
        assert_eq!(released(&mut held, 1000).len(), 17);
        assert_eq!(held.footprint(), 0);
    }

    #[test]
    fn the_highest_numbers_are_released_without_overflow() {
        // The slot after u64::MAX has no number: releasing the last one stepped past it.
        let mut held = Numbered::default();
        insert(&mut held, u64::MAX - 1, 0);
        insert(&mut held, u64::MAX, 1);
        insert(&mut held, u64::MAX, 2);
        insert(&mut held, 0, 3);
        assert_eq!(
            released(&mut held, u64::MAX - 1),
            ["0.3", "18446744073709551614.0"]
        );
        assert_eq!(
            released(&mut held, u64::MAX),
            ["18446744073709551615.1", "18446744073709551615.2"]
        );
        assert!(held.is_empty());
        assert_eq!(held.footprint(), 0);
        insert(&mut held, u64::MAX, 4);
        assert_eq!(released(&mut held, u64::MAX), ["18446744073709551615.4"]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Against a sorted map of (number, arrival), the structure the slots replaced: the
        /// same messages come out, in the same order, whatever the numbers, releases and room.
        #[test]
        fn writes_what_a_sorted_map_would(
            room in 0usize..100_000,
            steps in proptest::collection::vec(
                (proptest::bool::weighted(0.8), 0u64..3000, proptest::bool::weighted(0.05)),
                1..400,
            )
        ) {
            let mut held = Numbered::default();
            let mut model = BTreeMap::new();
            for (arrival, (insert, number, far)) in steps.into_iter().enumerate() {
                let arrival = arrival as u64;
                let number = if far { number * 1_000_000 } else { number };
                if insert {
                    held.insert(number, arrival, format!("{number}.{arrival}"), room);
                    model.insert((number, arrival), format!("{number}.{arrival}"));
                    proptest::prop_assert!(held.holds(number, arrival));
                    continue;
                }
                let expected: Vec<String> = std::iter::from_fn(|| {
                    model.first_entry().filter(|first| first.key().0 <= number).map(|first| first.remove())
                })
                .collect();
                proptest::prop_assert_eq!(released(&mut held, number), expected);
            }
            let rest: Vec<String> = model.into_values().collect();
            proptest::prop_assert_eq!(released(&mut held, u64::MAX), rest);
            proptest::prop_assert_eq!(held.footprint(), 0);
        }
    }
}
