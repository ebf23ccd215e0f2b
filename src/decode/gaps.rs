//! Sequence gaps a person can trust: a number counts as missing only once nothing can still
//! bring it.
//!
//! A sender numbers its messages (`send --sequence`), but the load balancer logs them by
//! request time, and requests in flight at once, retried, or replayed from a spool after a
//! restart (the sender keeps its name and carries on its counter) are logged out of number
//! order. So a gap between two numbers seen is judged by the log times of the two entries
//! around it:
//!
//! - With `--since`/`--until`, a gap next to an entry logged within `--edge-slack` of an edge
//!   is not counted: its numbers may have been logged just outside the window.
//! - With `--follow`, a gap is confirmed only once the clock is `--gap-grace` past the later of
//!   the two entries, when every file that can hold its numbers has landed: AWS writes a file
//!   per load-balancer node and interval, and the nodes' files land independently. By default
//!   the grace follows AWS's documented delivery: ALB publishes every 5 minutes
//!   (<https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-access-logs.html>),
//!   taken with Classic's delay for that interval, up to 5 minutes: 10 minutes. Classic
//!   publishes every 5 or 60 minutes (60 by default; the names do not say which), delayed up to
//!   5 or 15 minutes
//!   (<https://docs.aws.amazon.com/elasticloadbalancing/latest/classic/access-log-collection.html>):
//!   75 minutes. A confirmed gap is reported once, then taken as accounted for.
//!
//! Memory: the numbers seen are kept as ranges per sender ([`super::runs`]), which stay few as
//! long as most numbers arrive; a confirmed gap joins the ranges around it.
//!
//! Over 400 lines with its tests, which take the judgement through windows and `--follow`.

use std::collections::HashMap;
use std::time::Duration;

use super::runs::{Run, Runs};
use super::window::{Range, Timestamp};
use crate::access_log::Format;

const MINUTE: i64 = 60_000_000;
/// ALB: a 5-minute interval, delivered up to 5 minutes later.
pub(super) const ALB_GRACE: i64 = 10 * MINUTE;
/// Classic: a 60-minute interval, delivered up to 15 minutes later.
pub(super) const CLASSIC_GRACE: i64 = 75 * MINUTE;

/// How gaps are judged; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    pub range: Range,
    pub edge_slack: Duration,
    /// `Some` with `--follow`: the grace, or `None` inside for the default by format.
    pub follow: Option<Option<Duration>>,
}

/// Numbers that never arrived from one sender: `from..=to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Gap {
    pub sender: String,
    pub from: u64,
    pub to: u64,
}

impl Gap {
    pub(super) fn missing(&self) -> u64 {
        self.to - self.from + 1
    }
}

/// What is left at the end of the input.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Left {
    /// Counted as missing, by sender name then number.
    pub missing: Vec<Gap>,
    /// Numbers in gaps next to an entry within the edge slack: not counted.
    pub near_edges: u64,
    /// With `--follow`, numbers in gaps still within their grace: not counted.
    pub unconfirmed: u64,
}

#[derive(Default)]
struct Sender {
    runs: Runs,
    /// The grace of the format its entries were last logged in.
    grace: i64,
    /// The log time of its newest entry.
    newest: Option<i64>,
    /// Numbers confirmed missing so far.
    confirmed_missing: u64,
}

enum Judged {
    Missing,
    NearEdge,
    InGrace,
}

pub(super) struct Gaps {
    policy: Policy,
    senders: HashMap<String, Sender>,
}

impl Gaps {
    pub(super) fn new(policy: Policy) -> Self {
        Gaps {
            policy,
            senders: HashMap::new(),
        }
    }

    pub(super) fn saw(
        &mut self,
        sender: &str,
        number: u64,
        time: Option<Timestamp>,
        format: Format,
    ) {
        if !self.senders.contains_key(sender) {
            self.senders.insert(sender.to_string(), Sender::default());
        }
        let Some(state) = self.senders.get_mut(sender) else {
            return;
        };
        state.grace = match format {
            Format::Alb => ALB_GRACE,
            Format::Classic => CLASSIC_GRACE,
        };
        let time = time.map(|time| time.0);
        state.newest = state.newest.max(time);
        let runs = &mut state.runs;
        let before = runs.at_or_before(number);
        if let Some((_, run)) = before
            && run.end >= number
        {
            return;
        }
        let mut start = number;
        let mut run = Run {
            end: number,
            first_time: time,
            last_time: time,
        };
        if let Some((before_start, before_run)) = before
            && before_run.end.checked_add(1) == Some(number)
        {
            start = before_start;
            run.first_time = before_run.first_time;
        }
        if let Some(after_start) = number.checked_add(1)
            && let Some(after) = runs.remove(after_start)
        {
            run.end = after.end;
            run.last_time = after.last_time;
        }
        runs.insert(start, run);
    }

