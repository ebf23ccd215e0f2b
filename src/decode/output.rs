//! What `decode` writes: one line per message, as the message itself or as a JSON object with
//! where it came from; in arrival order, or held and sorted by request time with `--sort`.

use std::io::{self, Write};

use crate::access_log::Entry;
use crate::wire::Fields;

/// A message with where it came from, for `--json` and `--sort`.
pub(super) struct Found<'a> {
    pub entry: &'a Entry<'a>,
    pub source: &'a str,
    pub fields: &'a Fields<'a>,
    pub message: &'a [u8],
}

pub(super) struct Output<W: Write> {
    json: bool,
    sort: bool,
    pub(super) out: W,
    /// `--sort`: (request time, arrival order, rendered output line).
    held: Vec<(Vec<u8>, u64, Vec<u8>)>,
    /// Reused for each message: writing allocates nothing per line.
    rendered: Vec<u8>,
}

impl<W: Write> Output<W> {
    pub(super) fn new(json: bool, sort: bool, out: W) -> Self {
        Output {
            json,
            sort,
            out,
            held: Vec::new(),
            rendered: Vec::new(),
        }
    }

    /// Writes (or with `--sort` holds) the message found; `arrival` orders equal times.
    pub(super) fn emit(&mut self, found: &Found<'_>, arrival: u64) -> io::Result<()> {
        let mut rendered = std::mem::take(&mut self.rendered);
        rendered.clear();
        self.render(found, &mut rendered);
        if self.sort {
            self.held
                .push((found.entry.time.to_vec(), arrival, rendered));
            Ok(())
        } else {
            let written = self.out.write_all(&rendered);
            self.rendered = rendered;
            written
        }
    }

    fn render(&self, found: &Found<'_>, out: &mut Vec<u8>) {
        if self.json {
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

    /// Writes what `--sort` held back, and flushes.
    pub(super) fn finish(&mut self) -> io::Result<()> {
        let mut held = std::mem::take(&mut self.held);
        held.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        for (_, _, rendered) in held {
            self.out.write_all(&rendered)?;
        }
        self.out.flush()
    }
}
