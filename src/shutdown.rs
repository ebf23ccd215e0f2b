//! One shutdown for every command, as mini-redis has one: the stop signals, the phases of an
//! ending run, and the join of every task spawned for it.
//!
//! The phases, in order:
//! - **stop**: read no more (a signal, or the end of input); what was read is still delivered
//!   (`send`), the file being read is finished (`decode --follow`), open connections finish
//!   their request (`mock-elb`);
//! - **abort**: give up on what is left (the drain deadline, or a second signal);
//! - **done**: the run's work is over; [`Shutdown::join`] ends the background tasks that would
//!   run for ever (signal watchers, periodic reports, servers) and waits for every task spawned
//!   through [`Shutdown::spawn`], then aborts and joins the [`Tasks`] it was given (connections,
//!   retries), which by then have nothing left to do for the run.
//!
//! Every task of a run is spawned through a `Shutdown` or a [`Tasks`], or awaited by the task
//! that spawned it, so none is left running at exit. `spawn_blocking` work cannot be aborted:
//! each is awaited by the task that started it, and one still running at exit (a slow disk
//! under an aborted owner, a blocking read of stdin) is given the runtime's shutdown timeout
//! and then left to the process's exit.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The phases of one run and the tasks spawned for it.
pub(crate) struct Shutdown {
    stop: watch::Sender<bool>,
    abort: watch::Sender<bool>,
    done: watch::Sender<bool>,
    tasks: Mutex<JoinSet<()>>,
    /// Aborted and joined once the tasks above are.
    owned: Mutex<Vec<Tasks>>,
}

/// Tasks owned by one part of a run (an HTTP client's connections, a server's connections,
/// retries), which can be many over a long run: finished ones are collected at each spawn.
/// Ended by [`close`](Tasks::close), or aborted when the last handle is dropped.
#[derive(Clone, Default)]
pub(crate) struct Tasks(Arc<Mutex<JoinSet<()>>>);

impl Tasks {
    /// Runs `task` on the current runtime, owned by this set.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.lock();
        while let Some(joined) = tasks.try_join_next() {
            log_failure(joined);
        }
        tasks.spawn(task);
    }

    /// Waits for every task to end by itself.
    pub(crate) async fn join(&self) {
        self.end(false).await;
    }

    /// Aborts every task and waits until each has ended, which is at once: an aborted task
    /// ends at its next await, however long the I/O it waited for would have taken.
    pub(crate) async fn close(&self) {
        self.end(true).await;
    }

    async fn end(&self, abort: bool) {
        // Until none is left: a task may spawn another meanwhile.
        loop {
            let mut tasks = std::mem::take(&mut *self.lock());
            if tasks.is_empty() {
                return;
            }
            if abort {
                tasks.abort_all();
            }
            while let Some(joined) = tasks.join_next().await {
                log_failure(joined);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// hyper runs a connection's background futures (HTTP/2 streams, its I/O) through this.
impl<F> hyper::rt::Executor<F> for Tasks
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        self.spawn(future);
    }
}

fn log_failure(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined
        && !e.is_cancelled()
    {
        tracing::error!("a background task failed: {e}");
    }
}

/// What the stop signals (SIGTERM, SIGINT) do in one command, and what it logs.
pub(crate) struct OnSignals {
    /// Under rsyslog, SIGINT is meant for rsyslogd's own terminal: logged and ignored.
    pub ignore_interrupt: bool,
    /// SIGHUP, which rsyslog may forward, is logged and ignored rather than left to kill the
    /// process.
    pub ignore_hangup: bool,
    /// The line logged once reading stopped, given the signal's name.
    pub first: fn(&str) -> String,
    pub again: Again,
}

/// What a stop signal after the first does.
pub(crate) enum Again {
    /// Abort, and log the line made from the signal's name.
    Abort(fn(&str) -> String),
    /// Log this and exit at once with the status.
    Exit(&'static str, i32),
    /// Nothing more.
    Ignore,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            stop: watch::Sender::new(false),
            abort: watch::Sender::new(false),
            done: watch::Sender::new(false),
            tasks: Mutex::new(JoinSet::new()),
            owned: Mutex::new(Vec::new()),
        }
    }
}

impl Shutdown {
    /// Read no more.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Give up on what is left.
    pub(crate) fn abort(&self) {
        self.abort.send_replace(true);
    }

    /// Becomes true at the stop.
    pub(crate) fn stopped(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Becomes true at the abort.
    pub(crate) fn aborted(&self) -> watch::Receiver<bool> {
        self.abort.subscribe()
    }

    /// Runs `task` on the current runtime until it ends or the run is done, and joins it in
    /// [`join`](Self::join).
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut done = self.done.subscribe();
        let mut tasks = self
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(joined) = tasks.try_join_next() {
            log_failure(joined);
        }
        tasks.spawn(async move {
            tokio::select! {
                () = task => {}
                _ = done.wait_for(|done| *done) => {}
            }
        });
    }

