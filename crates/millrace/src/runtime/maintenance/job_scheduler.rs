//! Makes scheduled and retryable jobs available when they are due.
//!
//! Mirrors River's `JobScheduler`; runs on the River leader.

use std::collections::BTreeSet;
use std::sync::Weak;
use std::time::Duration;

use jiff::Timestamp;
use millrace_driver::{Driver, Executor, JobScheduleParams, Topic};
use millrace_types::JobState;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::insert::LocalQueues;

/// The most jobs moved in one statement.
const BATCH: i32 = 10_000;

/// Makes scheduled and retryable jobs available when they are due, and wakes their queues.
#[derive(Clone)]
pub(crate) struct JobScheduler<D: Driver> {
    pub(in crate::runtime) driver: D,
    pub(in crate::runtime) clock: Clock,
    /// How often a pass runs; jobs due before the next pass are moved in this one.
    pub(in crate::runtime) interval: Duration,
    /// This client's producers and keepers, woken for the queues that got jobs (weakly, as
    /// every maintenance service holds them: see [`super::ServiceFn`]).
    pub(in crate::runtime) local: Weak<dyn LocalQueues>,
}

impl<D: Driver> JobScheduler<D> {
    pub(crate) async fn run(self, stop: CancellationToken) {
        super::every("job_scheduler", self.interval, stop, || {
            // Jobs due before the next pass become available now; the fetch still waits for
            // each one's time, so none starts early.
            let horizon = self.clock.now().checked_add(self.interval).ok();
            self.pass(horizon)
        })
        .await;
    }

    async fn pass(&self, horizon: Option<Timestamp>) -> millrace_driver::Result<()> {
        loop {
            let mut exec = self.driver.executor();
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
            notify_queues(&self.driver, &self.local, &mut exec, &queues).await?;
            if moved.len() < BATCH as usize {
                return Ok(());
            }
        }
    }
}

/// Wakes this client's producers of `queues` (through `local`) and, when `driver` has
/// LISTEN/NOTIFY, tells other clients through `river_insert`.
pub(crate) async fn notify_queues<D: Driver, E: Executor>(
    driver: &D,
    local: &dyn LocalQueues,
    exec: &mut E,
    queues: &BTreeSet<&str>,
) -> millrace_driver::Result<()> {
    for queue in queues {
        local.wake_queue(queue);
    }
    if driver.supports_listen_notify() && !queues.is_empty() {
        let notifications: Vec<(Topic, String)> = queues
            .iter()
            .map(|q| (Topic::Insert, serde_json::json!({ "queue": q }).to_string()))
            .collect();
        exec.notify_many(&notifications).await?;
    }
    Ok(())
}
