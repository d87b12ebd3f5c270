//! Client heartbeats: each client keeps its `millrace_client` row fresh, so the Millrace
//! leaseholder can rescue a dead client's jobs seconds after its lease runs out, instead of
//! River's one-hour guess.

use std::sync::Arc;

use millrace_driver::{Driver, Executor};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::runtime::shared::Shared;

pub(crate) struct Heartbeat<D: Driver> {
    shared: Arc<Shared<D>>,
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
        loop {
            // A heartbeat that hangs (a dead network path) counts as failed, so the fence below
            // is checked in time.
            let beat = tokio::time::timeout(
                every,
                self.shared
                    .driver
                    .executor()
                    .client_heartbeat(&self.shared.config.id, lease),
            )
            .await
            .unwrap_or_else(|_| {
                Err(millrace_driver::DriverError::Connection(
                    "heartbeat timed out".into(),
                ))
            });
            match beat {
                Ok(()) => {
                    if failing {
                        tracing::info!("heartbeat renewed again");
                    }
                    last_ok = Instant::now();
                    failing = false;
                    fenced = false;
                }
                Err(err) => {
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
            let wait = if failing {
                every.min(std::time::Duration::from_millis(500))
            } else {
                every
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // A clean stop leaves nothing to rescue: forget the row at once.
        let id = [self.shared.config.id.clone()];
        if let Err(err) = self.shared.driver.executor().client_delete(&id).await {
            tracing::debug!(%err, "could not delete the heartbeat row; it will expire");
        }
    }
}
