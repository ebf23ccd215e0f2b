//! `send --spool`: the feeder hands spooled messages to the pipeline, the adopted spools'
//! first, each with a ticket that marks its record done once it is settled.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::job::Ticket;
use super::outgoing::Labeler;
use super::pipeline::Submitter;
use super::spooling::Spooler;
use crate::spool::Body;

/// Hands spooled messages to the pipeline, the adopted spools' first, until input has ended
/// and everything was taken, or the drain is given up (`abort`).
pub(super) async fn feed(
    spooler: Arc<Spooler>,
    pipeline: Submitter,
    labeler: Arc<Labeler>,
    mut input_ended: watch::Receiver<bool>,
    mut abort: watch::Receiver<bool>,
) {
    'feeding: loop {
        if *abort.borrow() {
            return;
        }
        for (spool, sender) in spooler.delivery_order() {
            let readable = spool.readable.notified();
            let Some(taken) = spool.take() else {
                drop(readable);
                continue;
            };
            let (line_number, outgoing) = match taken.body {
                Body::Item(item) => item,
                Body::Payload(payload) => match labeler.restore(&payload, sender) {
                    Some(restored) => restored,
                    None => {
                        tracing::error!(
                            spool = %spool.name,
                            "record {} is not a message this version can read; skipped",
                            taken.meta.index
                        );
                        spool.done(taken.meta.index);
                        continue 'feeding;
                    }
                },
            };
            let ticket = Ticket::new(spool.clone(), taken.meta.index);
            tokio::select! {
                biased;
                _ = abort.wait_for(|aborted| *aborted) => return,
                submitted = pipeline.submit_spooled(line_number, outgoing, ticket) => {
                    if submitted.is_err() {
                        // The workers are gone; the message stays in the spool.
                        return;
                    }
                }
            }
            continue 'feeding;
        }
        // Nothing to take anywhere.
        if *input_ended.borrow() && spooler.delivery_order().all(|(s, _)| s.all_taken()) {
            return;
        }
        let own = spooler.own();
        tokio::select! {
            _ = own.readable.notified() => {}
            _ = input_ended.changed() => {}
            _ = abort.wait_for(|aborted| *aborted) => return,
            // Adopted spools and read errors are polled.
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}
