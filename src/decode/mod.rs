//! The `decode` command: access-log files in, the messages drifter sent out.
//!
//! Streams: one line at a time, bounded in length, so memory does not grow with the input
//! (the order holds messages within a window bounded by time and bytes). Everything that
//! is not a drifter message is counted, never mixed into the output: other clients (a public
//! load balancer gets scanners and bots), lines that do not parse (reported with file and line
//! number), and requests that carry no message (the `--probe` request).
//!
//! Data path: `inputs` groups what is named, `walk` finds and opens local inputs and `s3`
//! lists and streams objects (both in `queue`'s time order, pruned by `window` for
//! `--since`/`--until`), the `decoder` takes each line apart (with
//! [`crate::access_log`] and [`crate::wire`]), `reassembly` joins fragments and tracks ids, `gaps`
//! judges which sequence numbers are missing (from each sender's `runs` of numbers seen),
//! `order` puts each sender's messages in sequence order (the rest by time) and `output` writes
//! them. `follow` looks again for new inputs.
//!
//! Over 400 lines with its tests: the command's checks, the reading of local, S3 and followed
//! inputs, and the summary are its phases, read in order.

mod config;
mod decoder;
mod follow;
mod gaps;
mod inputs;
mod metrics;
mod nested;
mod numbered;
mod order;
mod output;
mod queue;
mod reassembly;
mod runs;
mod s3;
mod s3_error;
mod texts;
mod turns;
mod walk;
mod window;

use std::io::{self, Write};

use crate::exit::{self, Fatal, Status};
use crate::key_file;

pub use config::Config;
pub use decoder::{Counts, Decoder};
pub use output::Order;
pub use window::{Clock, Range, TimeSpec, Timestamp, parse_time, parse_time_spec};

use inputs::{Group, Input};
use s3::{Listed, S3, S3Url};
use walk::Pass;

pub fn run(args: &Config) -> exit::Outcome {
    let verifier = args
        .verify_key
        .as_deref()
        .map(key_file::load)
        .transpose()
        .map_err(Fatal::usage)?;
    let inputs = inputs::named(args).map_err(|e| Fatal::usage(anyhow::anyhow!(e)))?;
    if args.sort {
        tracing::warn!("--sort is deprecated: decode orders by default now (see --order)");
    }
    let metrics_listener = args
        .metrics_listen
        .map(crate::metrics::bind)
        .transpose()
        .map_err(Fatal::usage)?;
    let clock = args.now.map_or_else(Clock::default, Clock::starting_at);
    let now = clock.now();
    let range = args
        .range(now)
        .map_err(|e| Fatal::usage(anyhow::anyhow!(e)))?;
    let reads_s3 = inputs.iter().any(|input| matches!(input, Input::S3(_)));
    let mut s3 = if args.follow || reads_s3 {
        let s3 = S3::new(args.s3_endpoint.clone(), usize::from(args.jobs)).map_err(|e| {
            Fatal::usage(anyhow::Error::new(e).context("cannot start the S3 client"))
        })?;
        Some(s3)
    } else {
        None
    };
    if reads_s3
        && std::env::var_os("AWS_PROFILE").is_some()
        && std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
    {
        tracing::warn!(
            "AWS_PROFILE is not read: export the profile's keys, e.g. eval \"$(aws configure export-credentials --format env)\""
        );
    }
    let shutdown = match (&s3, args.follow) {
        (Some(s3), true) => Some(
            follow::stop_on_signals(s3.runtime())
                .map_err(|e| Fatal::io(anyhow::Error::new(e).context("cannot handle signals")))?,
        ),
        _ => None,
    };
    // --metrics-listen requires --follow, which always has a runtime and a shutdown.
    let published = match (&s3, metrics_listener, &shutdown) {
        (Some(s3), Some(listener), Some(shutdown)) => {
            Some(metrics::serve(listener, s3.runtime(), clock, shutdown))
        }
        _ => None,
    };

    let stdout = io::stdout().lock();
    let mut decoder = Decoder::new(
        args,
        range,
        verifier,
        io::BufWriter::with_capacity(256 * 1024, stdout),
    );
    let mut reading = Reading {
        decoder: &mut decoder,
        s3: s3.as_mut(),
        follow: args.follow,
        stopped: shutdown.as_ref().map(|shutdown| shutdown.stopped()),
        published,
    };
    let result = reading
        .run(&inputs, range, args.poll_interval, clock)
        .and_then(|()| decoder.finish());
    let outcome = match result {
        Ok(()) => Ok(summarize(&decoder.counts, &range, args.order)),
        Err(e) if exit::reader_went_away(&e) => Ok(Status::Success),
        Err(e) => {
            let error = anyhow::Error::new(e).context("cannot write the output");
            Err(Fatal::io(error))
        }
    };
    if let (Some(s3), Some(shutdown)) = (&s3, shutdown) {
        s3.runtime().block_on(shutdown.join());
    }
    outcome
}

