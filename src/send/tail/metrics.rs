//! Per-file metrics of `send --file`, by path: bytes and lines read, and how far reading is
//! behind the file's end (as of the last look).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::metrics::labelled_counter;

#[derive(Debug, Default)]
pub(in crate::send) struct FileMetrics {
    files: Mutex<BTreeMap<String, Counts>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    bytes: u64,
    lines: u64,
    lag: u64,
    read_again: u64,
}

impl FileMetrics {
    fn with(&self, path: &Path, update: impl FnOnce(&mut Counts)) {
        let mut files = self
            .files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        update(files.entry(path.display().to_string()).or_default());
    }

    pub(super) fn line(&self, path: &Path, bytes: u64) {
        self.with(path, |counts| {
            counts.bytes += bytes;
            counts.lines += 1;
        });
    }

    /// The file was read again from its start: truncated, rewritten, or not the file its
    /// stored position was kept for.
    pub(super) fn read_again(&self, path: &Path) {
        self.with(path, |counts| counts.read_again += 1);
    }

    pub(super) fn lag(&self, path: &Path, lag: u64) {
        self.with(path, |counts| counts.lag = lag);
    }

    /// The collector `/metrics` reads these through.
    pub(in crate::send) fn collector(self: &Arc<Self>) -> Box<dyn Collector> {
        Box::new(FileCollector(self.clone()))
    }
}

struct FileCollector(Arc<FileMetrics>);

impl fmt::Debug for FileCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileCollector")
    }
}

impl Collector for FileCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let files: Vec<(String, Counts)> = self
            .0
            .files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(path, counts)| (path.clone(), *counts))
            .collect();
        let e = &mut encoder;
        let series = |pick: fn(&Counts) -> u64| {
            files
                .iter()
                .map(move |(path, counts)| (path.clone(), pick(counts)))
        };
        labelled_counter(
            e,
            "drifter_file_read_bytes",
            "Bytes of whole lines read from each --file.",
            "path",
            series(|c| c.bytes),
        )?;
        labelled_counter(
            e,
            "drifter_file_lines",
            "Lines read from each --file.",
            "path",
            series(|c| c.lines),
        )?;
        labelled_counter(
            e,
            "drifter_file_read_again",
            "Times each --file was read again from its start: truncated, rewritten, or not the \
             file its stored position was kept for (a reused inode).",
            "path",
            series(|c| c.read_again),
        )?;
        let mut lag = e.encode_descriptor(
            "drifter_file_lag_bytes",
            "Bytes of each --file not read yet, as of the last look.",
            None,
            MetricType::Gauge,
        )?;
        for (path, counts) in &files {
            let labels = [("path", path.clone())];
            ConstGauge::new(counts.lag as i64).encode(lag.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
