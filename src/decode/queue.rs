//! The order `decode` reads its inputs in: best first by time, over all the inputs of one read
//! at once (every local path, or every prefix of one bucket). The reorder buffer (`order`)
//! holds messages for a window past the newest log time read, so inputs read one after the
//! other would put the later ones behind that clock, their messages written late.
//!
//! Pending directories and files wait in a min-heap, each under the earliest end time a file
//! it holds or leads to can carry. Only expanded directories' entries are held, and the
//! `yyyy/mm/dd` directories expand as the walk's time reaches them.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::window;

/// The order files are read in: by the end time their name carries (`_20261201T1205Z_`),
/// then by name; names without one first. So the files of one interval, one per
/// load-balancer node, are read one after another, and intervals in time order: the reorder
/// window then only has to cover one interval's files (see `order`).
fn reading_order(name: &str) -> (Option<i64>, String) {
    (window::name_end_time(name), name.to_string())
}

/// The start of the nearest year, month or day directory above the file at `path`.
fn dated_ancestor_start<'a>(path: impl DoubleEndedIterator<Item = &'a str> + Clone) -> Option<i64> {
    let parents: Vec<&str> = path.collect();
    (1..parents.len())
        .rev()
        .find_map(|end| window::calendar_span(parents[..end].iter().copied()))
        .map(|(start, _)| start)
}

/// Where a pending item sorts: its time (`None`, untimed, first), its name, the input it
/// came from, then when it was queued, so that runs are deterministic.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    time: Option<i64>,
    name: String,
    input: usize,
    queued: u64,
}

struct Queued<T> {
    key: Key,
    item: T,
}

impl<T> PartialEq for Queued<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<T> Eq for Queued<T> {}

impl<T> PartialOrd for Queued<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Queued<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

/// Directories and files waiting to be read, earliest first.
pub(super) struct ReadingQueue<T> {
    heap: BinaryHeap<Reverse<Queued<T>>>,
    queued: u64,
}

impl<T> Default for ReadingQueue<T> {
    fn default() -> Self {
        ReadingQueue {
            heap: BinaryHeap::new(),
            queued: 0,
        }
    }
}