/// The summary line, and the exit status it means.
fn summarize(counts: &Counts, range: &Range, order: Order) -> Status {
    let outside = if range.is_unbounded() {
        String::new()
    } else {
        format!(", {} outside --since/--until", counts.outside)
    };
    let late = match order {
        Order::Sequence => format!("; {} late (written out of order)", counts.late),
        Order::Arrival => String::new(),
    };
    tracing::info!(
        "decoded {} messages from {} lines in {} files; skipped {} from other clients, {} without a message, {} malformed, {} duplicates, {} forged{outside}; {} incomplete messages, {} missing by sequence number{late}",
        counts.messages,
        counts.lines,
        counts.files,
        counts.other,
        counts.without_message,
        counts.malformed,
        counts.duplicates,
        counts.forged,
        counts.incomplete,
        counts.missing
    );
    if counts.unreadable > 0 {
        Status::Error
    } else if counts.incomplete > 0 || counts.missing > 0 {
        Status::Lost
    } else {
        Status::Success
    }
}

fn stop_requested(stopped: Option<&tokio::sync::watch::Receiver<bool>>) -> bool {
    stopped.is_some_and(|stopped| *stopped.borrow())
}

/// Reading the inputs: once, or again and again with `--follow`.
struct Reading<'a, W: Write> {
    decoder: &'a mut Decoder<W>,
    s3: Option<&'a mut S3>,
    follow: bool,
    stopped: Option<tokio::sync::watch::Receiver<bool>>,
    /// `--metrics-listen`: where each look's snapshot goes.
    published: Option<metrics::Published>,
}

