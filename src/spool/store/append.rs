//! The append side: records framed into a buffer, written with one `write()` per flush, and a full disk met by writing what fits.

use super::*;

impl<T> Spool<T> {
    /// Frames a record into the append buffer, written by the next [`flush`](Self::flush) (or
    /// now, if the buffer is large). `item` is what `take` gives back while it is in memory.
    pub(crate) fn append(&self, payload: &[u8], sequence: u64, item: T) -> Result<(), Refused<T>> {
        self.append_within(payload, sequence, item, true)
    }

    /// [`append`](Self::append) past `--spool-max-bytes`: at a stop, the one line already read
    /// goes in rather than being lost or holding the stop up (issue 21 item 2). Still refused
    /// when the disk is full.
    pub(crate) fn append_over_bound(
        &self,
        payload: &[u8],
        sequence: u64,
        item: T,
    ) -> Result<(), Refused<T>> {
        self.append_within(payload, sequence, item, false)
    }

    pub(super) fn append_within(
        &self,
        payload: &[u8],
        sequence: u64,
        item: T,
        bounded: bool,
    ) -> Result<(), Refused<T>> {
        let mut inner = self.lock();
        let appended = self.append_locked(&mut inner, payload, sequence, item, bounded);
        self.check(&inner);
        appended
    }

    fn append_locked(
        &self,
        inner: &mut Inner<T>,
        payload: &[u8],
        sequence: u64,
        item: T,
        bounded: bool,
    ) -> Result<(), Refused<T>> {
        if let Some(reason) = &inner.failed {
            return Err(Refused::Failed(SpoolError::Failed(reason.clone())));
        }
        if sequence > inner.leased {
            // The caller leases first (`extend_lease`): a number not covered by a durable
            // lease could be given out again after a host crash (issue 21 item 8).
            let reason = format!("sequence number {sequence} is not leased yet");
            return Err(Refused::Failed(SpoolError::Failed(reason)));
        }
        let framed = (RECORD_HEADER_BYTES + payload.len()) as u64;
        let undone = inner.next_index > inner.frontier;
        let alone = self.budget.get().is_none();
        if alone && bounded && undone && inner.bytes + framed > self.limits.max_bytes {
            // A spool on its own (no directory bound): bounded by its own bytes.
            return Err(Refused::Full(item));
        }
        // With the directory's bound, room is taken a segment at a time, when one starts.
        let need = bounded.then(|| (SEGMENT_HEADER_BYTES + framed).max(self.limits.segment_bytes));
        let projected = inner
            .writer
            .as_ref()
            .map(|w| w.offset + inner.buffer.len() as u64);
        let rotate = projected.is_some_and(|size| {
            size > SEGMENT_HEADER_BYTES && size + framed > self.limits.segment_bytes
        });
        if rotate && inner.rotated.len() >= MAX_ROTATED {
            return Err(Refused::Full(item));
        }
        if rotate || inner.writer.is_none() {
            let started = self
                .write_buffer(inner)
                .and_then(|()| self.start_segment(inner, need));
            match started {
                Ok(()) => {}
                Err(Refused::Full(())) => return Err(Refused::Full(item)),
                Err(Refused::Failed(e)) => return Err(Refused::Failed(e)),
            }
        }
        let meta = RecordMeta {
            index: inner.next_index,
            appended_ms: now_ms(),
            sequence,
        };
        record::frame(&mut inner.buffer, meta, payload);
        inner.buffered.push(Windowed {
            meta,
            item,
            bytes: payload.len(),
        });
        inner.next_index += 1;
        inner.bytes += framed;
        inner.last_sequence = inner.last_sequence.max(sequence);
        inner.sequencing |= sequence > 0;
        if lease::running_low(inner) {
            self.lease_low.notify_one();
        }
        if inner.buffer.len() >= FLUSH_ABOVE_BYTES {
            // The record is in: a full disk here only delays the write to the next flush.
            if let Err(Refused::Failed(e)) = self.write_buffer(inner) {
                return Err(Refused::Failed(e));
            }
        }
        Ok(())
    }

    /// Gives up the records appended but not yet written (a disk still full when the drain
    /// deadline passed): their items, to be accounted for by the caller.
    pub(crate) fn abandon_buffered(&self) -> Vec<T> {
        let mut inner = self.lock();
        let bytes = inner.buffer.len() as u64;
        inner.buffer.clear();
        inner.bytes -= bytes;
        inner.next_index = inner.written_end;
        let items = inner.buffered.drain(..).map(|w| w.item).collect();
        self.check(&inner);
        items
    }

