//! The read loop of every mode, the plain shell-pipe and sidecar case included: a line is
//! read, counted, labelled and queued (or, with `--spool`, appended to the spool); in the
//! confirming modes, [`omprog`] answers it. Backpressure is here: while the
//! queue (or the spool) is full, the next line is not read.

use std::{fmt, io};

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::watch;

pub(super) mod omprog;

use crate::send::input::{Line, LineReader};
use crate::send::job::Ack;
use crate::send::outgoing::{Labeler, Outgoing};
use crate::send::pipeline::Pipeline;
use crate::send::retry::Retrier;
use crate::send::settle::Settler;
use crate::send::spooling::{Spooler, Unspooled};
use crate::send::stats::{Loss, Stats};
use crate::spool::SpoolError;
use omprog::{Mode, Pending, ProtocolConfig, Replies};

/// How reading ended.
pub(super) struct Ending {
    /// False when stdin could not be read, or the spool failed.
    pub input_ok: bool,
    /// Messages of a transaction that was never committed (EOF or stop mid-batch).
    pub uncommitted: Vec<Pending>,
}

/// One run of reading stdin, until end of input or a stop: each line is admitted (counted,
/// labelled by the [`Labeler`]), then appended to the spool or queued on the [`Pipeline`];
/// in the confirming modes it is answered through [`Replies`] ([`omprog`] holds those
/// methods). Backpressure is here: a full queue or spool holds up the next read.
pub(super) struct Session<'a, R, W> {
    pub reader: &'a mut LineReader<BufReader<R>>,
    pub replies: Replies<W>,
    pub pipeline: &'a Pipeline,
    pub settler: &'a Settler,
    pub labeler: &'a Labeler,
    pub max_line_bytes: usize,
    pub config: &'a ProtocolConfig,
    pub spool: Option<&'a Spooler>,
}

/// Why the read loop stopped before the end of input.
pub(super) enum Halt {
    /// rsyslog (or whoever reads stdout) went away.
    Stdout(io::Error),
    /// The spool can take no more: nothing further may be acknowledged.
    Spool(SpoolError),
    /// Stopped while the disk was full: the message in hand was not acknowledged (plain
    /// mode: counted lost).
    Stopped,
}

impl From<io::Error> for Halt {
    fn from(error: io::Error) -> Self {
        Halt::Stdout(error)
    }
}

