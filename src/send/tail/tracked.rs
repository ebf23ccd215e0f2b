//! One file being read: the open handle (which keeps a renamed or deleted file readable), how
//! far its lines were handed on, and the line in progress.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use super::identity::{ANCHOR_BYTES, Anchor, FileId, Fingerprint};
use crate::lines::BoundedLine;
use crate::send::input::Line;

/// Bytes read from a file at once.
const CHUNK_BYTES: usize = 256 * 1024;

/// A line of a file, with where it starts (for its id) and where the next one starts.
#[derive(Debug)]
pub(super) struct FileLine {
    pub line: Line,
    pub start: u64,
    pub end: u64,
    /// The anchor at `end`, stored with it as a position.
    pub anchor: Anchor,
}

/// Where reading a file starts, and what tells that file apart.
pub(super) struct Start {
    /// Names the file's content in message ids.
    pub key: String,
    pub fingerprint: Fingerprint,
    /// Its birth time, where known ([`super::identity::born`]).
    pub born: Option<u64>,
    pub offset: u64,
    /// The file's bytes just before `offset` ([`Anchor::bytes_before`]).
    pub before: Vec<u8>,
}

pub(super) struct Tracked {
    pub id: FileId,
    /// Names this file's content in message ids; a new one after a truncation.
    pub key: String,
    /// Where it was last seen.
    pub path: PathBuf,
    pub fingerprint: Fingerprint,
    pub born: Option<u64>,
    /// Where the next line starts: the lines before it were handed on.
    pub done: u64,
    /// The anchor at `done`: checked at every look, and stored with it.
    pub anchor: Anchor,
    /// Set once its path names another file or none: it is read to its end, then dropped.
    pub rotated: Option<Rotated>,
    /// Not read until the file it replaced at its path is finished.
    pub after: Option<FileId>,
    file: Arc<File>,
    /// Read up to here: `done` plus the lines not yet handed on and the one in progress.
    read: u64,
    /// Where the line in progress starts.
    line_start: u64,
    /// The last bytes read (up to [`ANCHOR_BYTES`]), ending at `read`.
    recent: Vec<u8>,
    partial: Vec<u8>,
    bounded: BoundedLine,
    max_line_bytes: usize,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Rotated {
    /// Looks in a row that found it read to its end: at two, nothing came for a whole poll
    /// interval, and it is finished.
    pub quiet_looks: u32,
}

impl Tracked {
    pub(super) fn new(
        id: FileId,
        file: File,
        path: PathBuf,
        start: Start,
        max_line_bytes: usize,
    ) -> Self {
        let offset = start.offset;
        Tracked {
            id,
            key: start.key,
            path,
            fingerprint: start.fingerprint,
            born: start.born,
            done: offset,
            anchor: Anchor::of(&start.before, &[]),
            rotated: None,
            after: None,
            file: Arc::new(file),
            read: offset,
            line_start: offset,
            recent: start.before,
            partial: Vec::new(),
            // One byte of slack so a maximal line can still carry its CR (as stdin).
            bounded: BoundedLine::new(max_line_bytes.saturating_add(1)),
            max_line_bytes,
        }
    }

    /// The id of the line starting at `start`: the same whenever that line is read again.
    pub(super) fn line_id(&self, start: u64) -> String {
        format!("{}-{start}", self.key)
    }

    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// Whether the file is now shorter than what was read of it.
    pub(super) fn shrank(&self, size: u64) -> bool {
        size < self.read
    }

    /// Whether everything up to `size` was read.
    pub(super) fn read_to(&self, size: u64) -> bool {
        self.read >= size
    }

