//! stdin and stdout for the read loop. Under rsyslog (the confirming modes) both are pipes that
//! only rsyslog and this program use, and every message is a round trip: rsyslog writes a line
//! and waits for the reply. tokio's `Stdin` and `Stdout` hand each read and write to a blocking
//! thread, and those two thread hops per message cost more than the rest of the work (with
//! them, `--confirm` reached about 0.14 of a bare responder's rate). So under rsyslog a pipe is
//! driven by the runtime's own reactor, non-blocking; anything else (a file, a terminal, a
//! pipe shared with a shell) keeps tokio's blocking-thread handles, which never change the
//! file's flags.

use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;

pub(super) enum Input {
    Pipe(pipe::Receiver),
    Blocking(tokio::io::Stdin),
}

pub(super) enum Output {
    Pipe(pipe::Sender),
    Blocking(tokio::io::Stdout),
}

/// A second descriptor for the same pipe, for tokio to own.
fn duplicate(fd: std::os::fd::BorrowedFd<'_>) -> Option<std::fs::File> {
    fd.try_clone_to_owned().ok().map(std::fs::File::from)
}

impl Input {
    /// stdin, on the reactor when `under_rsyslog` and it is a pipe.
    pub(super) fn open(under_rsyslog: bool) -> Self {
        if under_rsyslog
            && let Some(file) = duplicate(io::stdin().as_fd())
            && let Ok(receiver) = pipe::Receiver::from_file(file)
        {
            return Input::Pipe(receiver);
        }
        Input::Blocking(tokio::io::stdin())
    }
}

impl Output {
    /// stdout, on the reactor when `under_rsyslog` and it is a pipe.
    pub(super) fn open(under_rsyslog: bool) -> Self {
        if under_rsyslog
            && let Some(file) = duplicate(io::stdout().as_fd())
            && let Ok(sender) = pipe::Sender::from_file(file)
        {
            return Output::Pipe(sender);
        }
        Output::Blocking(tokio::io::stdout())
    }
}

impl AsyncRead for Input {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Input::Pipe(pipe) => Pin::new(pipe).poll_read(cx, buf),
            Input::Blocking(stdin) => Pin::new(stdin).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Output {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Output::Pipe(pipe) => Pin::new(pipe).poll_write(cx, buf),
            Output::Blocking(stdout) => Pin::new(stdout).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Output::Pipe(pipe) => Pin::new(pipe).poll_flush(cx),
            Output::Blocking(stdout) => Pin::new(stdout).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Output::Pipe(pipe) => Pin::new(pipe).poll_shutdown(cx),
            Output::Blocking(stdout) => Pin::new(stdout).poll_shutdown(cx),
        }
    }
}
