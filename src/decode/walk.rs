//! Where access logs come from: files, directories (recursively, in name order), stdin; plain
//! or gzip-compressed, decided by the first bytes rather than the name.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use super::Decoder;
use super::follow::Seen;
use super::window::Range;
use crate::lines::BoundedLine;

/// Longer lines are not access-log entries (ALB caps the request line at 16 K): skipped as
/// malformed without being held in memory.
pub(super) const MAX_LINE_BYTES: usize = 1 << 20;
/// AWS writes one when access logging is turned on; it holds no requests.
pub(super) const AWS_TEST_FILE: &str = "ELBAccessLogTestFile";

/// Hidden entries are skipped: the stand-in's `.incoming/`, editors' and tools' temp files.
pub(super) fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// What one read of the inputs selects: files and directories the listing window admits, not
/// seen before (`--follow`).
pub(super) struct Pass<'a> {
    pub listing: Range,
    pub seen: Option<&'a mut Seen>,
}

/// Reading an input failed (reported, counted, and the next input is read), or writing the
/// output did (which ends the command).
enum Failure {
    Input(io::Error),
    Output(io::Error),
}

impl<W: Write> Decoder<W> {
    /// A file, a directory (recursively, in name order, hidden entries skipped) or `-`.
    /// Unreadable paths are reported and counted; only output errors are returned.
    pub(super) fn decode_path(&mut self, path: &Path, pass: &mut Pass<'_>) -> io::Result<()> {
        if path == Path::new("-") {
            let stdin = io::stdin().lock();
            return self.decode_stream("<stdin>", BufReader::with_capacity(256 * 1024, stdin));
        }
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(e) => return self.unreadable(path, &e),
        };
        if metadata.is_dir() {
            let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
                Ok(entries) => entries
                    .filter_map(Result::ok)
                    .filter(|entry| !is_hidden(&entry.file_name().to_string_lossy()))
                    // Symlinked directories are not followed: a link to a parent would loop.
                    .filter(|entry| {
                        !entry.file_type().is_ok_and(|t| t.is_symlink()) || entry.path().is_file()
                    })
                    .map(|entry| entry.path())
                    .collect(),
                Err(e) => return self.unreadable(path, &e),
            };
            entries.sort();
            for entry in entries {
                let admitted = if entry.is_dir() {
                    let components = entry.iter().map(|part| part.to_str().unwrap_or(""));
                    pass.listing.admits_dir(components)
                } else {
                    let name = entry.file_name().unwrap_or_default().to_string_lossy();
                    pass.listing.admits_file(&name)
                };
                if admitted {
                    self.decode_path(&entry, pass)?;
                }
            }
            return Ok(());
        }
        let name = path.display().to_string();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains(AWS_TEST_FILE))
        {
            tracing::debug!("skipping AWS's test file {name}");
            return Ok(());
        }
        if let Some(seen) = pass.seen.as_deref_mut()
            && !seen.insert(&name)
        {
            return Ok(());
        }
        match File::open(path) {
            Ok(file) => self.decode_stream(&name, BufReader::with_capacity(256 * 1024, file)),
            Err(e) => self.unreadable(path, &e),
        }
    }

    fn unreadable(&mut self, path: &Path, error: &io::Error) -> io::Result<()> {
        tracing::error!("cannot read {}: {error}", path.display());
        self.counts.unreadable += 1;
        Ok(())
    }

    /// One input, gzip-compressed or not (decided by its first bytes, not its name).
    pub fn decode_stream<R: BufRead>(&mut self, source: &str, mut input: R) -> io::Result<()> {
        self.counts.files += 1;
        let is_gzip = match input.fill_buf() {
            Ok(head) => head.starts_with(&[0x1f, 0x8b]),
            Err(e) => {
                tracing::error!("cannot read {source}: {e}");
                self.counts.unreadable += 1;
                return Ok(());
            }
        };
        let read = if is_gzip {
            let gunzipped = BufReader::with_capacity(256 * 1024, MultiGzDecoder::new(input));
            self.decode_lines(source, gunzipped)
        } else {
            self.decode_lines(source, input)
        };
        match read {
            Ok(()) => Ok(()),
            Err(Failure::Output(e)) => Err(e),
            Err(Failure::Input(e)) => {
                tracing::error!("cannot read {source} to its end: {e}");
                self.counts.unreadable += 1;
                Ok(())
            }
        }
    }

    fn decode_lines<R: BufRead>(&mut self, source: &str, mut input: R) -> Result<(), Failure> {
        let mut number = 0u64;
        let mut line = std::mem::take(&mut self.line);
        let mut bounded = BoundedLine::new(MAX_LINE_BYTES);
        loop {
            line.clear();
            let Some(too_long) = next_line(&mut input, &mut bounded, &mut line)? else {
                break;
            };
            number += 1;
            if too_long {
                self.counts.lines += 1;
                self.malformed(source, number, "line longer than 1 MiB");
                continue;
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                continue;
            }
            self.counts.lines += 1;
            self.decode_line(source, number, &line)
                .map_err(Failure::Output)?;
        }
        self.line = line;
        Ok(())
    }
}

/// Reads one line into `line` (without the LF). Returns `None` at end of input and
/// `Some(true)` for a line over the bound, which is skipped, not kept.
fn next_line<R: BufRead>(
    input: &mut R,
    bounded: &mut BoundedLine,
    line: &mut Vec<u8>,
) -> Result<Option<bool>, Failure> {
    loop {
        let available = input.fill_buf().map_err(Failure::Input)?;
        if available.is_empty() {
            let ended = bounded.in_progress(line);
            return Ok(ended.then(|| bounded.finish().is_some()));
        }
        let (used, found_end) = bounded.take(available, line);
        input.consume(used);
        if found_end {
            return Ok(Some(bounded.finish().is_some()));
        }
    }
}
