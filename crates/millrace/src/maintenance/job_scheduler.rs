//! Makes scheduled and retryable jobs available when they are due.
//!
//! Mirrors River's `JobScheduler`. Until leader election lands it runs on every started
//! client; that is safe because each pass locks its rows with `SKIP LOCKED`.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::Timestamp;
use millrace_driver::{Driver, Executor, JobScheduleParams, Topic};
use millrace_types::JobState;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::runtime::Shared;

/// The most jobs moved in one statement.
const BATCH: i32 = 10_000;

pub(crate) struct JobScheduler<D: Driver> {
    shared: Arc<Shared<D>>,
}

impl<D: Driver> JobScheduler<D> {
    pub(crate) fn new(shared: Arc<Shared<D>>) -> Self {
        JobScheduler { shared }
    }

    pub(crate) async fn run(self, stop: CancellationToken) {
        let interval = self.shared.config.schedule_interval;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Jobs due before the next pass become available now; the fetch still waits for
            // each one's time, so none starts early.
            let horizon = Timestamp::now().checked_add(interval).ok();
            if let Err(err) = self.pass(horizon).await {
                tracing::warn!(%err, "scheduling due jobs failed");
            }
        }
    }

    async fn pass(&self, horizon: Option<Timestamp>) -> millrace_driver::Result<()> {
        loop {
            let mut exec = self.shared.driver.executor();
            let moved = exec
                .job_schedule(&JobScheduleParams { horizon, max: BATCH })
                .await?;
            let queues: BTreeSet<&str> = moved
                .iter()
                .filter(|j| j.state == JobState::Available)
                .map(|j| j.queue.as_str())
                .collect();
            for queue in &queues {
                self.shared.wake_queue(queue);
            }
            if self.shared.driver.supports_listen_notify() && !queues.is_empty() {
                let notifications: Vec<(Topic, String)> = queues
                    .iter()
                    .map(|q| (Topic::Insert, serde_json::json!({ "queue": q }).to_string()))
                    .collect();
                exec.notify_many(&notifications).await?;
            }
            if moved.len() < BATCH as usize {
                return Ok(());
            }
        }
    }
}
