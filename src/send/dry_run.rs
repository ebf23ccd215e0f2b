//! `send --dry-run`: nothing is sent and no file is written.

use std::io::Write as _;

use anyhow::Context;
use tokio::io::BufReader;

use super::input::{Line, LineReader};
use super::outgoing::Labeler;
use crate::exit::{self, Fatal, Status};

/// `--dry-run`: every line through the same reading, labelling and cutting as `send`, and the
/// targets printed instead of sent.
pub(super) fn run(labeler: &Labeler, max_line_bytes: usize) -> exit::Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start the async runtime")
        .map_err(Fatal::usage)?;
    let printed = runtime.block_on(async {
        let stdin = BufReader::with_capacity(256 * 1024, tokio::io::stdin());
        let mut reader = LineReader::new(stdin, max_line_bytes);
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut unsendable = 0u64;
        while let Some(line) = reader.next_line().await? {
            match line {
                Line::Empty { .. } => {}
                Line::TooLong { number, length } => {
                    unsendable += 1;
                    tracing::error!(
                        line = number,
                        "line is {length} bytes, over --max-line-bytes {}; it would be lost",
                        max_line_bytes
                    );
                }
                Line::Message { number, bytes } => {
                    let Some(outgoing) = labeler.prepare(number, bytes) else {
                        continue;
                    };
                    for target in labeler.targets(&outgoing) {
                        writeln!(out, "{number}\t{}\t{target}", target.len())?;
                    }
                }
            }
        }
        out.flush()?;
        std::io::Result::Ok(unsendable)
    });
    match printed {
        Ok(0) => Ok(Status::Success),
        Ok(_) => Ok(Status::Lost),
        Err(e) if exit::reader_went_away(&e) => Ok(Status::Success),
        Err(e) => Err(Fatal::lost(e)),
    }
}
