//! LF-terminated lines as bytes, with a length bound: the one splitting rule for stdin (`send`)
//! and access-log files (`decode`). A line over the bound is counted as it streams past and
//! never held in memory, so a hostile or broken producer cannot make a reader grow without
//! limit. The I/O stays with the callers (async for stdin, blocking for files).

/// The line being assembled from the chunks a buffered reader hands out.
#[derive(Debug)]
pub(crate) struct BoundedLine {
    limit: usize,
    /// Set while skipping an over-long line: bytes of it seen so far.
    skipped: Option<u64>,
}

impl BoundedLine {
    /// Lines of more than `limit` bytes (LF excluded) are skipped.
    pub(crate) fn new(limit: usize) -> Self {
        BoundedLine {
            limit,
            skipped: None,
        }
    }

    /// Takes what belongs to the current line from `available` into `line`, or only counts it
    /// once the line is over the limit. Returns how many bytes to consume, and whether the
    /// line ended (its LF was among them).
    pub(crate) fn take(&mut self, available: &[u8], line: &mut Vec<u8>) -> (usize, bool) {
        let (chunk, found_end) = match memchr::memchr(b'\n', available) {
            Some(end) => (&available[..end], true),
            None => (available, false),
        };
        match &mut self.skipped {
            Some(seen) => *seen += chunk.len() as u64,
            None if line.len() + chunk.len() > self.limit => {
                self.skipped = Some((line.len() + chunk.len()) as u64);
                // Give the memory back at once: the line is not kept.
                *line = Vec::new();
            }
            None => line.extend_from_slice(chunk),
        }
        (chunk.len() + usize::from(found_end), found_end)
    }

    /// Whether part of a line was taken: at end of input, it is a last line without LF.
    pub(crate) fn in_progress(&self, line: &[u8]) -> bool {
        !line.is_empty() || self.skipped.is_some()
    }

    /// Ends the current line: its full length if it was over the limit and skipped.
    pub(crate) fn finish(&mut self) -> Option<u64> {
        self.skipped.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_over_the_limit_is_counted_not_kept() {
        let mut bounded = BoundedLine::new(4);
        let mut line = Vec::new();
        assert_eq!(bounded.take(b"abc", &mut line), (3, false));
        assert_eq!(bounded.take(b"de", &mut line), (2, false));
        assert!(line.is_empty() && bounded.in_progress(&line));
        assert_eq!(bounded.take(b"f\nnext", &mut line), (2, true));
        assert_eq!(bounded.finish(), Some(6));
        assert_eq!(bounded.take(b"next\n", &mut line), (5, true));
        assert_eq!((bounded.finish(), line.as_slice()), (None, &b"next"[..]));
    }
}
