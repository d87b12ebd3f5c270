//! Stopping on the signal a service manager sends: SIGTERM from Kubernetes, systemd, Docker and
//! Nomad on every deploy, SIGINT (Ctrl-C) from a terminal.

use std::fmt;
use std::time::Duration;

use millrace_driver::Driver;

use super::Client;
use crate::error::{Error, Result};

/// How long [`Client::run_until_shutdown`] lets running jobs finish when asked to, by
/// convention: 20 s leaves the cancel grace and the stop's bounded wait on the database
/// (`ClientBuilder::stop_database_timeout`, 5 s by default) inside Kubernetes' default
/// `terminationGracePeriodSeconds` of 30 s.
pub const SHUTDOWN_GRACE_DEFAULT: Duration = Duration::from_secs(20);

/// The signal that asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownSignal {
    /// SIGINT, or Ctrl-C on Windows.
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl ShutdownSignal {
    /// The exit status shells report for a process this signal ended: 128 plus its number.
    ///
    /// ```
    /// assert_eq!(millrace::ShutdownSignal::Terminate.exit_code(), 143);
    /// ```
    pub fn exit_code(self) -> u8 {
        match self {
            ShutdownSignal::Interrupt => 130,
            ShutdownSignal::Terminate => 143,
        }
    }
}

impl fmt::Display for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShutdownSignal::Interrupt => "SIGINT",
            ShutdownSignal::Terminate => "SIGTERM",
        })
    }
}

/// Listens for SIGTERM and SIGINT (Ctrl-C on Windows) from the moment it is made, so that no
/// signal falls between two waits.
///
/// ```no_run
/// # async fn example() -> std::io::Result<()> {
/// let mut signals = millrace::ShutdownSignals::new()?;
/// let first = signals.recv().await;
/// println!("stopping on {first}; send it again to stop at once");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Starts listening. Once a process listens, these signals no longer end it by
    /// themselves: it stops when it chooses to.
    ///
    /// # Errors
    ///
    /// When the operating system refuses the signal handlers.
    pub fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(ShutdownSignals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignals {})
    }

    /// Waits for the next SIGTERM or SIGINT.
    pub async fn recv(&mut self) -> ShutdownSignal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => ShutdownSignal::Interrupt,
                _ = self.terminate.recv() => ShutdownSignal::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            ShutdownSignal::Interrupt
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C on Windows).
///
/// # Errors
///
/// When the operating system refuses the signal handlers.
///
/// ```no_run
/// # async fn example() -> std::io::Result<()> {
/// let signal = millrace::shutdown_signal().await?;
/// println!("asked to stop by {signal}");
/// # Ok(()) }
/// ```
pub async fn shutdown_signal() -> std::io::Result<ShutdownSignal> {
    Ok(ShutdownSignals::new()?.recv().await)
}

impl<D: Driver> Client<D> {
    /// Runs until SIGTERM or SIGINT, then stops softly: no new jobs are fetched, persistent
    /// workers are released at once (another process takes them over), running jobs get up to
    /// `grace` to finish, and the rest are cancelled, as [`Client::stop_with_timeout`] does. A
    /// second signal cancels the running jobs at once. A job cut off by the stop goes back to
    /// `available` without spending an attempt. Returns the first signal.
    ///
    /// Keep `grace` plus the cancel grace and `stop_database_timeout` inside the time the
    /// process manager waits before SIGKILL; [`SHUTDOWN_GRACE_DEFAULT`] fits Kubernetes'
    /// default 30 s.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] when the client is not running; [`Error::Signal`] when the
    /// operating system refuses the signal handlers (checked before waiting).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// client.start().await?;
    /// let signal = client.run_until_shutdown(millrace::SHUTDOWN_GRACE_DEFAULT).await?;
    /// std::process::exit(i32::from(signal.exit_code()));
    /// # }
    /// ```
    pub async fn run_until_shutdown(&self, grace: Duration) -> Result<ShutdownSignal> {
        let mut signals = ShutdownSignals::new().map_err(Error::Signal)?;
        if self.inner.runtime.lock().await.is_none() {
            return Err(Error::NotStarted);
        }
        let first = signals.recv().await;
        tracing::info!(signal = %first, grace = ?grace, "stopping: letting running jobs finish");
        let Some(runtime) = self.take_runtime().await else {
            // Stopped meanwhile by another caller.
            return Ok(first);
        };
        let hard_stop = runtime.shared.hard_stop.clone();
        let stop = runtime.stop(false, Some(grace));
        tokio::pin!(stop);
        tokio::select! {
            () = &mut stop => {}
            second = signals.recv() => {
                tracing::warn!(signal = %second, "second signal: cancelling running jobs");
                hard_stop.cancel();
                stop.await;
            }
        }
        Ok(first)
    }
}
