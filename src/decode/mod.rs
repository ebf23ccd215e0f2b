//! The `decode` command: access-log files in, the messages drifter sent out.
//!
//! Streams: one line at a time, bounded in length, so memory does not grow with the input
//! (except with `--sort`, which holds the selected messages to order them). Everything that
//! is not a drifter message is counted, never mixed into the output: other clients (a public
//! load balancer gets scanners and bots), lines that do not parse (reported with file and line
//! number), and requests that carry no message (the `--probe` request).
//!
//! Data path: `walk` finds and opens the inputs, the `decoder` takes each line apart (with
//! [`crate::access_log`] and [`crate::wire`]), `reassembly` joins fragments and tracks ids and
//! sequence numbers, and `output` writes the messages.

mod decoder;
mod output;
mod reassembly;
mod walk;

use std::io;
use std::path::PathBuf;

use crate::cli::DecodeArgs;
use crate::exit::{self, Fatal, Status};
use crate::key_file;

pub use decoder::{Counts, Decoder};

pub fn run(args: &DecodeArgs) -> exit::Outcome {
    let verifier = args
        .verify_key
        .as_deref()
        .map(key_file::load)
        .transpose()
        .map_err(Fatal::usage)?;
    let stdout = io::stdout().lock();
    let mut decoder = Decoder::new(
        args,
        verifier,
        io::BufWriter::with_capacity(256 * 1024, stdout),
    );
    let paths: Vec<PathBuf> = if args.paths.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.paths.clone()
    };
    let result = paths
        .iter()
        .try_for_each(|path| decoder.decode_path(path))
        .and_then(|()| decoder.finish());
    match result {
        Ok(()) => {}
        Err(e) if exit::reader_went_away(&e) => return Ok(Status::Success),
        Err(e) => {
            let error = anyhow::Error::new(e).context("cannot write the output");
            return Err(Fatal::usage(error));
        }
    }
    let counts = &decoder.counts;
    tracing::info!(
        "decoded {} messages from {} lines in {} files; skipped {} from other clients, {} without a message, {} malformed, {} duplicates, {} forged; {} incomplete messages, {} missing by sequence number",
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
        Ok(Status::Usage)
    } else if counts.incomplete > 0 || counts.missing > 0 {
        Ok(Status::Lost)
    } else {
        Ok(Status::Success)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::walk::MAX_LINE_BYTES;
    use super::*;
    use crate::cli::DecodeArgs;

    fn args() -> DecodeArgs {
        DecodeArgs {
            paths: Vec::new(),
            path: None,
            json: false,
            sort: false,
            verify_key: None,
            dedup_window: 1000,
            max_pending_bytes: 1 << 20,
        }
    }

    fn decode(args: &DecodeArgs, input: &[u8]) -> (Vec<u8>, Counts) {
        let mut decoder = Decoder::new(args, None, Vec::new());
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
        let mut sorted = args();
        sorted.sort = true;
        let (out, _) = decode(&sorted, &compressed);
        assert_eq!(out, "hello wörld\nlater wörld\n".as_bytes());
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
        let mut decoder = Decoder::new(&args(), None, Vec::new());
        decoder.decode_path(dir.path()).expect("decodes");
        assert_eq!(
            decoder.counts.files, 2,
            "a.log and the file link, not the loop"
        );
        assert_eq!(decoder.counts.messages, 2);
    }
}
