//! The reorder buffer's unit tests: order, the window, late, the byte bound.

use super::*;
use crate::decode::texts::{CHUNK_BYTES, CHUNK_SHARE};

const SLOT_BYTES: usize = Numbered::<Text>::SLOT_BYTES;

const MINUTE: i64 = 60_000_000;
const UNREADABLE_MINUTE: i64 = i64::MIN;

/// A message offered: logged at a minute, with its sender and number if any, its text.
type Offered<'a> = (i64, Option<(&'a str, u64)>, &'a str);

/// Holds each (minute, sender and number, text), advancing the clock to its time; returns
/// what was written as it went, then at the end.
fn run(reorder: &mut Reorder, window: i64, messages: &[Offered<'_>]) -> (Vec<String>, Vec<String>) {
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
        reorder.hold(place, text.as_bytes());
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
    let per_message = text.len() + TURN_BYTES + CHUNK_BYTES;
    // A sender's slots: a ring of 8 for the three or four it holds at once.
    let slots = 8 * SLOT_BYTES;
    let mut reorder = Reorder::new(3 * per_message + slots);
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
        reorder.hold(place, text.as_bytes());
        reorder.release(&mut write).expect("written");
        assert!(reorder.held_bytes() <= 3 * per_message + slots, "bounded");
    }
    assert_eq!(written.get(), 7, "the window alone would hold all ten");
    // A number below the ones written early is late.
    reorder.hold(
        Place {
            time: Some(0),
            window: 60 * MINUTE,
            sequence: Some(("a", 0)),
        },
        b"a0",
    );
    reorder.finish(&mut write).expect("written");
    assert_eq!((written.get(), reorder.late), (11, 1));
}

