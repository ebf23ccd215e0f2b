//! `send`'s configuration as typed values, built from the command line at the edge
//! (`cli.rs`), and the checks on it that need no I/O: each a pure function, so a bad value is
//! refused before any file, socket or spool is opened.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::endpoint::StatusSet;
use super::http2::HttpVersion;
use super::outgoing::{IdMode, Outgoing};
use super::pipeline::PipelineConfig;
use super::retry::{Backoff, RetryPolicy};
use super::session::omprog::{Mode, ProtocolConfig};
use super::tls::Trust;
use crate::spool::SyncPolicy;

/// Where `send --file` starts in a file it has no position for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileStart {
    Beginning,
    End,
}

/// Everything `send` is told; the meaning of each field is its flag's (`send --help`).
#[derive(Debug, Clone)]
pub struct Config {
    pub url: String,
    pub concurrency: u32,
    pub accept: StatusSet,
    pub max_line_bytes: Option<u64>,
    pub max_url_bytes: u64,
    pub queue_messages: u32,
    pub queue_bytes: Option<u64>,
    pub spool: Option<PathBuf>,
    pub file: Vec<String>,
    pub file_start: FileStart,
    pub file_poll_interval: Duration,
    pub spool_sync: SyncPolicy,
    pub spool_sync_interval: Duration,
    pub spool_max_bytes: u64,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub max_attempts: u32,
    pub drain_timeout: Duration,
    pub dead_letter: Option<PathBuf>,
    pub proxy: Option<String>,
    pub trust: Trust,
    pub ca_cert: Option<PathBuf>,
    pub insecure: bool,
    pub http: HttpVersion,
    pub confirm: bool,
    pub transactions: bool,
    pub begin_mark: String,
    pub commit_mark: String,
    pub keepalive_interval: Duration,
    pub message_timeout: Duration,
    pub commit_timeout: Duration,
    pub probe: bool,
    pub metrics_listen: Option<SocketAddr>,
    pub stats_interval: Option<Duration>,
    pub ids: Option<IdMode>,
    pub sequence: bool,
    pub sign_key: Option<PathBuf>,
    pub dry_run: bool,
}

impl Config {
    /// `--max-line-bytes`, or its default: 16M, or less with `--spool` when a spool record
    /// cannot hold that. A line the spool cannot take is refused here, at start, rather than
    /// acknowledged and then dropped as damaged (above 1 GiB) or held until the spool is empty
    /// (above `--spool-max-bytes`) (issue 21 item 12).
    pub(super) fn max_line_bytes(&self) -> anyhow::Result<u64> {
        const DEFAULT: u64 = 16 << 20;
        if self.spool.is_none() {
            return Ok(self.max_line_bytes.unwrap_or(DEFAULT));
        }
        self.check_spool_max_bytes()?;
        let largest = crate::spool::largest_payload(self.spool_max_bytes)
            .saturating_sub(Outgoing::RECORD_EXTRA_BYTES);
        match self.max_line_bytes {
            None => Ok(DEFAULT.min(largest)),
            Some(bytes) if bytes <= largest => Ok(bytes),
            Some(bytes) => anyhow::bail!(
                "--max-line-bytes {bytes} is more than the spool holds in one record: at most {largest} with --spool-max-bytes {}",
                self.spool_max_bytes
            ),
        }
    }

    pub(super) fn check_spool_max_bytes(&self) -> anyhow::Result<()> {
        if self.spool_max_bytes < crate::spool::MIN_MAX_BYTES {
            anyhow::bail!(
                "--spool-max-bytes must be at least {}",
                crate::spool::MIN_MAX_BYTES
            );
        }
        Ok(())
    }

    /// The spool's own settings, checked before the spool is opened.
    pub(super) fn check_spool(&self) -> anyhow::Result<()> {
        self.check_spool_max_bytes()?;
        if self.spool_sync_interval.is_zero() {
            anyhow::bail!("--spool-sync-interval must be above zero");
        }
        Ok(())
    }

    pub(super) fn retry_policy(&self) -> anyhow::Result<RetryPolicy> {
        if self.retry_initial.is_zero() || self.retry_max < self.retry_initial {
            anyhow::bail!("--retry-initial must be above zero and at most --retry-max");
        }
        Ok(RetryPolicy {
            backoff: Backoff {
                initial: self.retry_initial,
                max: self.retry_max,
            },
            max_attempts: self.max_attempts,
        })
    }

    /// rsyslog's omprog protocol: the mode and its marks and timeouts.
    pub(super) fn protocol(&self) -> anyhow::Result<ProtocolConfig> {
        let mode = match (self.confirm, self.transactions) {
            (_, true) => Mode::Transactions,
            (true, false) => Mode::Confirm,
            (false, false) => Mode::Plain,
        };
        if self.begin_mark.is_empty()
            || self.commit_mark.is_empty()
            || self.begin_mark == self.commit_mark
        {
            anyhow::bail!("--begin-mark and --commit-mark must be different and not empty");
        }
        if self.keepalive_interval.is_zero() {
            anyhow::bail!("--keepalive-interval must be above zero");
        }
        Ok(ProtocolConfig {
            mode,
            begin_mark: self.begin_mark.clone().into_bytes(),
            commit_mark: self.commit_mark.clone().into_bytes(),
            keepalive: self.keepalive_interval,
            message_timeout: self.message_timeout,
            commit_timeout: self.commit_timeout,
        })
    }

