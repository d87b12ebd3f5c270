//! Makes scheduled and retryable jobs available when they are due.
//!
//! Mirrors River's `JobScheduler`; runs on the River leader.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::Timestamp;
use millrace_driver::{Driver, Executor, JobScheduleParams, Topic};
use millrace_types::JobState;
use tokio_util::sync::CancellationToken;

use crate::runtime::shared::Shared;

/// The most jobs moved in one statement.
const BATCH: i32 = 10_000;

pub(crate) fn service<D: Driver>(
    shared: Arc<Shared<D>>,
    stop: CancellationToken,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        let interval = shared.config.schedule_interval;
        super::every("job_scheduler", interval, stop, || {
            // Jobs due before the next pass become available now; the fetch still waits for
            // each one's time, so none starts early.
            let horizon = shared.config.now().checked_add(interval).ok();
            pass(&shared, horizon)
        })
        .await;
    })
}

async fn pass<D: Driver>(
    shared: &Shared<D>,
    horizon: Option<Timestamp>,
) -> millrace_driver::Result<()> {
    loop {
        let mut exec = shared.driver.executor();
        let moved = exec
            .job_schedule(&JobScheduleParams {
                horizon,
                max: BATCH,
            })
            .await?;
        let queues: BTreeSet<&str> = moved
            .iter()
            .filter(|j| j.state == JobState::Available)
            .map(|j| j.queue.as_str())
            .collect();
        notify_queues(shared, &mut exec, &queues).await?;
        if moved.len() < BATCH as usize {
            return Ok(());
        }
    }
}

/// Wakes this client's producers of `queues` and tells other clients through `river_insert`.
pub(crate) async fn notify_queues<D: Driver, E: Executor>(
    shared: &Shared<D>,
    exec: &mut E,
    queues: &BTreeSet<&str>,
) -> millrace_driver::Result<()> {
    for queue in queues {
        shared.wake_queue(queue);
    }
    if shared.driver.supports_listen_notify() && !queues.is_empty() {
        let notifications: Vec<(Topic, String)> = queues
            .iter()
            .map(|q| (Topic::Insert, serde_json::json!({ "queue": q }).to_string()))
            .collect();
        exec.notify_many(&notifications).await?;
    }
    Ok(())
}