#[test]
fn each_sender_holding_anything_counts_its_slots() {
    // Review of issue 25: a map's node (about 450 bytes) was not counted: many senders
    // holding a message each took several times the bound. Slots took the map's place.
    let mut one = Numbered::default();
    one.insert(1, 1, Texts::new(1 << 20).push(b"m"), usize::MAX);
    let per_sender = TURN_BYTES + one.footprint();
    // And the texts: 1 byte each, in chunks of a few bytes (1/256 of the bound), a written
    // one counted until its chunk goes.
    let texts = CHUNK_BYTES + 100;
    let mut reorder = Reorder::new(10 * per_sender + texts);
    let names: Vec<String> = (0..100).map(|sender| format!("s{sender}")).collect();
    let messages: Vec<Offered<'_>> = names
        .iter()
        .map(|name| (0, Some((name.as_str(), 1)), "m"))
        .collect();
    let (as_it_went, _) = run(&mut reorder, MINUTE, &messages);
    let written = as_it_went.len();
    assert!(
        (90..=91).contains(&written),
        "nine or ten senders' messages held, not more: {written} written as it went"
    );
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

#[test]
fn a_burst_written_leaves_no_slots_behind_while_its_sender_keeps_sending() {
    // A sender's backlog (a spool drained after an outage) filled a ring of thousands of
    // slots; once it was written the ring stayed as long as the sender held anything (always,
    // sending once per window), counted against the bound: others' messages went early.
    let max_bytes = 1 << 20;
    let mut reorder = Reorder::new(max_bytes);
    let written = std::cell::RefCell::new(Vec::new());
    let mut write = |text: &[u8]| {
        written.borrow_mut().push(text.to_vec());
        Ok(())
    };
    let mut offer = |reorder: &mut Reorder, minute: i64, sequence, text: Vec<u8>| {
        reorder.advance(minute * MINUTE);
        let time = Some(minute * MINUTE);
        let window = MINUTE;
        reorder.hold(
            Place {
                time,
                window,
                sequence,
            },
            &text,
        );
        reorder.release(&mut write).expect("written");
    };
    for number in 0..8000 {
        offer(&mut reorder, 0, Some(("a", number)), b"a".to_vec());
    }
    offer(&mut reorder, 1, Some(("a", 8000)), b"a".to_vec());
    assert_eq!(written.borrow().len(), 8000, "the backlog, due");
    // What the texts pin aside (the chunk the backlog shares with the message held).
    let besides_texts = reorder.held_bytes() - reorder.texts.held_bytes();
    assert!(besides_texts < 4096, "{besides_texts}");
    // Another sender's messages, 3/4 of the bound, logged out of order.
    for number in 1..750 {
        offer(&mut reorder, 1, Some(("b", number)), vec![b'b'; 1000]);
    }
    offer(&mut reorder, 1, Some(("b", 0)), vec![b'b'; 1000]);
    assert_eq!(
        written.borrow().len(),
        8000,
        "nothing early: the bound is not reached"
    );
    reorder.finish(&mut write).expect("written");
    assert_eq!(reorder.late, 0);
    assert_eq!(reorder.held_bytes(), 0);
}

/// A sender's number for the property test: near 0, far apart, or at the top of the range.
fn number_of(kind: u8, small: u64) -> u64 {
    match kind {
        0 => u64::MAX - small,
        1 => small * 1_000_000,
        2 => small * 5_000,
        _ => small,
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Whatever the numbers, times (some unreadable), clock, bound and lengths: each message is
    /// written once, a sender's out of number order only when counted late, within the bound, and the
    /// bytes counted come back to 0.
    #[test]
    fn each_message_once_out_of_number_order_only_late_and_the_bytes_return(
        max_bytes in 0usize..20_000,
        window in 0i64..5,
        steps in proptest::collection::vec(
            (
                (0usize..3, 0u8..6, 0u64..40),
                (proptest::option::weighted(0.9, 0i64..20), 0u8..10, 0usize..1500),
            ),
            1..300,
        ),
    ) {
        let mut reorder = Reorder::new(max_bytes);
        let written = std::cell::RefCell::new(Vec::new());
        let mut write = |text: &[u8]| {
            written.borrow_mut().push(text.to_vec());
            Ok(())
        };
        // (sender, number) per message; the text is its index.
        let mut offered = Vec::new();
        for (index, step) in steps.into_iter().enumerate() {
            let ((sender, kind, small), (minute, tick, width)) = step;
            let name = ["a", "b", "c"][sender];
            let sequence = (kind != 5).then(|| (name, number_of(kind, small)));
            offered.push(sequence);
            let time = minute.map(|minute| minute * MINUTE);
            if let Some(time) = time {
                reorder.advance(time);
            }
            let window = window * MINUTE;
            // Padded to any length: texts leave room in chunks, or are longer than one.
            let text = format!("{index:<width$}");
            reorder.hold(Place { time, window, sequence }, text.as_bytes());
            if tick == 0 {
                reorder.advance(reorder.clock.saturating_add(MINUTE));
            }
            reorder.release(&mut write).expect("written");
            let nothing_held = reorder.turns.peek_due().is_none();
            proptest::prop_assert!(reorder.held_bytes() <= max_bytes || nothing_held);
            proptest::prop_assert!(!nothing_held || reorder.held_bytes() == 0);
            proptest::prop_assert!(reorder.texts.pinned_bytes() <= reorder.texts.held_bytes());
        }
        reorder.finish(&mut write).expect("written");
        proptest::prop_assert_eq!(reorder.held_bytes(), 0);
        let order: Vec<usize> = written
            .into_inner()
            .iter()
            .map(|text| String::from_utf8_lossy(text).trim_end().parse().expect("an index"))
            .collect();
        let mut each_once = order.clone();
        each_once.sort_unstable();
        proptest::prop_assert_eq!(each_once, (0..offered.len()).collect::<Vec<_>>());
        let mut highest = HashMap::new();
        let mut out_of_order = 0;
        for sequence in order.iter().filter_map(|&index| offered[index]) {
            let (name, number) = sequence;
            let highest = highest.entry(name).or_insert(number);
            out_of_order += u64::from(number < *highest);
            *highest = (*highest).max(number);
        }
        // Without numbers, late also counts messages written after a later turn.
        match offered.iter().all(Option::is_some) {
            true => proptest::prop_assert_eq!(out_of_order, reorder.late),
            false => proptest::prop_assert!(out_of_order <= reorder.late),
        }
    }
}

#[test]
fn a_number_far_ahead_of_a_held_backlog_does_not_flush_the_buffer() {
    // Slots for every number up to it (four per message held) took more memory than the
    // backlog itself: over the bound, everything held was written at once, before its time.
    let max_bytes = 2 << 20;
    let mut reorder = Reorder::new(max_bytes);
    let written = std::cell::Cell::new(0);
    let mut write = |_: &[u8]| {
        written.set(written.get() + 1);
        Ok(())
    };
    let text = vec![b'a'; 100];
    for number in (0..8000).chain([32_000]) {
        let (time, window) = (Some(0), MINUTE);
        let sequence = Some(("a", number));
        reorder.hold(
            Place {
                time,
                window,
                sequence,
            },
            &text,
        );
        reorder.release(&mut write).expect("written");
    }
    assert_eq!(
        written.get(),
        0,
        "a backlog within the bound waits for its window"
    );
    assert!(
        reorder.held_bytes() <= max_bytes,
        "{}",
        reorder.held_bytes()
    );
    reorder.finish(&mut write).expect("written");
    assert_eq!((written.get(), reorder.late), (8001, 0));
    assert_eq!(reorder.held_bytes(), 0);
}

/// Texts a little over half a chunk each: one a chunk, the rest of each chunk pinned with it
/// though no text will take it. The bound counts it.
#[test]
fn the_bound_counts_the_room_a_text_too_long_for_left_in_its_chunk() {
    let max_bytes = 64 << 10;
    let mut reorder = Reorder::new(max_bytes);
    let chunk = max_bytes / CHUNK_SHARE;
    let text = vec![b'x'; chunk / 2 + 1];
    for minute in 0..200 {
        let place = Place {
            time: Some(minute * MINUTE),
            window: 1_000 * MINUTE,
            sequence: None,
        };
        reorder.advance(minute * MINUTE);
        reorder.hold(place, &text);
        reorder.release(&mut |_| Ok(())).expect("written");
        let pinned = reorder.texts.pinned_bytes();
        assert!(
            pinned <= reorder.texts.held_bytes(),
            "pinned {pinned}, counted {}",
            reorder.texts.held_bytes()
        );
        assert!(pinned <= max_bytes, "{pinned} pinned, bound {max_bytes}");
    }
}
