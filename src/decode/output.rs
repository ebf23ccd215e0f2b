//! What `decode` writes: one line per message, as the message itself or as a JSON object with
//! where it came from; in order (see [`super::order`]) or, with `--order arrival`, as read.

use std::io::{self, Write};
use std::time::Duration;

use super::gaps::{ALB_GRACE, CLASSIC_GRACE};
use super::order::{Place, Reorder};
use super::window::Timestamp;
use crate::access_log::{Entry, Format};
use crate::wire::Fields;

/// A message with where it came from, for `--json` and the order.
pub(super) struct Found<'a> {
    pub entry: &'a Entry<'a>,
    /// Its log time, read only when ordered: `None` if it cannot be read.
    pub time: Option<Timestamp>,
    pub source: &'a str,
    pub fields: &'a Fields<'a>,
    pub message: &'a [u8],
}

/// The order output is written in (`--order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Each sender's messages by sequence number, the rest by request time.
    Sequence,
    /// As read: file by file, line by line.
    Arrival,
}

/// `--order sequence`'s bounds: `--reorder-window` (`None`: by format) and `--reorder-bytes`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ordering {
    pub window: Option<Duration>,
    pub max_bytes: u64,
}

pub(super) struct Output<W: Write> {
    json: bool,
    pub(super) out: W,
    /// `--order sequence`: the buffer, and the window if one is set.
    reorder: Option<(Reorder, Option<i64>)>,
    /// Reused for each message: writing or holding one allocates nothing per line.
    rendered: Vec<u8>,
}

impl<W: Write> Output<W> {
    pub(super) fn new(json: bool, ordering: Option<Ordering>, out: W) -> Self {
        let reorder = ordering.map(|ordering| {
            let max_bytes = usize::try_from(ordering.max_bytes).unwrap_or(usize::MAX);
            let window = ordering
                .window
                .map(|window| i64::try_from(window.as_micros()).unwrap_or(i64::MAX));
            (Reorder::new(max_bytes), window)
        });
        Output {
            json,
            out,
            reorder,
            rendered: Vec::new(),
        }
    }

    /// Writes the message found, or holds it for its place.
    pub(super) fn emit(&mut self, found: &Found<'_>) -> io::Result<()> {
        self.rendered.clear();
        render(self.json, found, &mut self.rendered);
        let Some((reorder, window)) = &mut self.reorder else {
            return self.out.write_all(&self.rendered);
        };
        // The window covers an interval's files and their delivery, as the gap grace does.
        let window = window.unwrap_or(match found.entry.format {
            Format::Alb => ALB_GRACE,
            Format::Classic => CLASSIC_GRACE,
        });
        // A time that cannot be read (only judged malformed with --since/--until) takes the
        // clock's, in `hold`.
        let time = found.time.map(|time| time.0);
        let place = Place {
            time,
            window,
            sequence: found
                .fields
                .sequence
                .map(|sequence| (sequence.sender, sequence.number)),
        };
        if let Some(time) = time {
            reorder.advance(time);
        }
        reorder.hold(place, &self.rendered);
        let out = &mut self.out;
        reorder.release(&mut |text| out.write_all(text))
    }

    /// Whether messages are held for their place (and so need their log time).
    pub(super) fn is_ordered(&self) -> bool {
        self.reorder.is_some()
    }

    /// Messages written out of their place so far.
    pub(super) fn late(&self) -> u64 {
        self.reorder.as_ref().map_or(0, |(reorder, _)| reorder.late)
    }

    /// `--follow`: the clock says `now` (microseconds); what is due is written.
    pub(super) fn advance(&mut self, now: i64) -> io::Result<()> {
        let Some((reorder, _)) = &mut self.reorder else {
            return Ok(());
        };
        reorder.advance(now);
        let out = &mut self.out;
        reorder.release(&mut |text| out.write_all(text))
    }

    /// Writes what is still held, in order, and flushes.
    pub(super) fn finish(&mut self) -> io::Result<()> {
        if let Some((reorder, _)) = &mut self.reorder {
            let out = &mut self.out;
            reorder.finish(&mut |text| out.write_all(text))?;
        }
        self.out.flush()
    }
}

/// One output line: the message, or with `--json` a JSON object; with its LF.
fn render(json: bool, found: &Found<'_>, out: &mut Vec<u8>) {
    if json {
        let entry = found.entry;
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let status = std::str::from_utf8(entry.status)
            .ok()
            .and_then(|s| s.parse::<u16>().ok());
        let mut object = serde_json::json!({
            "time": text(entry.time),
            "load_balancer": text(entry.balancer),
            "client": text(entry.client),
            "status": status,
            "file": found.source,
            "message": text(found.message),
        });
        let fields = found.fields;
        if let Some(fields_object) = object.as_object_mut() {
            if let Some(id) = fields.id {
                fields_object.insert("id".into(), id.into());
            }
            if let Some(sequence) = fields.sequence {
                fields_object.insert("sender".into(), sequence.sender.into());
                fields_object.insert("sequence".into(), sequence.number.into());
            }
            if let Some(fragment) = fields.fragment {
                fields_object.insert("fragments".into(), fragment.count.into());
            }
        }
        // Serialising a json! value to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &object);
    } else {
        out.extend_from_slice(found.message);
    }
    out.push(b'\n');
}