    /// With `--follow`: the gaps confirmed by `now`, each reported once (it then joins the
    /// runs around it, as accounted for).
    pub(super) fn confirmed(&mut self, now: Timestamp) -> Vec<Gap> {
        let mut confirmed = Vec::new();
        for (name, sender) in &mut self.senders {
            let holes: Vec<(u64, u64)> = holes(&sender.runs)
                .filter(|(before, after)| {
                    matches!(
                        judge(&self.policy, sender.grace, before, after, Some(now)),
                        Judged::Missing
                    )
                })
                .map(|(before, after)| (before.0, after.0))
                .collect();
            // From the highest: joining a gap's runs leaves the lower gaps' runs in place.
            for (before_start, after_start) in holes.into_iter().rev() {
                let Some(before) = sender.runs.get(before_start) else {
                    continue;
                };
                let Some(after) = sender.runs.remove(after_start) else {
                    continue;
                };
                let gap = Gap {
                    sender: name.clone(),
                    from: before.end + 1,
                    to: after_start - 1,
                };
                sender.confirmed_missing += gap.missing();
                confirmed.push(gap);
                sender.runs.insert(
                    before_start,
                    Run {
                        end: after.end,
                        first_time: before.first_time,
                        last_time: after.last_time,
                    },
                );
            }
        }
        confirmed.sort_by(|a, b| (&a.sender, a.from).cmp(&(&b.sender, b.from)));
        confirmed
    }

    /// Numbers confirmed missing per sender with an entry logged at or after `since`.
    pub(super) fn active_senders(&self, since: Timestamp) -> Vec<(String, u64)> {
        let mut active: Vec<(String, u64)> = self
            .senders
            .iter()
            .filter(|(_, sender)| sender.newest.is_some_and(|newest| newest >= since.0))
            .map(|(name, sender)| (name.clone(), sender.confirmed_missing))
            .collect();
        active.sort();
        active
    }

    /// The gaps left at the end of the input: counted as missing, or (near an edge, or with
    /// `--follow` still within their grace) only reported.
    pub(super) fn finish(&self) -> Left {
        let mut left = Left::default();
        for (name, sender) in &self.senders {
            for (before, after) in holes(&sender.runs) {
                let gap = Gap {
                    sender: name.clone(),
                    from: before.1.end + 1,
                    to: after.0 - 1,
                };
                match judge(&self.policy, sender.grace, &before, &after, None) {
                    Judged::Missing => left.missing.push(gap),
                    Judged::NearEdge => left.near_edges += gap.missing(),
                    Judged::InGrace => left.unconfirmed += gap.missing(),
                }
            }
        }
        left.missing
            .sort_by(|a, b| (&a.sender, a.from).cmp(&(&b.sender, b.from)));
        left
    }
}

/// The runs on either side of each gap, as (start, run) pairs.
fn holes(runs: &Runs) -> impl Iterator<Item = ((u64, Run), (u64, Run))> + '_ {
    runs.iter().zip(runs.iter().skip(1))
}

