//! Deletes finalized jobs past their retention: completed and cancelled after 24 h, discarded
//! after 7 days, as River's cleaner; each configurable or kept for ever. Runs on the River
//! leader.

use std::sync::Arc;

use millrace_driver::{Driver, Executor, JobDeleteFinalizedParams};
use tokio_util::sync::CancellationToken;

use crate::runtime::shared::Shared;

const BATCH: i32 = 1_000;

pub(crate) fn service<D: Driver>(
    shared: Arc<Shared<D>>,
    stop: CancellationToken,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        let interval = shared.config.maintenance.cleaner_interval;
        super::every("job_cleaner", interval, stop, || pass(&shared)).await;
    })
}

async fn pass<D: Driver>(shared: &Shared<D>) -> millrace_driver::Result<()> {
    let m = &shared.config.maintenance;
    let now = shared.config.now();
    let before = |keep: Option<std::time::Duration>| keep.and_then(|k| now.checked_sub(k).ok());
    let params = JobDeleteFinalizedParams {
        completed_before: before(m.completed_retention),
        cancelled_before: before(m.cancelled_retention),
        discarded_before: before(m.discarded_retention),
        max: BATCH,
    };
    if params.completed_before.is_none()
        && params.cancelled_before.is_none()
        && params.discarded_before.is_none()
    {
        return Ok(());
    }
    loop {
        let deleted = shared
            .driver
            .executor()
            .job_delete_finalized(&params)
            .await?;
        if deleted > 0 {
            tracing::debug!(deleted, "deleted finalized jobs");
        }
        if deleted < BATCH as u64 {
            return Ok(());
        }
    }
}
