//! rsyslog's omprog feedback protocol: the replies of the confirming modes, written to stdout
//! (stdout carries nothing else).
//!
//! - plain: lines in, nothing out.
//! - confirm: `OK` once when ready, then one reply per line: `OK` once the load balancer
//!   accepted the message, or one error line, and rsyslog keeps the message and resends it.
//! - transactions: `OK` to the begin mark, `DEFER_COMMIT` to each message (dispatched at once,
//!   so a batch is delivered concurrently), and to the commit mark `OK` only when every message
//!   of the batch was accepted.
//!
//! With `--spool`, a message is acknowledged once it is in the spool instead: `OK` (confirm)
//! and `DEFER_COMMIT` after its write, the commit's `OK` after the batch's sync under the
//! strict policy.
//!
//! While a reply takes longer than the keep-alive interval, dots are written (no newline);
//! each one restarts rsyslog's confirmTimeout, and rsyslog ignores leading dots.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Halt, Session};
use crate::send::input::Line;
use crate::send::job::{Ack, Returned};
use crate::send::settle::Settler;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::send) enum Mode {
    Plain,
    Confirm,
    Transactions,
}

impl Mode {
    /// The confirming modes are rsyslog's: the program's stdout is rsyslog's to read.
    pub(in crate::send) fn under_rsyslog(self) -> bool {
        self != Mode::Plain
    }
}

#[derive(Debug, Clone)]
pub(in crate::send) struct ProtocolConfig {
    pub mode: Mode,
    pub begin_mark: Vec<u8>,
    pub commit_mark: Vec<u8>,
    pub keepalive: Duration,
    /// Confirm mode: how long one message is tried before it is handed back with an error.
    pub message_timeout: Duration,
    /// Transactions mode: how long a commit waits for its batch before answering an error.
    pub commit_timeout: Duration,
}

/// Longest error reply; rsyslog keeps one line, and short lines never interleave.
const MAX_ERROR_REPLY: usize = 4000;

/// The protocol's side of stdout: whole replies, each flushed at once, and keep-alive dots.
pub(in crate::send) struct Replies<W> {
    out: W,
    keepalive: Duration,
}

impl<W: AsyncWrite + Unpin> Replies<W> {
    pub(in crate::send) fn new(out: W, keepalive: Duration) -> Self {
        Replies { out, keepalive }
    }

    pub(in crate::send) async fn reply(&mut self, word: &str) -> io::Result<()> {
        self.out.write_all(format!("{word}\n").as_bytes()).await?;
        self.out.flush().await
    }

    /// One line that rsyslog reads as a failure: never `OK`, never leading dots, no LF.
    pub(in crate::send) async fn error(&mut self, reason: &str) -> io::Result<()> {
        let mut text: String = format!("error: {reason}")
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if text.len() > MAX_ERROR_REPLY {
            let mut end = MAX_ERROR_REPLY;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        self.reply(&text).await
    }

    /// Awaits `work`, writing a dot each keep-alive interval until it completes.
    pub(in crate::send) async fn keep_alive<F: Future>(
        &mut self,
        work: F,
    ) -> io::Result<F::Output> {
        tokio::pin!(work);
        let mut ticks = tokio::time::interval_at(Instant::now() + self.keepalive, self.keepalive);
        loop {
            tokio::select! {
                output = &mut work => return Ok(output),
                _ = ticks.tick() => {
                    self.out.write_all(b".").await?;
                    self.out.flush().await?;
                }
            }
        }
    }
}

/// A message deferred to its transaction's commit: its outcome, once known.
pub(in crate::send) type Pending = oneshot::Receiver<Result<(), Returned>>;

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<'_, R, W> {
    /// Confirm mode: one reply per line, after the message's fate is known (or, with the
    /// spool, once it is in the spool).
    pub(in crate::send) async fn confirm(&mut self, line: Line) -> Result<(), Halt> {
        let Some((number, outgoing)) = self.admit(line) else {
            // Nothing to send (empty), or already settled (dead-lettered or counted lost):
            // an error would only make rsyslog send the same unsendable line again.
            return Ok(self.replies.reply("OK").await?);
        };
        if let Some(spool) = self.spool {
            self.submit(number, outgoing, None).await?;
            return self.spooled_reply(spool.before_ack(), "OK").await;
        }
        let (ack, outcome) = Ack::new(Some(Instant::now() + self.config.message_timeout));
        self.submit(number, outgoing, Some(ack)).await?;
        match self.replies.keep_alive(outcome).await? {
            Ok(Ok(())) => self.replies.reply("OK").await?,
            Ok(Err(returned)) => self.replies.error(&returned.reason).await?,
            Err(_) => self.replies.error("the delivery workers stopped").await?,
        }
        Ok(())
    }

    /// Answers `word` once `written` (the spool's flush or sync) is through; if the spool
    /// failed, answers an error instead, so rsyslog keeps the message, and stops.
    async fn spooled_reply(
        &mut self,
        written: impl Future<Output = Result<(), crate::spool::SpoolError>>,
        word: &str,
    ) -> Result<(), Halt> {
        match self.replies.keep_alive(written).await? {
            Ok(()) => Ok(self.replies.reply(word).await?),
            Err(e) => {
                self.replies.error(&e.to_string()).await?;
                Err(Halt::Spool(e))
            }
        }
    }

