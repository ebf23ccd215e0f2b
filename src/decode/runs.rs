//! A sender's runs of numbers seen, for the gap judgement ([`super::gaps`]).
//!
//! Senders are kept for the whole run, and nearly every one has a single run (no gap): a
//! sorted map holding even one run allocates a node of eleven (about 550 bytes). So zero or
//! one run is held inline, and the sorted map is used only from the second run on, until
//! joins leave one again. Many runs keep the map's O(log n): two nodes' files read one after
//! the other make every other number a run, which a sorted vector would pay for in moves.

use std::collections::BTreeMap;

/// A run of numbers seen (or accounted for), with the log times of its first and last entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub end: u64,
    pub first_time: Option<i64>,
    pub last_time: Option<i64>,
}

/// Runs by their first number.
#[derive(Debug, Default)]
pub(super) enum Runs {
    #[default]
    Empty,
    One(u64, Run),
    /// Always two runs or more.
    Many(BTreeMap<u64, Run>),
}

impl Runs {
    /// The run starting at or before `number`, as `(start, run)`.
    pub(super) fn at_or_before(&self, number: u64) -> Option<(u64, Run)> {
        match self {
            Runs::Empty => None,
            Runs::One(start, run) => (*start <= number).then_some((*start, *run)),
            Runs::Many(runs) => runs
                .range(..=number)
                .next_back()
                .map(|(&start, &run)| (start, run)),
        }
    }

    pub(super) fn get(&self, start: u64) -> Option<Run> {
        match self {
            Runs::Empty => None,
            Runs::One(only, run) => (*only == start).then_some(*run),
            Runs::Many(runs) => runs.get(&start).copied(),
        }
    }

    /// Adds or replaces the run starting at `start`; returns the one replaced.
    pub(super) fn insert(&mut self, start: u64, run: Run) -> Option<Run> {
        match self {
            Runs::Empty => {
                *self = Runs::One(start, run);
                None
            }
            Runs::One(only, only_run) if *only == start => Some(std::mem::replace(only_run, run)),
            Runs::One(only, only_run) => {
                *self = Runs::Many(BTreeMap::from([(*only, *only_run), (start, run)]));
                None
            }
            Runs::Many(runs) => runs.insert(start, run),
        }
    }

    /// Removes the run starting at `start`; a single run left goes back inline.
    pub(super) fn remove(&mut self, start: u64) -> Option<Run> {
        match self {
            Runs::Empty => None,
            Runs::One(only, run) if *only == start => {
                let run = *run;
                *self = Runs::Empty;
                Some(run)
            }
            Runs::One(..) => None,
            Runs::Many(runs) => {
                let removed = runs.remove(&start);
                if runs.len() == 1
                    && let Some((only, run)) = runs.pop_first()
                {
                    *self = Runs::One(only, run);
                }
                removed
            }
        }
    }

    /// The runs as `(start, run)`, lowest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, Run)> + '_ {
        let (one, many) = match self {
            Runs::Empty => (None, None),
            Runs::One(start, run) => (Some((*start, *run)), None),
            Runs::Many(runs) => (None, Some(runs.iter().map(|(&start, &run)| (start, run)))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(end: u64) -> Run {
        Run {
            end,
            first_time: Some(end as i64),
            last_time: None,
        }
    }

    fn starts(runs: &Runs) -> Vec<u64> {
        runs.iter().map(|(start, _)| start).collect()
    }

    #[test]
    fn no_run_and_one_run_are_held_inline() {
        let mut runs = Runs::default();
        assert_eq!(runs.at_or_before(u64::MAX), None);
        assert_eq!(runs.remove(1), None);
        assert_eq!(runs.insert(5, run(7)), None);
        assert!(matches!(runs, Runs::One(5, _)));
        assert_eq!(runs.at_or_before(4), None);
        assert_eq!(runs.at_or_before(5), Some((5, run(7))));
        assert_eq!(runs.at_or_before(100), Some((5, run(7))));
        assert_eq!(runs.get(5), Some(run(7)));
        assert_eq!(runs.get(6), None);
        assert_eq!(
            runs.insert(5, run(9)),
            Some(run(7)),
            "replaced, still inline"
        );
        assert!(matches!(runs, Runs::One(5, _)));
        assert_eq!(runs.remove(6), None);
        assert_eq!(runs.remove(5), Some(run(9)));
        assert!(matches!(runs, Runs::Empty));
        assert_eq!(starts(&runs), [] as [u64; 0]);
    }

    #[test]
    fn the_second_run_moves_to_a_map_and_the_last_but_one_back() {
        let mut runs = Runs::default();
        runs.insert(10, run(12));
        runs.insert(1, run(3));
        assert!(matches!(runs, Runs::Many(_)));
        runs.insert(20, run(20));
        assert_eq!(
            starts(&runs),
            [1, 10, 20],
            "in order, the first held before"
        );
        assert_eq!(runs.at_or_before(0), None);
        assert_eq!(runs.at_or_before(9), Some((1, run(3))));
        assert_eq!(runs.at_or_before(19), Some((10, run(12))));
        assert_eq!(runs.get(20), Some(run(20)));
        assert_eq!(runs.remove(10), Some(run(12)));
        assert!(matches!(runs, Runs::Many(_)), "two left");
        assert_eq!(runs.remove(20), Some(run(20)));
        assert!(matches!(runs, Runs::One(1, _)), "one left goes inline");
        assert_eq!(starts(&runs), [1]);
    }

    #[test]
    fn holding_one_run_allocates_nothing_and_costs_little_inline() {
        // The reason for the type: a map's first node is about 550 bytes on the heap.
        assert!(size_of::<Runs>() <= 56, "{} bytes", size_of::<Runs>());
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(u64, u64),
        Remove(u64),
        Lookup(u64),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        // Few starts, so that steps meet the runs already held.
        prop_oneof![
            (0u64..24, 0u64..100).prop_map(|(start, end)| Step::Insert(start, end)),
            (0u64..24).prop_map(Step::Remove),
            (0u64..26).prop_map(Step::Lookup),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Against a sorted map, what the type stands for: the same answers to every step,
        /// the same runs in the same order after each, and a map only for two runs or more.
        #[test]
        fn answers_as_a_sorted_map_would(steps in proptest::collection::vec(step(), 1..200)) {
            let mut runs = Runs::default();
            let mut model: BTreeMap<u64, Run> = BTreeMap::new();
            for step in steps {
                match step {
                    Step::Insert(start, end) => {
                        proptest::prop_assert_eq!(runs.insert(start, run(end)), model.insert(start, run(end)));
                    }
                    Step::Remove(start) => {
                        proptest::prop_assert_eq!(runs.remove(start), model.remove(&start));
                    }
                    Step::Lookup(number) => {
                        let expected = model.range(..=number).next_back().map(|(&start, &run)| (start, run));
                        proptest::prop_assert_eq!(runs.at_or_before(number), expected);
                        proptest::prop_assert_eq!(runs.get(number), model.get(&number).copied());
                    }
                }
                let expected: Vec<(u64, Run)> = model.iter().map(|(&start, &run)| (start, run)).collect();
                proptest::prop_assert_eq!(runs.iter().collect::<Vec<_>>(), expected);
                let inline = matches!(runs, Runs::Empty | Runs::One(..));
                proptest::prop_assert_eq!(inline, model.len() < 2);
            }
        }
    }
}
