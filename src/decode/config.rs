//! `decode`'s configuration as typed values, built from the command line at the edge
//! (`cli.rs`).

use std::path::PathBuf;
use std::time::Duration;

use super::output::{Order, Ordering};
use super::window::{Range, TimeSpec, Timestamp};

/// Everything `decode` is told; the meaning of each field is its flag's (`decode --help`).
#[derive(Debug, Clone)]
pub struct Config {
    pub paths: Vec<PathBuf>,
    pub path: Option<String>,
    pub json: bool,
    pub order: Order,
    /// `--reorder-window`; `None`: by format.
    pub reorder_window: Option<Duration>,
    pub reorder_bytes: u64,
    /// The deprecated `--sort`: the default order does it now; only warned about.
    pub sort: bool,
    pub verify_key: Option<PathBuf>,
    pub dedup_window: u64,
    pub max_pending_bytes: u64,
    pub since: Option<TimeSpec>,
    pub until: Option<TimeSpec>,
    pub now: Option<Timestamp>,
    pub follow: bool,
    pub poll_interval: Duration,
    pub gap_grace: Option<Duration>,
    pub edge_slack: Duration,
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub jobs: u16,
    pub s3_endpoint: Option<String>,
}

impl Config {
    /// `--since` and `--until` against the run's "now"; refused unless since is before until.
    pub(super) fn range(&self, now: Timestamp) -> Result<Range, String> {
        let range = Range {
            since: self.since.map(|since| since.resolve(now)),
            until: self.until.map(|until| until.resolve(now)),
        };
        match (range.since, range.until) {
            (Some(since), Some(until)) if since >= until => {
                Err("--since must be before --until".into())
            }
            _ => Ok(range),
        }
    }

    /// `--order sequence`'s bounds; `None` with `--order arrival`.
    pub(super) fn ordering(&self) -> Option<Ordering> {
        (self.order == Order::Sequence).then_some(Ordering {
            window: self.reorder_window,
            max_bytes: self.reorder_bytes,
        })
    }
}

#[cfg(test)]
impl Config {
    /// The flags' defaults, with no input: for the unit tests of decode.
    pub(super) fn for_tests() -> Self {
        Config {
            paths: Vec::new(),
            path: None,
            json: false,
            order: Order::Sequence,
            reorder_window: None,
            reorder_bytes: 64 << 20,
            sort: false,
            verify_key: None,
            dedup_window: 1000,
            max_pending_bytes: 1 << 20,
            since: None,
            until: None,
            now: None,
            follow: false,
            poll_interval: Duration::from_secs(60),
            gap_grace: None,
            edge_slack: Duration::from_secs(300),
            metrics_listen: None,
            jobs: 4,
            s3_endpoint: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::window::parse_time_spec;

    fn at(text: &str) -> Timestamp {
        match parse_time_spec(text) {
            Ok(TimeSpec::At(at)) => at,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn config(since: Option<&str>, until: Option<&str>) -> Config {
        let spec = |text: &str| parse_time_spec(text).expect("a valid time");
        Config {
            since: since.map(spec),
            until: until.map(spec),
            ..Config::for_tests()
        }
    }

    #[test]
    fn times_ago_are_taken_from_now_and_since_must_come_first() {
        let now = at("2026-12-01T12:00:00Z");
        let range = config(Some("2h"), None).range(now).expect("valid");
        assert_eq!(range.since, Some(at("2026-12-01T10:00:00Z")));
        assert_eq!(range.until, None);
        let inside = config(Some("2026-12-01"), Some("1h")).range(now);
        assert!(inside.is_ok(), "{inside:?}");
        let reversed = config(Some("1h"), Some("2h")).range(now);
        assert_eq!(
            reversed.err().as_deref(),
            Some("--since must be before --until")
        );
        assert!(config(Some("1h"), Some("1h")).range(now).is_err());
    }
}