    /// Transactions mode: begin and commit marks, messages deferred to the commit.
    pub(in crate::send) async fn transact(
        &mut self,
        line: Line,
        batch: &mut Vec<Pending>,
    ) -> Result<(), Halt> {
        if let Line::Message { bytes, .. } = &line {
            if *bytes == self.config.begin_mark {
                if !batch.is_empty() {
                    // rsyslog before 8.2508 sends a new begin mark after an error reply without
                    // committing, and never resends messages already deferred (rsyslog #2420):
                    // they stay in the open batch.
                    tracing::debug!(
                        pending = batch.len(),
                        "begin mark inside an open transaction: keeping its messages"
                    );
                }
                return Ok(self.replies.reply("OK").await?);
            }
            if *bytes == self.config.commit_mark {
                if let Some(spool) = self.spool {
                    // The batch is in the spool; under the strict policy, synced now.
                    return self.spooled_reply(spool.before_ack(), "OK").await;
                }
                let deadline = Instant::now() + self.config.commit_timeout;
                let committed = std::mem::take(batch);
                let outcome = self.replies.keep_alive(commit(committed, deadline)).await?;
                match outcome {
                    Ok(()) => self.replies.reply("OK").await?,
                    Err(reason) => {
                        tracing::warn!("transaction not committed: {reason}");
                        self.replies.error(&reason).await?
                    }
                }
                return Ok(());
            }
        }
        if let Some((number, outgoing)) = self.admit(line) {
            if let Some(spool) = self.spool {
                self.submit(number, outgoing, None).await?;
                return self.spooled_reply(spool.flush(), "DEFER_COMMIT").await;
            }
            let (ack, outcome) = Ack::new(None);
            self.submit(number, outgoing, Some(ack)).await?;
            batch.push(outcome);
        }
        Ok(self.replies.reply("DEFER_COMMIT").await?)
    }
}

/// Waits for every message of a batch until `deadline`. On failure the answer is held until
/// the deadline anyway: rsyslog before 8.2608 replays a failed batch at once and without pause
/// (rsyslog #5016), so an early error would turn an outage into a tight loop.
async fn commit(batch: Vec<Pending>, deadline: Instant) -> Result<(), String> {
    let total = batch.len();
    let mut failed = 0;
    let mut first_reason = None;
    for outcome in batch {
        match tokio::time::timeout_at(deadline, outcome).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(returned))) => {
                failed += 1;
                first_reason.get_or_insert(returned.reason);
            }
            Ok(Err(_)) => {
                failed += 1;
                first_reason.get_or_insert_with(|| "the delivery workers stopped".into());
            }
            Err(_) => {
                // Dropping the rest cancels their delivery; rsyslog sends the batch again.
                failed += 1;
                first_reason.get_or_insert_with(|| "commit deadline passed".into());
            }
        }
    }
    if failed == 0 {
        return Ok(());
    }
    tokio::time::sleep_until(deadline).await;
    Err(format!(
        "{failed} of {total} messages not delivered: {}",
        first_reason.unwrap_or_default()
    ))
}

/// After EOF or a stop inside a transaction: rsyslog 8.2302 does not resend deferred messages
/// of a batch it never saw committed, so they are delivered within the drain deadline or kept
/// in the dead-letter file, never silently dropped.
pub(in crate::send) async fn settle_uncommitted(uncommitted: Vec<Pending>, settler: &Settler) {
    if uncommitted.is_empty() {
        return;
    }
    tracing::info!(
        messages = uncommitted.len(),
        "input ended inside a transaction; delivering its messages"
    );
    for outcome in uncommitted {
        if let Ok(Err(returned)) = outcome.await {
            settler.reclaim(returned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slow_reply_is_preceded_by_a_dot_per_keepalive_interval() {
        let mut out = Vec::new();
        let mut replies = Replies::new(&mut out, Duration::from_secs(2));
        let slow = tokio::time::sleep(Duration::from_secs(7));
        replies.keep_alive(slow).await.expect("written");
        replies.reply("OK").await.expect("written");
        assert_eq!(out, b"...OK\n");
    }

    #[tokio::test]
    async fn an_error_reply_is_one_bounded_line() {
        let mut out = Vec::new();
        let mut replies = Replies::new(&mut out, Duration::from_secs(2));
        let reason = format!("HTTP 500\nat\r{}", "é".repeat(MAX_ERROR_REPLY));
        replies.error(&reason).await.expect("written");
        let text = String::from_utf8(out).expect("whole characters");
        assert!(text.starts_with("error: HTTP 500 at "), "{text:.40}");
        assert!(text.ends_with('\n'));
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.len() <= MAX_ERROR_REPLY + 1, "{}", text.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_commit_succeeds_at_once_or_fails_at_its_deadline() {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (delivered, delivered_outcome) = oneshot::channel();
        let _ = delivered.send(Ok(()));
        assert_eq!(commit(vec![delivered_outcome], deadline).await, Ok(()));
        assert_eq!(Instant::now() + Duration::from_secs(30), deadline);

        let (returned, returned_outcome) = oneshot::channel();
        let _ = returned.send(Err(Returned {
            line_number: 1,
            message: b"m".to_vec(),
            reason: "HTTP 500".into(),
        }));
        let (_never, never_outcome) = oneshot::channel();
        let failed = commit(vec![returned_outcome, never_outcome], deadline).await;
        assert_eq!(
            failed,
            Err("2 of 2 messages not delivered: HTTP 500".into())
        );
        // Held until the deadline: rsyslog replays a failed batch at once.
        assert_eq!(Instant::now(), deadline);
    }
}
