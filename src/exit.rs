//! Exit statuses and the one place errors are printed.
//!
//! Every command returns a [`Status`] or a [`Fatal`] error; `main` prints the error (one line,
//! `drifter-rsyslog: error: ...`) and exits with its status.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::process::ExitCode;

/// How a command ended, as scripts see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything it was given was handled.
    Success,
    /// Some messages were lost (send), or are known to be missing (decode).
    Lost,
    /// The command could not do its work: bad usage or configuration, found before any work
    /// was done, or (decode) an input that could not be read or an output that could not be
    /// written.
    Error,
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> Self {
        ExitCode::from(match status {
            Status::Success => 0,
            Status::Lost => 1,
            Status::Error => 2,
        })
    }
}

/// An error that ends the command, and the status to exit with.
#[derive(Debug)]
pub struct Fatal {
    pub status: Status,
    pub error: anyhow::Error,
}

impl Fatal {
    /// Bad usage or configuration.
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Fatal {
            status: Status::Error,
            error: error.into(),
        }
    }

    /// An input that could not be read, or an output that could not be written, where no
    /// message is known to be lost (decode).
    pub fn io(error: impl Into<anyhow::Error>) -> Self {
        Fatal {
            status: Status::Error,
            error: error.into(),
        }
    }

    /// A failure after work started, which may have cost messages.
    pub fn lost(error: impl Into<anyhow::Error>) -> Self {
        Fatal {
            status: Status::Lost,
            error: error.into(),
        }
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The causes on the same line: "cannot open dead-letter file x: Permission denied".
        let error: &(dyn StdError + 'static) = self.error.as_ref();
        write!(f, "drifter-rsyslog: error: {}", one_line(error))
    }
}

/// An error and its causes on one line, each cause only where the text so far does not already
/// hold it: many errors repeat their source in their own message ("cannot read key file k:
/// No such file"), and hyper's own messages are terse ("client error (Connect)") with the
/// useful part ("Connection refused") in the sources.
pub(crate) fn one_line(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// What a command returns to `main`.
pub type Outcome = Result<Status, Fatal>;

/// Prints the error, if any, and turns the outcome into the process's exit code.
pub fn finish(outcome: Outcome) -> ExitCode {
    match outcome {
        Ok(status) => status.into(),
        Err(fatal) => {
            eprintln!("{fatal}");
            fatal.status.into()
        }
    }
}

/// Whether a write failed because the reader of stdout went away (`... | head`): the reader has
/// what it wanted, so the command ends as a success without writing more.
pub fn reader_went_away(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::BrokenPipe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_printed_once_on_one_line() {
        let io = io::Error::new(io::ErrorKind::NotFound, "No such file");
        let fatal = Fatal::usage(anyhow::Error::new(io).context("cannot open x"));
        assert_eq!(
            fatal.to_string(),
            "drifter-rsyslog: error: cannot open x: No such file"
        );
        // KeyError names its io::Error in its own message: not twice.
        let path = std::path::Path::new("/nonexistent/drifter.key");
        let missing = crate::key_file::load(path).expect_err("no such file");
        assert_eq!(
            Fatal::usage(missing).to_string(),
            "drifter-rsyslog: error: cannot read key file /nonexistent/drifter.key: No such file or directory (os error 2)"
        );
    }
}
