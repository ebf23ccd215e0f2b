//! `decode`'s configuration as typed values, built from the command line at the edge
//! (`cli.rs`).

use std::path::PathBuf;
use std::time::Duration;

use super::window::{TimeSpec, Timestamp};

/// Everything `decode` is told; the meaning of each field is its flag's (`decode --help`).
#[derive(Debug, Clone)]
pub struct Config {
    pub paths: Vec<PathBuf>,
    pub path: Option<String>,
    pub json: bool,
    pub sort: bool,
    pub verify_key: Option<PathBuf>,
    pub dedup_window: u64,
    pub max_pending_bytes: u64,
    pub since: Option<TimeSpec>,
    pub until: Option<TimeSpec>,
    pub now: Option<Timestamp>,
    pub follow: bool,
    pub poll_interval: Duration,
    pub jobs: u16,
    pub s3_endpoint: Option<String>,
}
