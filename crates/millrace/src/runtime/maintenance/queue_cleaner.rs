//! Deletes queues no client has reported for 24 h, as River's queue cleaner. Every client
//! refreshes its own queues' `updated_at` far more often. Runs on the River leader.

use std::sync::Arc;
use std::time::Duration;

use millrace_driver::{Driver, Executor};
use tokio_util::sync::CancellationToken;

use crate::runtime::shared::Shared;

const RETENTION: Duration = Duration::from_secs(24 * 3600);

pub(crate) fn service<D: Driver>(
    shared: Arc<Shared<D>>,
    stop: CancellationToken,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        let interval = shared.config.maintenance.cleaner_interval;
        super::every("queue_cleaner", interval, stop, || async {
            let Ok(before) = shared.config.now().checked_sub(RETENTION) else {
                return Ok(());
            };
            let deleted = shared
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
    })
}