impl fmt::Display for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Halt::Stdout(e) => write!(f, "cannot write to stdout: {e}"),
            Halt::Spool(e) => write!(f, "{e}"),
            Halt::Stopped => write!(f, "stopped while the disk was full"),
        }
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<'_, R, W> {
    /// Reads until end of input or `stop`. Only the wait for a line is cancelled by `stop`: a
    /// line already read is always queued or settled, never dropped.
    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) -> Ending {
        let mut batch: Vec<Pending> = Vec::new();
        let ending = |input_ok, uncommitted| Ending {
            input_ok,
            uncommitted,
        };
        if self.config.mode != Mode::Plain && self.replies.reply("OK").await.is_err() {
            return ending(true, batch);
        }
        loop {
            if *stop.borrow() {
                return ending(true, batch);
            }
            if let Some(spool) = self.spool
                && self.config.mode == Mode::Plain
                && !self.reader.holds_a_line()
                && let Err(e) = spool.before_read().await
            {
                tracing::error!("{e}; stopping");
                return ending(false, batch);
            }
            let line = {
                let next = self.reader.next_line();
                tokio::pin!(next);
                match (&mut next).now_or_never() {
                    Some(line) => line,
                    None => {
                        // Input has paused: what was appended goes to the spool before the
                        // next read, so the pipe is kept drained and a kill loses nothing read.
                        if let Some(Err(e)) = match self.spool {
                            Some(spool) => Some(spool.flush().await),
                            None => None,
                        } {
                            tracing::error!("{e}; stopping");
                            return ending(false, batch);
                        }
                        tokio::select! {
                            biased;
                            _ = stop.wait_for(|stopped| *stopped) => return ending(true, batch),
                            line = &mut next => line,
                        }
                    }
                }
            };
            let line = match line {
                Ok(Some(line)) => line,
                Ok(None) => return ending(true, batch),
                Err(e) => {
                    tracing::error!(
                        "reading stdin failed after line {}: {e}",
                        self.reader.line_number()
                    );
                    return ending(false, batch);
                }
            };
            let replied = match self.config.mode {
                Mode::Plain => match self.admit(line) {
                    Some((number, message)) => self.submit(number, message, None).await,
                    None => Ok(()),
                },
                Mode::Confirm => self.confirm(line).await,
                Mode::Transactions => self.transact(line, &mut batch).await,
            };
            match replied {
                Ok(()) => {}
                Err(halt @ Halt::Stdout(_)) => {
                    tracing::error!("{halt}, stopping");
                    return ending(true, batch);
                }
                Err(halt @ Halt::Spool(_)) => {
                    tracing::error!("{halt}; stopping");
                    return ending(false, batch);
                }
                Err(Halt::Stopped) => return ending(true, batch),
            }
        }
    }

    /// Counts a line and labels it for sending; settles it at once if it cannot be sent.
    pub(super) fn admit(&self, line: Line) -> Option<(u64, Outgoing)> {
        let stats = &self.settler.stats;
        match line {
            Line::Empty { .. } => {
                Stats::add(&stats.empty, 1);
                None
            }
            Line::TooLong { number, length } => {
                Stats::add(&stats.read, 1);
                let reason = format!(
                    "line is {length} bytes, over --max-line-bytes {}",
                    self.max_line_bytes
                );
                self.settler.unreadable(number, &reason);
                None
            }
            Line::Message { number, bytes } => match self.labeler.prepare(number, bytes) {
                Some(outgoing) => {
                    Stats::add(&stats.read, 1);
                    Some((number, outgoing))
                }
                // Only an id: nothing to send.
                None => {
                    Stats::add(&stats.empty, 1);
                    None
                }
            },
        }
    }

    /// Queues a message (or spools it), writing keep-alive dots while the queue (or the
    /// spool) is full in confirming modes.
    pub(super) async fn submit(
        &mut self,
        number: u64,
        outgoing: Outgoing,
        ack: Option<Ack>,
    ) -> Result<(), Halt> {
        if let Some(spool) = self.spool {
            let appended = if self.config.mode == Mode::Plain {
                spool.append(number, outgoing).await
            } else {
                self.replies
                    .keep_alive(spool.append(number, outgoing))
                    .await?
            };
            return match appended {
                Ok(()) => Ok(()),
                Err(Unspooled::Failed(e)) => Err(Halt::Spool(e)),
                Err(Unspooled::GaveUp(number, outgoing)) => {
                    if self.config.mode == Mode::Plain {
                        // Read, so taken from the writer: not in the spool, so lost.
                        self.settler.undelivered(
                            number,
                            &outgoing.line,
                            "the disk was still full at the drain deadline",
                            Loss::Stopped,
                        );
                    } else {
                        // Not acknowledged: rsyslog still holds it.
                        self.settler.stats.hand_back();
                    }
                    Err(Halt::Stopped)
                }
            };
        }
        let submitted = if self.config.mode == Mode::Plain {
            self.pipeline.submit(number, outgoing, ack).await
        } else {
            let pipeline = self.pipeline;
            self.replies
                .keep_alive(pipeline.submit(number, outgoing, ack))
                .await?
        };
        if let Err(outgoing) = submitted {
            self.settler.undelivered(
                number,
                &outgoing.line,
                "the delivery workers stopped",
                Loss::Stopped,
            );
        }
        Ok(())
    }
}

pub(super) enum ProbeOutcome {
    Ready,
    /// Input ended or a stop signal came first: there is nothing to send.
    Ended,
    Failed(String),
}

/// Runs `--probe` until it succeeds, fails permanently, or there is no point waiting (stop
/// signal, or end of input before any line arrived). Under rsyslog, keep-alive dots are
/// written meanwhile, so a long outage at start-up never hits confirmTimeout.
pub(super) async fn probe_until_ready<R, W>(
    retrier: &Retrier,
    reader: &mut LineReader<R>,
    replies: &mut Replies<W>,
    mut stopped: watch::Receiver<bool>,
    under_rsyslog: bool,
    // False with `--file`: stdin is not the input, its end ends nothing.
    watch_input: bool,
) -> std::io::Result<ProbeOutcome>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let probing = async {
        let probe = retrier.probe();
        tokio::pin!(probe);
        let mut watch_input = watch_input;
        loop {
            tokio::select! {
                result = &mut probe => return match result {
                    Ok(()) => ProbeOutcome::Ready,
                    Err(reason) => ProbeOutcome::Failed(reason),
                },
                _ = stopped.wait_for(|stopped| *stopped) => return ProbeOutcome::Ended,
                input = reader.has_input(), if watch_input => match input {
                    // Lines wait in the pipe until the probe is through.
                    Ok(true) => watch_input = false,
                    Ok(false) | Err(_) => return ProbeOutcome::Ended,
                },
            }
        }
    };
    if under_rsyslog {
        replies.keep_alive(probing).await
    } else {
        Ok(probing.await)
    }
}

#[cfg(test)]
mod tests;