/// Whether the gap between `before` and `after` counts. `now` is `None` at the end of the
/// input: with `--follow`, what is not confirmed by then stays unconfirmed.
fn judge(
    policy: &Policy,
    sender_grace: i64,
    before: &(u64, Run),
    after: &(u64, Run),
    now: Option<Timestamp>,
) -> Judged {
    let times = [before.1.last_time, after.1.first_time];
    let slack = i64::try_from(policy.edge_slack.as_micros()).unwrap_or(i64::MAX);
    let near_edge = times.iter().flatten().any(|&time| {
        policy
            .range
            .since
            .is_some_and(|since| time < since.0.saturating_add(slack))
            || policy
                .range
                .until
                .is_some_and(|until| time >= until.0.saturating_sub(slack))
    });
    if near_edge {
        return Judged::NearEdge;
    }
    let Some(grace) = policy.follow else {
        return Judged::Missing;
    };
    let grace = grace.map_or(sender_grace, |grace| {
        i64::try_from(grace.as_micros()).unwrap_or(i64::MAX)
    });
    let latest = times.iter().flatten().max().copied();
    match (now, latest) {
        (Some(now), Some(latest)) if now.0 >= latest.saturating_add(grace) => Judged::Missing,
        // An entry whose time cannot be read gives no reason to wait.
        (Some(_), None) => Judged::Missing,
        _ => Judged::InGrace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_796_126_400_000_000; // 2026-12-01T12:00:00Z

    fn at(minutes: i64) -> Option<Timestamp> {
        Some(Timestamp(T0 + minutes * MINUTE))
    }

    fn policy(range: Range, follow: Option<Option<Duration>>) -> Policy {
        Policy {
            range,
            edge_slack: Duration::from_secs(300),
            follow,
        }
    }

    fn gap(from: u64, to: u64) -> Gap {
        Gap {
            sender: "s".into(),
            from,
            to,
        }
    }

    #[test]
    fn gaps_between_what_arrived_are_missing_at_the_end() {
        let mut gaps = Gaps::new(policy(Range::default(), None));
        for number in [5, 1, 2, 9, 3, 3, 10, 7] {
            gaps.saw("s", number, at(0), Format::Classic);
        }
        for number in 1..=4 {
            gaps.saw("whole", number, None, Format::Alb);
        }
        let left = gaps.finish();
        assert_eq!(left.missing, [gap(4, 4), gap(6, 6), gap(8, 8)]);
        for number in [4, 6, 8] {
            gaps.saw("s", number, at(0), Format::Classic);
        }
        assert_eq!(gaps.finish(), Left::default());
    }

    #[test]
    fn gaps_next_to_a_window_edge_are_not_counted() {
        // --since 12:00 --until 13:00: 3 was logged at 11:59 and 8 at 13:00, outside.
        let range = Range {
            since: at(0),
            until: at(60),
        };
        let mut gaps = Gaps::new(policy(range, None));
        for (number, minute) in [(1, 1), (2, 0), (4, 2), (5, 30), (7, 31), (9, 58), (10, 59)] {
            gaps.saw("s", number, at(minute), Format::Alb);
        }
        let left = gaps.finish();
        assert_eq!(left.missing, [gap(6, 6)], "well inside the window");
        assert_eq!(left.near_edges, 2, "3 and 8");
    }

    #[test]
    fn with_follow_a_gap_is_confirmed_after_the_grace_once() {
        let mut gaps = Gaps::new(policy(Range::default(), Some(None)));
        for (number, minute) in [(1, 0), (2, 0), (5, 1), (6, 1)] {
            gaps.saw("s", number, at(minute), Format::Alb);
        }
        // ALB: 10 minutes after the later entry around the gap.
        assert!(gaps.confirmed(Timestamp(T0 + 11 * MINUTE - 1)).is_empty());
        // The late file of another node brings 3 within the grace.
        gaps.saw("s", 3, at(0), Format::Alb);
        assert_eq!(gaps.confirmed(Timestamp(T0 + 11 * MINUTE)), [gap(4, 4)]);
        assert!(
            gaps.confirmed(Timestamp(T0 + 60 * MINUTE)).is_empty(),
            "once"
        );
        assert_eq!(gaps.finish(), Left::default(), "accounted for");
        gaps.saw("s", 9, at(20), Format::Alb);
        assert_eq!(
            gaps.finish(),
            Left {
                unconfirmed: 2,
                ..Left::default()
            }
        );
    }

    #[test]
    fn several_gaps_of_a_sender_are_confirmed_in_one_look() {
        let mut gaps = Gaps::new(policy(Range::default(), Some(Some(Duration::ZERO))));
        for number in [1, 3, 5, 9] {
            gaps.saw("s", number, at(0), Format::Alb);
        }
        assert_eq!(
            gaps.confirmed(Timestamp(T0)),
            [gap(2, 2), gap(4, 4), gap(6, 8)]
        );
        assert_eq!(gaps.finish(), Left::default());
    }

    #[test]
    fn classic_waits_longer_and_a_fixed_grace_overrides_the_format() {
        let mut by_format = Gaps::new(policy(Range::default(), Some(None)));
        let mut fixed = Gaps::new(policy(Range::default(), Some(Some(Duration::ZERO))));
        for gaps in [&mut by_format, &mut fixed] {
            gaps.saw("s", 1, at(0), Format::Classic);
            gaps.saw("s", 3, at(0), Format::Classic);
        }
        assert!(by_format.confirmed(Timestamp(T0 + 74 * MINUTE)).is_empty());
        assert_eq!(
            by_format.confirmed(Timestamp(T0 + 75 * MINUTE)),
            [gap(2, 2)]
        );
        assert_eq!(fixed.confirmed(Timestamp(T0)), [gap(2, 2)]);
    }

    #[test]
    fn a_restart_replaying_its_spool_late_is_no_gap_within_the_grace() {
        // 1-4 before the restart; 5-6 replayed from the spool and 7-8 new, an hour later,
        // in files of two nodes, the replayed ones landing last.
        let mut gaps = Gaps::new(policy(Range::default(), Some(None)));
        for number in 1..=4 {
            gaps.saw("s", number, at(0), Format::Alb);
        }
        gaps.saw("s", 7, at(60), Format::Alb);
        gaps.saw("s", 8, at(60), Format::Alb);
        assert!(gaps.confirmed(Timestamp(T0 + 65 * MINUTE)).is_empty());
        gaps.saw("s", 5, at(61), Format::Alb);
        gaps.saw("s", 6, at(61), Format::Alb);
        assert!(gaps.confirmed(Timestamp(T0 + 200 * MINUTE)).is_empty());
        assert_eq!(gaps.finish(), Left::default());
    }
}
