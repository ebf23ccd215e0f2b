//! What travels down the delivery path, and what comes back up: a [`Job`] (one message on its
//! way, with its share of the byte budget), the [`Ack`] by which a confirming caller learns its
//! fate, the [`Returned`] message handed back, and the spool's [`Ticket`]. A leaf: the
//! pipeline, retry, settle and the spooling all use these types, and none of them is needed
//! to name them.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::Instant;

use super::outgoing::Outgoing;
use crate::spool::Spool;

/// What the spool's window keeps of a message: its line number and the message itself.
pub(super) type Item = (u64, Outgoing);

/// One message on its way, holding its share of the byte budget until it is settled.
#[derive(Debug)]
pub(super) struct Job {
    pub line_number: u64,
    pub outgoing: Outgoing,
    pub ack: Option<Ack>,
    /// Set when the message came from the spool.
    pub ticket: Option<Ticket>,
    /// Released when the job is dropped, once settled.
    _bytes: OwnedSemaphorePermit,
}

impl Job {
    pub(super) fn new(
        line_number: u64,
        outgoing: Outgoing,
        ack: Option<Ack>,
        ticket: Option<Ticket>,
        bytes: OwnedSemaphorePermit,
    ) -> Self {
        Job {
            line_number,
            outgoing,
            ack,
            ticket,
            _bytes: bytes,
        }
    }
}

/// How a confirming caller (rsyslog's protocol) learns the fate of one message. A message
/// with an ack is never dead-lettered or counted lost for a retriable failure: it is handed
/// back, because rsyslog keeps it and sends it again. Dropping the receiver cancels it.
#[derive(Debug)]
pub(super) struct Ack {
    pub reply: oneshot::Sender<Result<(), Returned>>,
    /// Stop retrying at this instant and hand the message back. (Every job, spooled ones
    /// included, is also given up after `--max-attempts` failures of its own, in `retry`.)
    pub give_up_at: Option<Instant>,
}

impl Ack {
    pub(super) fn new(
        give_up_at: Option<Instant>,
    ) -> (Self, oneshot::Receiver<Result<(), Returned>>) {
        let (reply, receiver) = oneshot::channel();
        (Ack { reply, give_up_at }, receiver)
    }
}

/// A message that was not delivered, handed back to its confirming caller.
#[derive(Debug)]
pub(super) struct Returned {
    pub line_number: u64,
    /// The line as it was read.
    pub message: Vec<u8>,
    pub reason: String,
}

/// A spooled message on its way: marked done in its spool once delivered or dead-lettered.
#[derive(Debug)]
pub(super) struct Ticket {
    spool: Arc<Spool<Item>>,
    index: u64,
}

impl Ticket {
    pub(super) fn new(spool: Arc<Spool<Item>>, index: u64) -> Self {
        Ticket { spool, index }
    }

    pub(super) fn done(self) {
        self.spool.done(self.index);
    }
}
