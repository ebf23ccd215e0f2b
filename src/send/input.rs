//! Reading messages from stdin, one per LF-terminated line, with a length bound.
//!
//! Lines are bytes, not text: anything but LF is kept (non-UTF-8, NUL, tabs); one trailing CR
//! is stripped. A line longer than the bound is skipped as it streams past and never held in
//! memory (see [`crate::lines`]).

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::lines::BoundedLine;

const SHRINK_ABOVE_UNUSED_BYTES: usize = 64 * 1024;

/// One line of input, numbered from 1.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    Message {
        number: u64,
        bytes: Vec<u8>,
    },
    /// An empty line (or a lone CR): skipped, only counted.
    Empty {
        number: u64,
    },
    /// A line longer than the bound; `length` is its full length without the LF.
    TooLong {
        number: u64,
        length: u64,
    },
}

pub(super) struct LineReader<R> {
    inner: R,
    max_line_bytes: usize,
    line_number: u64,
    partial: Vec<u8>,
    bounded: BoundedLine,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub(super) fn new(inner: R, max_line_bytes: usize) -> Self {
        LineReader {
            inner,
            max_line_bytes,
            line_number: 0,
            partial: Vec::new(),
            // One byte of slack so a maximal line can still carry its CR.
            bounded: BoundedLine::new(max_line_bytes.saturating_add(1)),
        }
    }

    /// Waits until input is available (true) or has ended (false) without consuming any.
    pub(super) async fn has_input(&mut self) -> io::Result<bool> {
        if self.bounded.in_progress(&self.partial) {
            return Ok(true);
        }
        Ok(!self.inner.fill_buf().await?.is_empty())
    }

    /// The next line, or `None` at end of input. A last line without LF is still a line.
    ///
    /// Cancel-safe: a partial line stays buffered and the next call carries on with it.
    pub(super) async fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                if !self.bounded.in_progress(&self.partial) {
                    return Ok(None);
                }
                return Ok(Some(self.finish_line()));
            }
            let (used, found_end) = self.bounded.take(available, &mut self.partial);
            self.inner.consume(used);
            if found_end {
                return Ok(Some(self.finish_line()));
            }
        }
    }

    /// Lines returned so far, the current one included.
    pub(super) fn line_number(&self) -> u64 {
        self.line_number
    }

    fn finish_line(&mut self) -> Line {
        self.line_number += 1;
        Line::complete(
            self.line_number,
            &mut self.bounded,
            &mut self.partial,
            self.max_line_bytes,
        )
    }
}

impl Line {
    /// The line `bounded` took into `partial` (LF excluded), numbered `number`; `partial` is
    /// left empty for the next one. Shared by stdin and `--file`.
    pub(super) fn complete(
        number: u64,
        bounded: &mut BoundedLine,
        partial: &mut Vec<u8>,
        max_line_bytes: usize,
    ) -> Line {
        if let Some(length) = bounded.finish() {
            return Line::TooLong { number, length };
        }
        let mut bytes = std::mem::take(partial);
        // The buffer grew by doubling: give back what a long line left unused, or the queue
        // (which counts the line's length) would hold up to twice --queue-bytes.
        if bytes.capacity() - bytes.len() > SHRINK_ABOVE_UNUSED_BYTES {
            bytes.shrink_to_fit();
        }
        let raw_length = bytes.len() as u64;
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        if bytes.is_empty() {
            Line::Empty { number }
        } else if bytes.len() > max_line_bytes {
            Line::TooLong {
                number,
                length: raw_length,
            }
        } else {
            Line::Message { number, bytes }
        }
    }
}

impl<I: tokio::io::AsyncRead + Unpin> LineReader<tokio::io::BufReader<I>> {
    /// A whole line is buffered: the next line needs no read from the input (in plain mode,
    /// such a read is what acknowledges the lines before it).
    pub(super) fn holds_a_line(&self) -> bool {
        memchr::memchr(b'\n', self.inner.buffer()).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn read_all(input: &[u8], max: usize, buffer: usize) -> Vec<Line> {
        let mut reader = LineReader::new(BufReader::with_capacity(buffer, input), max);
        let mut lines = Vec::new();
        while let Some(line) = reader
            .next_line()
            .await
            .expect("reading a slice cannot fail")
        {
            lines.push(line);
        }
        lines
    }

    fn message(number: u64, bytes: &[u8]) -> Line {
        Line::Message {
            number,
            bytes: bytes.to_vec(),
        }
    }

    #[tokio::test]
    async fn splits_strips_cr_and_keeps_other_bytes() {
        for buffer in [1, 2, 3, 7, 64] {
            let lines = read_all(b"a\r\n\n\xff\x00\tb\r\r\nlast", 100, buffer).await;
            assert_eq!(
                lines,
                vec![
                    message(1, b"a"),
                    Line::Empty { number: 2 },
                    message(3, b"\xff\x00\tb\r"),
                    message(4, b"last"),
                ],
                "buffer size {buffer}"
            );
        }
    }

    #[tokio::test]
    async fn over_long_lines_are_skipped_and_the_stream_goes_on() {
        for buffer in [1, 4, 5, 6, 64] {
            let lines = read_all(
                b"12345\n123456\n1234567890\r\nok\n12345\r\n123456",
                5,
                buffer,
            )
            .await;
            assert_eq!(
                lines,
                vec![
                    message(1, b"12345"),
                    Line::TooLong {
                        number: 2,
                        length: 6
                    },
                    Line::TooLong {
                        number: 3,
                        length: 11
                    },
                    message(4, b"ok"),
                    message(5, b"12345"),
                    Line::TooLong {
                        number: 6,
                        length: 6
                    },
                ],
                "buffer size {buffer}"
            );
        }
    }

    #[tokio::test]
    async fn empty_input_has_no_lines() {
        assert!(read_all(b"", 10, 8).await.is_empty());
        assert_eq!(
            read_all(b"\n", 10, 8).await,
            vec![Line::Empty { number: 1 }]
        );
    }
}
