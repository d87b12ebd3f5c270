//! Client heartbeats: each client keeps its `millrace_client` row fresh, so the Millrace
//! leaseholder can rescue a dead client's jobs seconds after its lease runs out, instead of
//! River's one-hour guess.

use std::sync::Arc;
use std::time::Duration;

use millrace_driver::{Driver, DriverError, Executor};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::runtime::shared::Shared;

/// The least time a beat is given, and waited before the next, when the fence is close.
const MIN_BEAT: Duration = Duration::from_millis(50);
/// How soon a failed beat is tried again.
const RETRY: Duration = Duration::from_millis(500);

pub(crate) struct Heartbeat<D: Driver> {
    shared: Arc<Shared<D>>,
}

/// Where the heartbeat renews: a connection of its own when the driver gives one.
///
/// On the client's pool a renewal queues with every worker, fetch and completion for a
/// connection; with the pool saturated and its connections lost and reopened (issue 20's
/// killed-connections proof: 5 connections, 20 workers), renewals starved for longer than the
/// fence allows and a healthy client cancelled its own jobs. On a connection of its own a
/// renewal fails only when the database cannot be reached, which is what the fence is for.
enum Line<D: Driver> {
    /// Not opened yet, or dropped after a failure: the next beat opens one.
    Closed,
    Open(D::Conn),
    /// The driver has no connection of its own to give: beats use the pool.
    Pool,
}

impl<D: Driver> Heartbeat<D> {
    pub(crate) fn new(shared: Arc<Shared<D>>) -> Self {
        Heartbeat { shared }
    }

    pub(crate) async fn run(self, stop: CancellationToken) {
        let lease = self.shared.config.heartbeat_lease;
        let every = lease / 3;
        // Before the lease can run out, with a margin for clock and network: past this the
        // client's jobs may be rescued elsewhere, so it stops them first (self-fencing).
        let fence_after = lease.saturating_sub(lease / 5);
        let mut last_ok = Instant::now();
        let mut failing = false;
        let mut fenced = false;
        let mut line = Line::Closed;
        loop {
            // A beat may take until the fence: on a loaded machine a slow renewal is still a
            // renewal, and cutting it off at a third of the lease (as before) fenced healthy
            // clients. One that hangs (a dead network path) is cut off there, so the fence
            // below fires on time. Once fenced, each beat has a third of the lease.
            let budget = if fenced {
                every
            } else {
                (last_ok + fence_after)
                    .saturating_duration_since(Instant::now())
                    .max(MIN_BEAT)
            };
            // The renewed lease runs from some moment after this one: counting from here,
            // not from the answer, keeps the fence on the safe side of a slow beat.
            let began = Instant::now();
            let beat = tokio::time::timeout(budget, self.beat(&mut line, lease))
                .await
                .unwrap_or_else(|_| Err(DriverError::Connection("heartbeat timed out".into())));
            match beat {
                Ok(()) => {
                    if failing {
                        tracing::info!("heartbeat renewed again");
                    }
                    last_ok = began;
                    failing = false;
                    fenced = false;
                }
                Err(err) => {
                    // The connection failed, or a beat was cut off mid-statement: either way it
                    // cannot be trusted, and the next beat opens another.
                    if let Line::Open(_) = line {
                        line = Line::Closed;
                    }
                    if !failing {
                        tracing::warn!(%err, "heartbeat failed; retrying");
                    }
                    failing = true;
                    if !fenced && last_ok.elapsed() >= fence_after {
                        tracing::error!(
                            "heartbeat lease about to run out; cancelling this client's running jobs so they are not worked twice"
                        );
                        self.shared.cancel_all_jobs();
                        fenced = true;
                    }
                }
            }
            // After a failure, retry soon, and never past the fence.
            let wait = if !failing {
                every
            } else if fenced {
                every.min(RETRY)
            } else {
                (last_ok + fence_after)
                    .saturating_duration_since(Instant::now())
                    .clamp(MIN_BEAT, RETRY)
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // A clean stop leaves nothing to rescue: forget the row at once.
        let id = [self.shared.config.id.clone()];
        let driver = &self.shared.driver;
        let deleted = match &mut line {
            Line::Open(conn) => driver.conn_executor(conn).client_delete(&id).await,
            Line::Closed | Line::Pool => driver.executor().client_delete(&id).await,
        };
        if let Err(err) = deleted {
            tracing::debug!(%err, "could not delete the heartbeat row; it will expire");
        }
        if let Line::Open(conn) = line {
            D::disconnect(conn).await;
        }
    }

    /// Renews the row once, on the heartbeat's own connection (opened first when there is
    /// none) or, when the driver gives none or it cannot be opened, on the pool.
    async fn beat(&self, line: &mut Line<D>, lease: Duration) -> millrace_driver::Result<()> {
        let driver = &self.shared.driver;
        let id = &self.shared.config.id;
        if let Line::Closed = line {
            match driver.connect().await {
                Ok(Some(conn)) => *line = Line::Open(conn),
                Ok(None) => *line = Line::Pool,
                // The server may refuse a new connection (its connection limit) while the
                // pool's still work: this beat goes through the pool, the next tries again.
                Err(err) => tracing::debug!(%err, "heartbeat could not open its connection"),
            }
        }
        match line {
            Line::Open(conn) => driver.conn_executor(conn).client_heartbeat(id, lease).await,
            Line::Closed | Line::Pool => driver.executor().client_heartbeat(id, lease).await,
        }
    }
}
