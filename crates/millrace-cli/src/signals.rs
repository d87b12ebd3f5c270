//! SIGINT and SIGTERM, for the commands that clean up before they exit.

use std::fmt;

/// A signal that asks the command to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGINT: Ctrl-C.
    Interrupt,
    /// SIGTERM: `kill`, service managers, container runtimes.
    Terminate,
}

impl Signal {
    /// The exit status of a command ended by this signal: 128 plus the signal's number, as a
    /// shell reports a process the signal killed.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        })
    }
}

/// The command was stopped by a signal, after cleaning up; `main` exits with the signal's
/// status.
#[derive(Debug)]
pub(crate) struct Interrupted(pub(crate) Signal);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stopped by {}", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// The signal that stopped the command, when one did.
pub(crate) fn interrupted_by(err: &anyhow::Error) -> Option<Signal> {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Interrupted>())
        .map(|interrupted| interrupted.0)
}

/// Listens for SIGINT and SIGTERM from its creation on: a signal that arrives before
/// [`Signals::recv`] is called is kept, not lost, and no longer kills the process.
pub(crate) struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers.
    ///
    /// # Errors
    ///
    /// When the operating system refuses the handlers.
    pub(crate) fn new() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use anyhow::Context as _;
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())
                    .context("could not listen for SIGINT")?,
                terminate: signal(SignalKind::terminate())
                    .context("could not listen for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a signal is never lost by dropping the future.
    pub(crate) async fn recv(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => Signal::Interrupt,
                _ = self.terminate.recv() => Signal::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Interrupt
        }
    }

    /// Runs `work` unless a signal comes first; then `work` is dropped and the result is
    /// [`Interrupted`], for the caller to clean up after.
    pub(crate) async fn interruptible<T>(
        &mut self,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::select! {
            result = work => result,
            signal = self.recv() => Err(Interrupted(signal).into()),
        }
    }
}
