//! What `decode` remembers across lines and files: fragments waiting for the rest of their
//! message, and the ids of recent messages (to drop copies sent again). The sequence numbers
//! seen are in [`super::gaps`].
//!
//! Each is bounded: fragments by bytes (the oldest unfinished message is given up first), ids
//! by count (the oldest is forgotten first).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;

use crate::wire::Fragment;

/// The ids of the last `capacity` messages.
pub(super) struct RecentIds {
    capacity: usize,
    known: HashSet<Rc<str>>,
    order: VecDeque<Rc<str>>,
}

impl RecentIds {
    pub(super) fn new(capacity: usize) -> Self {
        RecentIds {
            capacity: capacity.max(1),
            known: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    pub(super) fn contains(&self, id: &str) -> bool {
        self.known.contains(id)
    }

    /// Remembers `id`; false if it was already known.
    pub(super) fn insert(&mut self, id: &str) -> bool {
        if self.known.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.known.remove(&oldest);
        }
        let id: Rc<str> = Rc::from(id);
        self.known.insert(id.clone());
        self.order.push_back(id);
        true
    }
}

/// A message of which some fragments are missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Incomplete {
    pub id: String,
    pub count: u64,
    pub arrived: u64,
    /// The first few missing fragment indexes.
    pub missing: Vec<u64>,
}

const LISTED_MISSING: usize = 10;

struct Partial {
    count: u64,
    pieces: BTreeMap<u64, Vec<u8>>,
    bytes: usize,
    first_arrival: u64,
}

impl Partial {
    fn incomplete(&self, id: &str) -> Incomplete {
        Incomplete {
            id: id.to_string(),
            count: self.count,
            arrived: self.pieces.len() as u64,
            missing: (1..=self.count)
                .filter(|index| !self.pieces.contains_key(index))
                .take(LISTED_MISSING)
                .collect(),
        }
    }
}

/// What adding a fragment did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Added {
    Waiting,
    /// The same fragment arrived before.
    Duplicate,
    /// Its count differs from the other fragments of the same id.
    Inconsistent,
    Complete(Vec<u8>),
}

/// Fragments waiting for the rest of their message, at most `max_bytes` of them.
pub(super) struct Fragments {
    max_bytes: usize,
    bytes: usize,
    arrivals: u64,
    pending: HashMap<String, Partial>,
    given_up: Vec<Incomplete>,
}

impl Fragments {
    pub(super) fn new(max_bytes: usize) -> Self {
        Fragments {
            max_bytes,
            bytes: 0,
            arrivals: 0,
            pending: HashMap::new(),
            given_up: Vec::new(),
        }
    }

    pub(super) fn add(&mut self, id: &str, fragment: Fragment, piece: &[u8]) -> Added {
        self.arrivals += 1;
        if !self.pending.contains_key(id) {
            let partial = Partial {
                count: fragment.count,
                pieces: BTreeMap::new(),
                bytes: 0,
                first_arrival: self.arrivals,
            };
            self.pending.insert(id.to_string(), partial);
        }
        let Some(partial) = self.pending.get_mut(id) else {
            return Added::Waiting;
        };
        if partial.count != fragment.count {
            return Added::Inconsistent;
        }
        if partial.pieces.contains_key(&fragment.index) {
            return Added::Duplicate;
        }
        partial.pieces.insert(fragment.index, piece.to_vec());
        partial.bytes += piece.len();
        self.bytes += piece.len();
        if partial.pieces.len() as u64 == partial.count {
            let Some(partial) = self.pending.remove(id) else {
                return Added::Waiting;
            };
            self.bytes -= partial.bytes;
            let mut whole = Vec::with_capacity(partial.bytes);
            for piece in partial.pieces.into_values() {
                whole.extend_from_slice(&piece);
            }
            return Added::Complete(whole);
        }
        self.evict_over_limit();
        Added::Waiting
    }

    fn evict_over_limit(&mut self) {
        while self.bytes > self.max_bytes {
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(_, partial)| partial.first_arrival)
                .map(|(id, _)| id.clone());
            let Some(id) = oldest else { return };
            if let Some(partial) = self.pending.remove(&id) {
                self.bytes -= partial.bytes;
                self.given_up.push(partial.incomplete(&id));
            }
        }
    }

    /// Messages given up since the last call, to free memory.
    pub(super) fn take_given_up(&mut self) -> Vec<Incomplete> {
        std::mem::take(&mut self.given_up)
    }

    /// Every message still waiting, oldest first: at the end of the input, they are incomplete.
    pub(super) fn finish(&mut self) -> Vec<Incomplete> {
        let mut pending: Vec<(String, Partial)> = self.pending.drain().collect();
        pending.sort_by_key(|(_, partial)| partial.first_arrival);
        self.bytes = 0;
        pending
            .iter()
            .map(|(id, partial)| partial.incomplete(id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(index: u64, count: u64) -> Fragment {
        Fragment { index, count }
    }

    #[test]
    fn joins_fragments_in_any_order_once() {
        let mut fragments = Fragments::new(1 << 20);
        assert_eq!(fragments.add("a", fragment(3, 3), b"ghi"), Added::Waiting);
        assert_eq!(fragments.add("a", fragment(1, 3), b"abc"), Added::Waiting);
        assert_eq!(fragments.add("a", fragment(1, 3), b"abc"), Added::Duplicate);
        assert_eq!(
            fragments.add("a", fragment(1, 4), b"abc"),
            Added::Inconsistent
        );
        assert_eq!(
            fragments.add("a", fragment(2, 3), b"def"),
            Added::Complete(b"abcdefghi".to_vec())
        );
        assert!(fragments.finish().is_empty());
    }

    #[test]
    fn reports_what_never_completed_and_bounds_memory() {
        let mut fragments = Fragments::new(10);
        fragments.add("old", fragment(2, 5), b"0123456");
        fragments.add("new", fragment(1, 2), b"789");
        assert!(fragments.take_given_up().is_empty());
        fragments.add("new", fragment(1, 2), b"789");
        fragments.add("newer", fragment(1, 2), b"ab");
        let given_up = fragments.take_given_up();
        assert_eq!(
            given_up,
            [Incomplete {
                id: "old".into(),
                count: 5,
                arrived: 1,
                missing: vec![1, 3, 4, 5],
            }]
        );
        let left: Vec<String> = fragments.finish().into_iter().map(|i| i.id).collect();
        assert_eq!(left, ["new", "newer"]);
    }

    #[test]
    fn recent_ids_forget_the_oldest() {
        let mut ids = RecentIds::new(2);
        assert!(ids.insert("a"));
        assert!(!ids.insert("a"));
        assert!(ids.insert("b"));
        assert!(ids.insert("c"));
        assert!(!ids.contains("a"));
        assert!(ids.contains("b") && ids.contains("c"));
    }
}