    /// Writes what was appended, with one `write()`: from then on it survives a kill.
    pub(crate) fn flush(&self) -> Result<(), Refused> {
        let mut inner = self.lock();
        let written = self.write_buffer(&mut inner);
        self.check(&inner);
        written
    }

    pub(super) fn write_buffer(&self, inner: &mut Inner<T>) -> Result<(), Refused> {
        if inner.buffer.is_empty() {
            return Ok(());
        }
        if inner.writer.is_none() {
            let need = SEGMENT_HEADER_BYTES + inner.buffer.len() as u64;
            self.start_segment(inner, Some(need.max(self.limits.segment_bytes)))?;
        }
        let Some(writer) = &inner.writer else {
            return Err(self.fail(inner, "no segment to write to".into()));
        };
        let (file, offset) = (writer.file.clone(), writer.offset);
        let (records, bytes) = match self.disk.write_at(&file, &inner.buffer, offset) {
            Ok(()) => (inner.buffered.len(), inner.buffer.len()),
            Err(e) => {
                // Whatever part of the write landed is cut off, so a retry appends whole
                // records.
                if let Err(cut) = self.disk.truncate(&file, offset) {
                    let reason = format!("cannot undo a failed write ({e}): {cut}");
                    return Err(self.fail(inner, reason));
                }
                if !record::is_full(&e) {
                    return Err(self.fail(inner, format!("cannot write to the spool: {e}")));
                }
                // A full disk: as many whole records as fit, so that delivering them makes
                // room for the rest.
                let (records, bytes) = self.write_what_fits(inner, &file, offset);
                if records == 0 {
                    // The rest goes to a new segment once there is room, so that this one
                    // can be deleted when it is done: on a full disk, that is where the room
                    // comes from. A segment with no record yet stays the one written to.
                    if inner.segments.back().is_some_and(|s| s.end > s.first) {
                        self.close_writer(inner);
                    }
                    return Err(Refused::Full(()));
                }
                (records, bytes)
            }
        };
        self.written(inner, records, bytes);
        if inner.buffered.is_empty() {
            Ok(())
        } else {
            Err(Refused::Full(()))
        }
    }

    /// After a write failed for a full disk: writes the buffered records one by one until one
    /// does not fit. Returns how many records, and bytes, were written.
    pub(super) fn write_what_fits(
        &self,
        inner: &Inner<T>,
        file: &File,
        offset: u64,
    ) -> (usize, usize) {
        let mut written = 0;
        for (records, windowed) in inner.buffered.iter().enumerate() {
            let frame = &inner.buffer[written..written + RECORD_HEADER_BYTES + windowed.bytes];
            if self
                .disk
                .write_at(file, frame, offset + written as u64)
                .is_err()
            {
                let _ = self.disk.truncate(file, offset + written as u64);
                return (records, written);
            }
            written += frame.len();
        }
        (inner.buffered.len(), written)
    }

    /// The first `records` buffered records (`bytes` of the buffer) are in the file.
    pub(super) fn written(&self, inner: &mut Inner<T>, records: usize, bytes: usize) {
        inner.buffer.drain(..bytes);
        if let Some(writer) = &mut inner.writer {
            writer.offset += bytes as u64;
        }
        inner.dirty = true;
        inner.written_end += records as u64;
        let written_end = inner.written_end;
        if let Some(segment) = inner.segments.back_mut() {
            segment.end = written_end;
            segment.bytes += bytes as u64;
        }
        let buffered: Vec<Windowed<T>> = inner.buffered.drain(..records).collect();
        for windowed in buffered {
            // The window holds only a contiguous run; once it overflows, the rest is read
            // from the files until it has emptied.
            let contiguous = match inner.window.back() {
                Some(back) => back.meta.index + 1 == windowed.meta.index,
                None => windowed.meta.index >= inner.next_take,
            };
            if contiguous && inner.window_bytes + windowed.bytes <= self.limits.window_bytes {
                inner.window_bytes += windowed.bytes;
                inner.window.push_back(windowed);
            }
        }
        self.readable.notify_one();
    }
}
