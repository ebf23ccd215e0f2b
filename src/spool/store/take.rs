//! The take side: the in-memory window of recent records, the files otherwise.

use super::*;

impl<T> Spool<T> {
    /// The next record for delivery, if one is written and not yet taken.
    pub(crate) fn take(&self) -> Option<Taken<T>> {
        let mut inner = self.lock();
        let taken = self.take_locked(&mut inner);
        self.check(&inner);
        taken
    }

    fn take_locked(&self, inner: &mut Inner<T>) -> Option<Taken<T>> {
        loop {
            if inner.next_take >= inner.written_end {
                return None;
            }
            let index = inner.next_take;
            while inner.window.front().is_some_and(|w| w.meta.index < index) {
                if let Some(stale) = inner.window.pop_front() {
                    inner.window_bytes -= stale.bytes;
                }
            }
            if inner.window.front().is_some_and(|w| w.meta.index == index)
                && let Some(windowed) = inner.window.pop_front()
            {
                inner.window_bytes -= windowed.bytes;
                inner.next_take = index + 1;
                return Some(Taken {
                    meta: windowed.meta,
                    body: Body::Item(windowed.item),
                });
            }
            match self.read_from_disk(inner, index) {
                Ok((meta, payload)) => {
                    // Indices without a record (skipped as corrupt at recovery) count as done.
                    for missing in index..meta.index {
                        self.mark_done(inner, missing);
                    }
                    inner.next_take = meta.index + 1;
                    return Some(Taken {
                        meta,
                        body: Body::Payload(payload),
                    });
                }
                Err(ReadFailure::Io(e)) => {
                    // Not the data's fault (say, out of file descriptors): try again later.
                    inner.reader = None;
                    tracing::error!("spool {}: cannot read record {index} back: {e}", self.name);
                    return None;
                }
                Err(ReadFailure::Corrupt) => {
                    // Damaged after it was written and checked: given up, counted, and never a
                    // reason to stop.
                    let skip_to = inner
                        .segments
                        .iter()
                        .find(|s| s.end > index)
                        .map_or(inner.written_end, |s| s.end.max(index + 1))
                        .min(inner.written_end);
                    tracing::error!(
                        "spool {}: records {index} to {} are damaged and cannot be read back; skipped",
                        self.name,
                        skip_to - 1
                    );
                    inner.corrupt_at_runtime += skip_to - index;
                    for missing in index..skip_to {
                        self.mark_done(inner, missing);
                    }
                    inner.next_take = skip_to;
                    inner.reader = None;
                }
            }
        }
    }

    /// The first good record at or after `index`, from the segment files.
    pub(super) fn read_from_disk(
        &self,
        inner: &mut Inner<T>,
        index: u64,
    ) -> Result<(RecordMeta, Vec<u8>), ReadFailure> {
        let segment = inner
            .segments
            .iter()
            .find(|s| s.end > index)
            .ok_or(ReadFailure::Corrupt)?;
        let (first, path, segment_bytes, skips) = (
            segment.first,
            segment.path.clone(),
            segment.bytes,
            segment.skips.clone(),
        );
        let positioned = inner
            .reader
            .as_ref()
            .is_some_and(|r| r.segment_first == first && r.next <= index);
        if !positioned {
            let mut file = self.disk.open(&path).map_err(|e| {
                if super::super::disk::is_not_regular(&e) {
                    // Replaced since recovery by something that must not be read (issue 28).
                    ReadFailure::Corrupt
                } else {
                    ReadFailure::Io(e)
                }
            })?;
            file.seek(SeekFrom::Start(SEGMENT_HEADER_BYTES))
                .map_err(ReadFailure::Io)?;
            inner.reader = Some(Reader {
                segment_first: first,
                file: BufReader::with_capacity(128 * 1024, file),
                next: first,
                offset: SEGMENT_HEADER_BYTES,
            });
        }
        let reader = inner.reader.as_mut().ok_or(ReadFailure::Corrupt)?;
        let read = |file: &mut BufReader<File>, buffer: &mut [u8]| {
            file.read_exact(buffer).map_err(|e| match e.kind() {
                // Records below written_end are whole in the file: short means damaged.
                io::ErrorKind::UnexpectedEof => ReadFailure::Corrupt,
                _ => ReadFailure::Io(e),
            })
        };
        loop {
            if let Some(&(_, past)) = skips
                .iter()
                .find(|&&(from, to)| from <= reader.offset && reader.offset < to)
            {
                reader
                    .file
                    .seek(SeekFrom::Start(past))
                    .map_err(ReadFailure::Io)?;
                reader.offset = past;
            }
            let mut header_bytes = [0u8; RECORD_HEADER_BYTES];
            read(&mut reader.file, &mut header_bytes)?;
            let header = record::parse_header(&header_bytes);
            // A length past the file's end is damage: never a buffer of that size (issue 28).
            if header.len > record::MAX_PAYLOAD_BYTES || u64::from(header.len) > segment_bytes {
                return Err(ReadFailure::Corrupt);
            }
            let mut payload = vec![0; header.len as usize];
            read(&mut reader.file, &mut payload)?;
            reader.offset += (RECORD_HEADER_BYTES + payload.len()) as u64;
            if !header.matches(&header_bytes, &payload) {
                return Err(ReadFailure::Corrupt);
            }
            reader.next = header.meta.index + 1;
            if header.meta.index >= index {
                return Ok((header.meta, payload));
            }
        }
    }
}