impl<T> ReadingQueue<T> {
    /// A file of input number `input` at `path` (components, the last one its name), by the
    /// end time its name carries. A name without one under a year, month or day directory
    /// waits for the start of that span, where the walk of old read it: expanded a day early
    /// (see `push_dir`), it would put the clock past the files of the day before.
    pub(super) fn push_file<'a>(
        &mut self,
        input: usize,
        path: impl DoubleEndedIterator<Item = &'a str> + Clone,
        item: T,
    ) {
        self.push_file_logged_from(input, path, None, item);
    }

    /// A file as [`push_file`](Self::push_file), and where its name carries no end time, by
    /// `first_entry`, the log time of its first entry if it could be read: a file of recent
    /// entries beside a dated tree is read after the tree, not first.
    pub(super) fn push_file_logged_from<'a>(
        &mut self,
        input: usize,
        path: impl DoubleEndedIterator<Item = &'a str> + Clone,
        first_entry: Option<i64>,
        item: T,
    ) {
        let (time, name) = reading_order(path.clone().last().unwrap_or_default());
        let time = time.or(first_entry).or_else(|| dated_ancestor_start(path));
        self.push(time, name, input, item);
    }

    /// A directory of input number `input` at `path` (components, the last one its name).
    /// A year, month or day directory waits until the earliest log time its files can hold;
    /// any other is expanded at once.
    pub(super) fn push_dir<'a>(
        &mut self,
        input: usize,
        path: impl DoubleEndedIterator<Item = &'a str> + Clone,
        item: T,
    ) {
        let time = window::dated_dir_entries(path.clone()).map(|(from, _)| from);
        let name = path.last().unwrap_or_default().to_string();
        self.push(time, name, input, item);
    }

    fn push(&mut self, time: Option<i64>, name: String, input: usize, item: T) {
        let key = Key {
            time,
            name,
            input,
            queued: self.queued,
        };
        self.queued += 1;
        self.heap.push(Reverse(Queued { key, item }));
    }

    /// The earliest item, with the number of the input it came from.
    pub(super) fn pop(&mut self) -> Option<(usize, T)> {
        self.heap
            .pop()
            .map(|Reverse(queued)| (queued.key.input, queued.item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alb(account: &str, end: &str) -> String {
        format!("{account}_elasticloadbalancing_eu-west-1_app.lb.1_{end}_10.0.0.1_x.log")
    }

    fn drain(queue: &mut ReadingQueue<String>) -> Vec<String> {
        std::iter::from_fn(|| queue.pop().map(|(_, item)| item)).collect()
    }

    #[test]
    fn files_come_by_end_time_then_name_then_input_untimed_first() {
        let mut queue = ReadingQueue::default();
        let names = [
            (0, alb("111", "20261201T1210Z")),
            (0, alb("111", "20261201T1205Z")),
            (1, alb("222", "20261201T1205Z")),
            (1, "notes.log".to_string()),
            (2, alb("111", "20261201T1205Z")),
        ];
        for (input, name) in &names {
            queue.push_file(*input, name.split('/'), format!("{input}:{name}"));
        }
        let order: Vec<String> = std::iter::from_fn(|| queue.pop())
            .map(|(input, item)| format!("{input}|{item}"))
            .collect();
        let expect = |index: usize| {
            let (input, name) = &names[index];
            format!("{input}|{input}:{name}")
        };
        assert_eq!(
            order,
            [expect(3), expect(1), expect(4), expect(2), expect(0)]
        );
    }

    #[test]
    fn date_directories_wait_until_the_earliest_time_their_files_can_hold() {
        let mut queue = ReadingQueue::default();
        let dir = |path: &'static str| path.split('/');
        queue.push_dir(0, dir("logs/2026/12/02"), "dec 2".to_string());
        queue.push_dir(0, dir("logs/2026/12/01"), "dec 1".to_string());
        queue.push_dir(1, dir("logs/2026/11"), "november".to_string());
        queue.push_dir(1, dir("AWSLogs"), "AWSLogs".to_string());
        // Dec 2's directory can hold files ending on Dec 1 (delivered the day after), an hour
        // of Classic entries before: it is expanded before those, after earlier ones.
        queue.push_file(
            0,
            [alb("1", "20261201T1200Z").as_str()].into_iter(),
            "dec 1 12:00".to_string(),
        );
        queue.push_file(
            0,
            [alb("1", "20261130T1200Z").as_str()].into_iter(),
            "nov 30 12:00".to_string(),
        );
        assert_eq!(
            drain(&mut queue),
            [
                "AWSLogs",
                "november",
                "dec 1",
                "nov 30 12:00",
                "dec 2",
                "dec 1 12:00"
            ]
        );
    }

    #[test]
    fn untimed_names_under_a_date_directory_wait_for_its_start() {
        let mut queue = ReadingQueue::default();
        let path = |path: &'static str| path.split('/');
        queue.push_file(
            0,
            path("logs/2026/12/02/export.log"),
            "dec 2 export".to_string(),
        );
        queue.push_file(
            0,
            path("logs/2026/12/02/x/export.log"),
            "deeper".to_string(),
        );
        queue.push_file(0, path("logs/export.log"), "undated".to_string());
        let dec_1 = format!("logs/2026/12/01/{}", alb("1", "20261201T2355Z"));
        queue.push_file(0, dec_1.split('/'), "dec 1 23:55".to_string());
        let late = format!("logs/2026/12/02/{}", alb("1", "20261202T0005Z"));
        queue.push_file(0, late.split('/'), "dec 2 00:05".to_string());
        assert_eq!(
            drain(&mut queue),
            [
                "undated",
                "dec 1 23:55",
                "dec 2 export",
                "deeper",
                "dec 2 00:05"
            ]
        );
    }
}