    /// Reads the next chunk (blocking work off the runtime) and returns the whole lines in it;
    /// `None` at the end of the file as it is now. A line without LF waits for the rest.
    pub(super) async fn read_lines(
        &mut self,
        next_number: &mut u64,
    ) -> io::Result<Option<Vec<FileLine>>> {
        let file = self.file.clone();
        let at = self.read;
        let fingerprint = self.fingerprint;
        let (anchor, done) = (self.anchor, self.done);
        let (chunk, fingerprint) = tokio::task::spawn_blocking(move || {
            // Rewritten since (copytruncate, then more than was read): nothing more is read
            // at the old offset; the next look starts the file again.
            if !fingerprint.matches(&file)? || !anchor.matches(&file, done)? {
                return Ok((Vec::new(), fingerprint));
            }
            let mut chunk = vec![0; CHUNK_BYTES];
            loop {
                match file.read_at(&mut chunk, at) {
                    Ok(n) => {
                        chunk.truncate(n);
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            // Grown with what is read, not at the next look: a rewrite of the file in
            // between (copytruncate) is then told apart by its first bytes.
            let end = at + chunk.len() as u64;
            let fingerprint = if fingerprint.can_grow(end) {
                Fingerprint::read(&file, end)?
            } else {
                fingerprint
            };
            Ok((chunk, fingerprint))
        })
        .await
        .map_err(io::Error::other)??;
        if chunk.is_empty() {
            return Ok(None);
        }
        self.fingerprint = fingerprint;
        let mut lines = Vec::new();
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let (used, found_end) = self.bounded.take(rest, &mut self.partial);
            rest = &rest[used..];
            self.read += used as u64;
            if found_end {
                let anchor = Anchor::of(&self.recent, &chunk[..chunk.len() - rest.len()]);
                lines.push(self.finish_line(next_number, anchor));
            }
        }
        self.recent
            .extend_from_slice(&chunk[chunk.len().saturating_sub(ANCHOR_BYTES)..]);
        let excess = self.recent.len().saturating_sub(ANCHOR_BYTES);
        self.recent.drain(..excess);
        Ok(Some(lines))
    }

    /// The line in progress, sent as it is: the file is finished (rotated, deleted or
    /// truncated), so no LF will come.
    pub(super) fn take_partial(&mut self, next_number: &mut u64) -> Option<FileLine> {
        if !self.bounded.in_progress(&self.partial) {
            return None;
        }
        let anchor = Anchor::of(&self.recent, &[]);
        Some(self.finish_line(next_number, anchor))
    }

    fn finish_line(&mut self, next_number: &mut u64, anchor: Anchor) -> FileLine {
        *next_number += 1;
        let line = Line::complete(
            *next_number,
            &mut self.bounded,
            &mut self.partial,
            self.max_line_bytes,
        );
        let start = std::mem::replace(&mut self.line_start, self.read);
        FileLine {
            line,
            start,
            end: self.read,
            anchor,
        }
    }

    /// Starts again at 0 under a new key: the file was truncated (copytruncate).
    pub(super) fn restart(&mut self, key: String, fingerprint: Fingerprint) {
        self.key = key;
        self.fingerprint = fingerprint;
        self.done = 0;
        self.anchor = Anchor::empty();
        self.read = 0;
        self.line_start = 0;
        self.recent = Vec::new();
        self.partial = Vec::new();
        self.bounded = BoundedLine::new(self.max_line_bytes.saturating_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::send::tail::identity::Anchor;
    use std::io::Write;

    fn texts(lines: &[FileLine]) -> Vec<(Vec<u8>, u64, u64)> {
        lines
            .iter()
            .map(|l| match &l.line {
                Line::Message { bytes, .. } => (bytes.clone(), l.start, l.end),
                other => panic!("not a message: {other:?}"),
            })
            .collect()
    }

    /// Whether a read finds no new complete line.
    async fn nothing_new(tracked: &mut Tracked, number: &mut u64) -> bool {
        tracked.read_lines(number).await.expect("read").is_none()
    }

    #[tokio::test]
    async fn a_partial_line_waits_for_its_lf_and_offsets_follow_the_bytes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("app.log");
        let mut writer = File::create(&path).expect("create");
        writer.write_all(b"one\r\ntwo\nthr").expect("write");
        let file = File::open(&path).expect("open");
        let meta = file.metadata().expect("stat");
        let fingerprint = Fingerprint::read(&file, meta.len()).expect("fingerprint");
        let start = Start {
            key: "k".into(),
            fingerprint,
            born: None,
            offset: 0,
            before: Vec::new(),
        };
        let mut tracked = Tracked::new(FileId::of(&meta), file, path, start, 100);
        let mut number = 0;
        let lines = tracked.read_lines(&mut number).await.expect("read");
        let lines = lines.expect("data");
        assert_eq!(
            texts(&lines),
            vec![(b"one".to_vec(), 0, 5), (b"two".to_vec(), 5, 9)]
        );
        tracked.done = 9;
        assert!(nothing_new(&mut tracked, &mut number).await);
        writer.write_all(b"ee\nfour").expect("write");
        let lines = tracked.read_lines(&mut number).await.expect("read");
        assert_eq!(
            texts(&lines.expect("data")),
            vec![(b"three".to_vec(), 9, 15)]
        );
        tracked.done = 15;
        assert!(nothing_new(&mut tracked, &mut number).await);
        let last = tracked.take_partial(&mut number).expect("partial");
        assert_eq!(texts(&[last]), vec![(b"four".to_vec(), 15, 19)]);
        assert_eq!(number, 4);
        assert_eq!(tracked.line_id(15), "k-15");
    }

    #[tokio::test]
    async fn each_line_carries_the_anchor_of_the_file_at_its_end_across_reads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("app.log");
        let mut writer = File::create(&path).expect("create");
        let file = File::open(&path).expect("open");
        let meta = file.metadata().expect("stat");
        let start = Start {
            key: "k".into(),
            fingerprint: Fingerprint::read(&file, 0).expect("fingerprint"),
            born: None,
            offset: 0,
            before: Vec::new(),
        };
        let mut tracked = Tracked::new(FileId::of(&meta), file, path.clone(), start, 10_000);
        let check = File::open(&path).expect("open");
        let mut number = 0;
        let mut ends = Vec::new();
        // Short and long lines written in pieces, so that anchors span several reads.
        for (i, piece) in ["ab", "c\nd", "\n", &"x".repeat(300), "\nshort\n", "y\n"]
            .iter()
            .enumerate()
        {
            writer.write_all(piece.as_bytes()).expect("write");
            while let Some(lines) = tracked.read_lines(&mut number).await.expect("read") {
                for line in lines {
                    let before = Anchor::bytes_before(&check, line.end).expect("read");
                    assert_eq!(line.anchor, Anchor::of(&before, &[]), "piece {i}");
                    tracked.done = line.end;
                    tracked.anchor = line.anchor;
                    ends.push(line.end);
                }
            }
        }
        assert_eq!(ends, vec![4, 6, 307, 313, 315]);
        // Lines longer than a read, ending just after a read's end and right at it.
        for long in [CHUNK_BYTES + 100, CHUNK_BYTES - 104] {
            writer.write_all(&vec![b'z'; long]).expect("write");
            writer.write_all(b"\nq\n").expect("write");
        }
        let mut ends = Vec::new();
        while let Some(lines) = tracked.read_lines(&mut number).await.expect("read") {
            for line in lines {
                let before = Anchor::bytes_before(&check, line.end).expect("read");
                assert_eq!(line.anchor, Anchor::of(&before, &[]), "end {}", line.end);
                tracked.done = line.end;
                tracked.anchor = line.anchor;
                ends.push(line.end);
            }
        }
        assert_eq!(ends.len(), 4);
        assert!(ends.contains(&(315 + 2 * CHUNK_BYTES as u64)), "{ends:?}");
        writer.write_all(b"last").expect("write");
        while let Some(lines) = tracked.read_lines(&mut number).await.expect("read") {
            assert!(lines.is_empty(), "no LF yet");
        }
        let last = tracked.take_partial(&mut number).expect("partial");
        assert_eq!(
            last.anchor,
            Anchor::of(&std::fs::read(&path).expect("read"), &[])
        );
    }
}