impl<W: Write> Reading<'_, W> {
    /// The first read of every input; with `--follow`, a look for new ones every `poll`,
    /// until a stop signal.
    fn run(
        &mut self,
        inputs: &[Input],
        range: Range,
        poll: std::time::Duration,
        clock: Clock,
    ) -> io::Result<()> {
        let mut seen = self.follow.then(follow::Seen::default);
        self.read_all(inputs, range, &mut seen, true)?;
        let Some(mut stopped) = self.stopped.clone() else {
            return Ok(());
        };
        self.confirm_gaps(clock)?;
        while !*stopped.borrow() {
            let Some(runtime) = self.s3.as_deref().map(S3::runtime) else {
                break;
            };
            if follow::wait(runtime, &mut stopped, poll) {
                break;
            }
            let listing = follow::later_listing(&range, clock.now());
            if let Some(seen) = &mut seen {
                seen.forget_outside(&listing);
            }
            self.read_all(inputs, listing, &mut seen, false)?;
            self.confirm_gaps(clock)?;
        }
        // What the grace confirmed since the last look counts too.
        self.confirm_gaps(clock)
    }

    /// `--follow`: the sequence gaps confirmed by now, reported as they are, the messages
    /// whose reorder window the clock has passed, and the metrics.
    fn confirm_gaps(&mut self, clock: Clock) -> io::Result<()> {
        let now = clock.now();
        self.decoder.confirm_gaps(now);
        self.decoder.release_until(now)?;
        if let Some(published) = &self.published {
            let snapshot = metrics::Snapshot {
                counts: self.decoder.counts.clone(),
                newest_entry: self.decoder.newest_entry(),
                active_senders: self
                    .decoder
                    .active_senders(now.minus_micros(metrics::ACTIVE_FOR_MICROS)),
            };
            metrics::publish(published, snapshot);
        }
        self.decoder.flush()
    }

    fn stop_requested(&self) -> bool {
        stop_requested(self.stopped.as_ref())
    }

    /// One read of every input: the first, or a later look of `--follow`. The local paths
    /// are read together, where the first is named, and so are the prefixes of one bucket:
    /// each group in one time order, for the reorder window.
    fn read_all(
        &mut self,
        inputs: &[Input],
        listing: Range,
        seen: &mut Option<follow::Seen>,
        first: bool,
    ) -> io::Result<()> {
        for group in inputs::groups(inputs) {
            if self.stop_requested() {
                break;
            }
            match group {
                Group::Stdin => walk::decode_stdin(self.decoder)?,
                Group::Local(paths) => {
                    let mut pass = Pass {
                        listing,
                        seen: seen.as_mut(),
                    };
                    let stopped = self.stopped.clone();
                    let stop = || stop_requested(stopped.as_ref());
                    walk::decode_local(self.decoder, &paths, &mut pass, &stop)?;
                }
                Group::S3(urls) => self.read_s3(&urls, listing, seen, first)?,
            }
            if self.follow {
                self.decoder.flush()?;
            }
        }
        Ok(())
    }

    fn read_s3(
        &mut self,
        urls: &[&S3Url],
        listing: Range,
        seen: &mut Option<follow::Seen>,
        first: bool,
    ) -> io::Result<()> {
        let Some(s3) = self.s3.as_deref_mut() else {
            return Ok(());
        };
        let mut objects = s3.objects(urls, listing, seen.take());
        for listed in objects.by_ref() {
            match listed {
                Listed::Object { name, body } => {
                    self.decoder.decode_stream(&name, body)?;
                    if self.follow {
                        self.decoder.flush()?;
                    }
                }
                Listed::Failed { what, error } => {
                    tracing::error!("cannot {what}: {error}");
                    self.decoder.counts.unreadable += 1;
                }
                Listed::Nothing { name } if self.follow => {
                    if first {
                        tracing::info!("nothing under {name} yet");
                    }
                }
                Listed::Nothing { name } => {
                    tracing::error!("cannot read {name}: no such key or prefix");
                    self.decoder.counts.unreadable += 1;
                }
            }
            if self.stop_requested() {
                break;
            }
        }
        *seen = objects.finish();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::decoder::MAX_LINE_BYTES;
    use super::*;

    fn args() -> Config {
        Config::for_tests()
    }

    fn decode(args: &Config, input: &[u8]) -> (Vec<u8>, Counts) {
        let mut decoder = Decoder::new(args, Range::default(), None, Vec::new());
        decoder.decode_stream("test", input).expect("decodes");
        decoder.finish().expect("flushes");
        (decoder.output.out, decoder.counts)
    }

    const DRIFTER: &str = "2015-05-13T23:39:43.945958Z lb 10.0.0.9:2817 - -1 -1 -1 503 0 0 0 \"GET http://h:80/?hello%20w%C3%B6rld HTTP/1.1\" \"drifter-rsyslog/0.1.0\" - -\n";
    const SCANNER: &str = "2015-05-13T23:39:44.000000Z lb 10.0.0.9:2817 - -1 -1 -1 503 0 0 0 \"GET http://h:80/wp-login.php?x=1 HTTP/1.1\" \"Mozilla/5.0\" - -\n";
    const PROBE: &str = "2015-05-13T23:39:42.000000Z lb 10.0.0.9:2817 - -1 -1 -1 503 0 0 0 \"GET http://h:80/ HTTP/1.1\" \"drifter-rsyslog/0.1.0\" - -\n";
    const LF_INSIDE: &str = "2015-05-13T23:39:45.000000Z lb 10.0.0.9:2817 - -1 -1 -1 503 0 0 0 \"GET http://h:80/?a%0Ab HTTP/1.1\" \"drifter-rsyslog/0.1.0\" - -\n";

    #[test]
    fn keeps_drifter_messages_and_counts_the_rest() {
        let input = [DRIFTER, SCANNER, PROBE, LF_INSIDE, "garbage\n"].concat();
        let (out, counts) = decode(&args(), input.as_bytes());
        assert_eq!(out, "hello wörld\n".as_bytes());
        assert_eq!(
            counts,
            Counts {
                files: 1,
                lines: 5,
                messages: 1,
                other: 1,
                without_message: 1,
                malformed: 2,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn an_empty_message_with_extensions_is_without_a_message() {
        // Issue 28, finding 3: `/?&i=x2` printed an empty line while `/?` was counted; send
        // never sends an empty message, so neither is one.
        let with = |query: &str| DRIFTER.replace("?hello%20w%C3%B6rld", query);
        let input = [
            with("?&i=x2"),
            with("?&i=x3&q=s1.1"),
            with("?&i=x4&f=1.1"),
            with("?"),
            DRIFTER.to_string(),
        ]
        .concat();
        let (out, counts) = decode(&args(), input.as_bytes());
        assert_eq!(out, "hello wörld\n".as_bytes());
        assert_eq!((counts.messages, counts.without_message), (1, 4));
        assert_eq!((counts.malformed, counts.missing), (0, 0));
    }

    #[test]
    fn selects_by_path_prefix_instead() {
        let mut by_path = args();
        by_path.path = Some("/app".into());
        let other_agent = DRIFTER
            .replace("h:80/?", "h:80/app?")
            .replace("drifter-rsyslog/0.1.0", "curl/8.0");
        let input = [DRIFTER, SCANNER, &other_agent].concat();
        let (out, counts) = decode(&by_path, input.as_bytes());
        assert_eq!(out, "hello wörld\n".as_bytes());
        assert_eq!(counts.other, 2);
        by_path.path = Some("/wp-".into());
        let (out, counts) = decode(&by_path, SCANNER.as_bytes());
        assert!(out.is_empty(), "`x=1` is not a query drifter writes");
        assert_eq!(counts.malformed, 1);
    }

    #[test]
    fn reads_gzip_by_content_and_sorts_by_time() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let later = DRIFTER
            .replace("43.945958Z", "59.000000Z")
            .replace("hello", "later");
        gz.write_all(later.as_bytes()).expect("compress");
        gz.write_all(DRIFTER.as_bytes()).expect("compress");
        let compressed = gz.finish().expect("compress");
        let (out, _) = decode(&args(), &compressed);
        assert_eq!(out, "hello wörld\nlater wörld\n".as_bytes());
        let as_read = Config {
            order: Order::Arrival,
            ..args()
        };
        let (out, _) = decode(&as_read, &compressed);
        assert_eq!(out, "later wörld\nhello wörld\n".as_bytes());
    }

    #[test]
    fn json_lines_carry_the_metadata() {
        let mut json = args();
        json.json = true;
        let (out, _) = decode(&json, DRIFTER.as_bytes());
        let value: serde_json::Value = serde_json::from_slice(&out).expect("one JSON object");
        assert_eq!(value["message"], "hello wörld");
        assert_eq!(value["status"], 503);
        assert_eq!(value["client"], "10.0.0.9:2817");
        assert_eq!(value["time"], "2015-05-13T23:39:43.945958Z");
        assert_eq!(value["file"], "test");
    }

    #[test]
    fn over_long_lines_are_skipped_unbuffered() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.push(b'\n');
        input.extend_from_slice(DRIFTER.as_bytes());
        let (out, counts) = decode(&args(), &input);
        assert_eq!(out, "hello wörld\n".as_bytes());
        assert_eq!(counts.malformed, 1);
    }

    #[test]
    fn directories_are_walked_without_following_symlinked_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a.log"), DRIFTER).expect("write");
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).expect("symlink");
        std::os::unix::fs::symlink(dir.path().join("a.log"), dir.path().join("b.log"))
            .expect("symlink");
        let mut decoder = Decoder::new(&args(), Range::default(), None, Vec::new());
        let mut pass = Pass {
            listing: Range::default(),
            seen: None,
        };
        walk::decode_local(&mut decoder, &[dir.path()], &mut pass, &|| false).expect("decodes");
        assert_eq!(
            decoder.counts.files, 2,
            "a.log and the file link, not the loop"
        );
        assert_eq!(decoder.counts.messages, 2);
    }
}