    /// `tasks` are aborted and joined in [`join`](Self::join), after the run's own tasks.
    pub(crate) fn close_at_join(&self, tasks: &Tasks) {
        self.owned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(tasks.clone());
    }

    /// The run's work is over: ends the tasks still running and waits for every one, then
    /// closes the [`Tasks`] it was given.
    pub(crate) async fn join(&self) {
        self.done.send_replace(true);
        // Until none is left: a task ending may spawn another (which ends at once, done).
        loop {
            let mut tasks = std::mem::take(
                &mut *self
                    .tasks
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            );
            if tasks.is_empty() {
                break;
            }
            while let Some(joined) = tasks.join_next().await {
                log_failure(joined);
            }
        }
        let owned = std::mem::take(
            &mut *self
                .owned
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for tasks in owned {
            tasks.close().await;
        }
    }

    /// Installs the handlers now (so a signal from here on is never the default's), and
    /// watches them in a task of the run.
    pub(crate) fn watch_signals(self: &std::sync::Arc<Self>, on: OnSignals) -> std::io::Result<()> {
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut hangup = match on.ignore_hangup {
            true => Some(signal(SignalKind::hangup())?),
            false => None,
        };
        let shutdown = self.clone();
        self.spawn(async move {
            let mut received = 0;
            loop {
                let name = tokio::select! {
                    Some(()) = term.recv() => "SIGTERM",
                    Some(()) = interrupt.recv() => {
                        if on.ignore_interrupt {
                            tracing::info!("SIGINT ignored under rsyslog: stop with SIGTERM or end of input");
                            continue;
                        }
                        "SIGINT"
                    }
                    Some(()) = recv_or_never(hangup.as_mut()) => {
                        tracing::info!("SIGHUP ignored: there is nothing to reopen");
                        continue;
                    }
                    else => return,
                };
                received += 1;
                if received == 1 {
                    // Stopped first, then told: a line written after the log line is never
                    // read.
                    shutdown.stop();
                    tracing::info!("{}", (on.first)(name));
                    continue;
                }
                match on.again {
                    Again::Abort(line) => {
                        shutdown.abort();
                        tracing::warn!("{}", line(name));
                    }
                    Again::Exit(line, status) => {
                        tracing::warn!("{line}");
                        std::process::exit(status);
                    }
                    Again::Ignore => {}
                }
            }
        });
        Ok(())
    }
}

async fn recv_or_never(signal: Option<&mut tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn join_ends_the_tasks_that_run_for_ever_and_collects_the_others() {
        let shutdown = Shutdown::default();
        shutdown.spawn(std::future::pending());
        let (ran, has_run) = tokio::sync::oneshot::channel();
        let mut stopped = shutdown.stopped();
        shutdown.spawn(async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
            let _ = ran.send(());
        });
        shutdown.stop();
        has_run.await.expect("the task saw the stop");
        // Returns although one task would never end by itself.
        shutdown.join().await;
        assert!(*shutdown.stopped().borrow());
        assert!(!*shutdown.aborted().borrow());
    }

    #[tokio::test]
    async fn join_aborts_the_tasks_it_was_given_after_its_own() {
        let shutdown = Shutdown::default();
        let connections = Tasks::default();
        shutdown.close_at_join(&connections);
        // A connection to a peer that never answers.
        connections.spawn(std::future::pending());
        let (ran, has_run) = tokio::sync::oneshot::channel();
        connections.spawn(async move {
            let _ = ran.send(());
        });
        has_run.await.expect("the task ran");
        shutdown.join().await;
        assert_eq!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            0
        );
    }

    #[tokio::test]
    async fn tasks_join_waits_and_finished_ones_are_collected() {
        let tasks = Tasks::default();
        for _ in 0..3 {
            tasks.spawn(async {});
        }
        tokio::task::yield_now().await;
        let (go, went) = tokio::sync::oneshot::channel::<()>();
        // Collects the three that ended.
        tasks.spawn(async move {
            let _ = went.await;
        });
        assert_eq!(tasks.lock().len(), 1);
        let _ = go.send(());
        tasks.join().await;
        assert!(tasks.lock().is_empty());
    }

    #[tokio::test]
    async fn the_abort_is_seen_by_every_receiver() {
        let shutdown = Shutdown::default();
        let mut aborted = shutdown.aborted();
        shutdown.abort();
        assert!(aborted.wait_for(|aborted| *aborted).await.is_ok());
    }
}
