//! SIGINT and SIGTERM, for the commands that clean up before they exit: the library's
//! [`ShutdownSignals`], and what a command stopped by one reports.

use std::fmt;

use anyhow::Context as _;
use millrace::{ShutdownSignal, ShutdownSignals};

/// The command was stopped by a signal, after cleaning up; `main` exits with the signal's
/// status.
#[derive(Debug)]
pub(crate) struct Interrupted(pub(crate) ShutdownSignal);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stopped by {}", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// The signal that stopped the command, when one did.
pub(crate) fn interrupted_by(err: &anyhow::Error) -> Option<ShutdownSignal> {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Interrupted>())
        .map(|interrupted| interrupted.0)
}

/// Listens for SIGINT and SIGTERM from its creation on: a signal that arrives before
/// [`Signals::recv`] is called is kept, not lost, and no longer kills the process.
pub(crate) struct Signals(ShutdownSignals);

impl Signals {
    /// Installs the handlers.
    ///
    /// # Errors
    ///
    /// When the operating system refuses the handlers.
    pub(crate) fn new() -> anyhow::Result<Signals> {
        Ok(Signals(
            ShutdownSignals::new().context("could not listen for SIGINT and SIGTERM")?,
        ))
    }

    /// The next signal.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a signal is never lost by dropping the future.
    pub(crate) async fn recv(&mut self) -> ShutdownSignal {
        self.0.recv().await
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