    /// The queue's bounds: `--queue-bytes` defaults to 64M, or 4M with `--spool`, where the
    /// backlog is on disk.
    pub(super) fn pipeline(&self) -> PipelineConfig {
        PipelineConfig {
            concurrency: self.concurrency as usize,
            queue_messages: self.queue_messages as usize,
            queue_bytes: self.queue_bytes.unwrap_or(if self.spool.is_some() {
                4 << 20
            } else {
                64 << 20
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults of `send --help`.
    fn config() -> Config {
        let seconds = Duration::from_secs;
        Config {
            url: "http://lb.test/".into(),
            concurrency: 64,
            accept: "503,200-299".parse().expect("a valid status list"),
            max_line_bytes: None,
            max_url_bytes: 8192,
            queue_messages: 10_000,
            queue_bytes: None,
            spool: None,
            file: Vec::new(),
            file_start: FileStart::Beginning,
            file_poll_interval: Duration::from_millis(250),
            spool_sync: SyncPolicy::Interval,
            spool_sync_interval: Duration::from_millis(500),
            spool_max_bytes: 1 << 30,
            connect_timeout: seconds(5),
            request_timeout: seconds(10),
            retry_initial: Duration::from_millis(200),
            retry_max: seconds(30),
            max_attempts: 10,
            drain_timeout: seconds(8),
            dead_letter: None,
            proxy: None,
            trust: Trust::Both,
            ca_cert: None,
            insecure: false,
            http: HttpVersion::Auto,
            confirm: false,
            transactions: false,
            begin_mark: "BEGIN TRANSACTION".into(),
            commit_mark: "COMMIT TRANSACTION".into(),
            keepalive_interval: seconds(2),
            message_timeout: seconds(30),
            commit_timeout: seconds(30),
            probe: false,
            metrics_listen: None,
            stats_interval: None,
            ids: None,
            sequence: false,
            sign_key: None,
            dry_run: false,
        }
    }

    #[test]
    fn the_defaults_pass_every_check() {
        let config = config();
        assert_eq!(config.max_line_bytes().expect("valid"), 16 << 20);
        assert_eq!(config.retry_policy().expect("valid").max_attempts, 10);
        assert_eq!(config.protocol().expect("valid").mode, Mode::Plain);
        assert_eq!(config.pipeline().queue_bytes, 64 << 20);
        config.check_spool().expect("valid");
    }

    #[test]
    fn the_spool_bounds_the_line_and_the_queue() {
        let spooled = Config {
            spool: Some("/nonexistent".into()),
            spool_max_bytes: 1 << 20,
            ..config()
        };
        let largest = spooled.max_line_bytes().expect("valid");
        assert!(largest < 1 << 20, "{largest}");
        assert_eq!(spooled.pipeline().queue_bytes, 4 << 20);
        let too_long = Config {
            max_line_bytes: Some(largest + 1),
            ..spooled.clone()
        };
        assert!(too_long.max_line_bytes().is_err());
        let too_small = Config {
            spool_max_bytes: crate::spool::MIN_MAX_BYTES - 1,
            ..spooled.clone()
        };
        assert!(too_small.max_line_bytes().is_err());
        let never_synced = Config {
            spool_sync_interval: Duration::ZERO,
            ..spooled
        };
        assert!(never_synced.check_spool().is_err());
    }

    #[test]
    fn retry_delays_must_be_ordered_and_above_zero() {
        let zero = Config {
            retry_initial: Duration::ZERO,
            ..config()
        };
        assert!(zero.retry_policy().is_err());
        let reversed = Config {
            retry_max: Duration::from_millis(100),
            ..config()
        };
        assert!(reversed.retry_policy().is_err());
    }

    #[test]
    fn protocol_modes_and_marks() {
        let transactions = Config {
            transactions: true,
            ..config()
        };
        assert_eq!(
            transactions.protocol().expect("valid").mode,
            Mode::Transactions
        );
        let confirm = Config {
            confirm: true,
            ..config()
        };
        assert_eq!(confirm.protocol().expect("valid").mode, Mode::Confirm);
        let same_marks = Config {
            commit_mark: "BEGIN TRANSACTION".into(),
            ..config()
        };
        assert!(same_marks.protocol().is_err());
        let empty_mark = Config {
            begin_mark: String::new(),
            ..config()
        };
        assert!(empty_mark.protocol().is_err());
        let no_keepalive = Config {
            keepalive_interval: Duration::ZERO,
            ..config()
        };
        assert!(no_keepalive.protocol().is_err());
    }
}
