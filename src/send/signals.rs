//! Signals: SIGTERM and SIGINT stop reading, a second one gives up on the drain.

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

use super::pipeline::Aborter;

/// SIGTERM and SIGINT stop reading (a second one gives up on the drain); SIGHUP, which rsyslog
/// may forward, is logged and otherwise ignored rather than killing the process.
pub(super) struct StopSignals {
    term: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl StopSignals {
    pub(super) fn install() -> anyhow::Result<Self> {
        let install = |kind: SignalKind| signal(kind).context("cannot install signal handlers");
        Ok(StopSignals {
            term: install(SignalKind::terminate())?,
            interrupt: install(SignalKind::interrupt())?,
            hangup: install(SignalKind::hangup())?,
        })
    }

    /// Under rsyslog (a confirming mode) SIGINT is ignored: it is meant for rsyslogd's own
    /// terminal, and the program is stopped by EOF or SIGTERM.
    pub(super) async fn watch(
        mut self,
        stop: watch::Sender<bool>,
        aborter: Aborter,
        ignore_interrupt: bool,
    ) {
        let mut received = 0;
        loop {
            let name = tokio::select! {
                Some(()) = self.term.recv() => "SIGTERM",
                Some(()) = self.interrupt.recv() => {
                    if ignore_interrupt {
                        tracing::info!("SIGINT ignored under rsyslog: stop with SIGTERM or end of input");
                        continue;
                    }
                    "SIGINT"
                }
                Some(()) = self.hangup.recv() => {
                    tracing::info!("SIGHUP ignored: there is nothing to reopen");
                    continue;
                }
                else => return,
            };
            received += 1;
            if received == 1 {
                // Stopped first, then told: a line written after the log line is never read.
                stop.send_replace(true);
                tracing::info!("{name}: reading stopped, delivering what was already read");
            } else {
                aborter.abort();
                tracing::warn!("{name} again: giving up on undelivered messages");
            }
        }
    }
}
