//! Deletes queues no client has reported for 24 h, as River's queue cleaner. Every client
//! refreshes its own queues' `updated_at` far more often. Runs on the River leader.

use std::time::Duration;

use millrace_driver::{Driver, Executor};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Deletes queues no client has reported for 24 h.
#[derive(Clone)]
pub(crate) struct QueueCleaner<D: Driver> {
    pub(in crate::runtime) driver: D,
    pub(in crate::runtime) clock: Clock,
    /// How often a pass runs.
    pub(in crate::runtime) interval: Duration,
}

impl<D: Driver> QueueCleaner<D> {
    pub(crate) async fn run(self, stop: CancellationToken) {
        super::every("queue_cleaner", self.interval, stop, || async {
            let Ok(before) = self.clock.now().checked_sub(RETENTION) else {
                return Ok(());
            };
            let deleted = self
                .driver
                .executor()
                .queue_delete_expired(before, 1_000)
                .await?;
            if !deleted.is_empty() {
                tracing::info!(queues = ?deleted, "deleted queues no client reported for 24 h");
            }
            Ok(())
        })
        .await;
    }
}
