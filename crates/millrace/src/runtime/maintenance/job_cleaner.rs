//! Deletes finalized jobs past their retention: completed and cancelled after 24 h, discarded
//! after 7 days, as River's cleaner; each configurable or kept for ever. Runs on the River
//! leader.

use std::time::Duration;

use millrace_driver::{Driver, Executor, JobDeleteFinalizedParams};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

const BATCH: i32 = 1_000;

/// Deletes finalized jobs past their retention.
#[derive(Clone)]
pub(crate) struct JobCleaner<D: Driver> {
    pub(in crate::runtime) driver: D,
    pub(in crate::runtime) clock: Clock,
    /// How often a pass runs.
    pub(in crate::runtime) interval: Duration,
    /// How long completed jobs are kept; `None` keeps them for ever.
    pub(in crate::runtime) completed_retention: Option<Duration>,
    /// How long cancelled jobs are kept; `None` keeps them for ever.
    pub(in crate::runtime) cancelled_retention: Option<Duration>,
    /// How long discarded jobs are kept; `None` keeps them for ever.
    pub(in crate::runtime) discarded_retention: Option<Duration>,
}

impl<D: Driver> JobCleaner<D> {
    pub(crate) async fn run(self, stop: CancellationToken) {
        super::every("job_cleaner", self.interval, stop, || self.pass()).await;
    }

    async fn pass(&self) -> millrace_driver::Result<()> {
        let now = self.clock.now();
        let before = |keep: Option<Duration>| keep.and_then(|k| now.checked_sub(k).ok());
        let params = JobDeleteFinalizedParams {
            completed_before: before(self.completed_retention),
            cancelled_before: before(self.cancelled_retention),
            discarded_before: before(self.discarded_retention),
            max: BATCH,
        };
        if params.completed_before.is_none()
            && params.cancelled_before.is_none()
            && params.discarded_before.is_none()
        {
            return Ok(());
        }
        loop {
            let deleted = self.driver.executor().job_delete_finalized(&params).await?;
            if deleted > 0 {
                tracing::debug!(deleted, "deleted finalized jobs");
            }
            if deleted < BATCH as u64 {
                return Ok(());
            }
        }
    }
}
