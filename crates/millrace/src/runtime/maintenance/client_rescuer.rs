//! Rescues the running jobs of Millrace clients whose heartbeat lease ran out, within about a
//! second, recording the rescue as River's rescuer does. Runs under the Millrace lease.

use std::collections::BTreeSet;
use std::sync::Weak;
use std::time::Duration;

use millrace_driver::{Driver, Executor};
use tokio_util::sync::CancellationToken;

use super::job_rescuer::{RescueKind, rescue};
use super::job_scheduler::notify_queues;
use crate::clock::Clock;
use crate::insert::LocalQueues;

/// How often the leaseholder looks for dead clients.
const INTERVAL: Duration = Duration::from_secs(1);
const BATCH: i32 = 1_000;

/// Returns the running jobs of clients whose heartbeat lease ran out to their queues.
#[derive(Clone)]
pub(crate) struct ClientRescuer<D: Driver> {
    pub(in crate::runtime) driver: D,
    pub(in crate::runtime) clock: Clock,
    /// This client's producers and keepers, woken for the queues that got jobs back (weakly:
    /// see [`super::ServiceFn`]).
    pub(in crate::runtime) local: Weak<dyn LocalQueues>,
}

impl<D: Driver> ClientRescuer<D> {
    pub(crate) async fn run(self, stop: CancellationToken) {
        super::every("client_rescuer", INTERVAL, stop, || self.pass()).await;
    }

    async fn pass(&self) -> millrace_driver::Result<()> {
        let mut exec = self.driver.executor();
        let dead = exec.client_get_expired(100).await?;
        if dead.is_empty() {
            return Ok(());
        }
        loop {
            let rows = exec.job_get_running_of_clients(&dead, BATCH).await?;
            // Persistent instances are left out by the statement itself: they move by their
            // own lease, which the holder fences itself by, so a heartbeat shorter than that
            // lease must not hand them over early. Filtering them here, after the limit, would
            // fetch the same batch for ever once a whole batch were instances (issue 15).
            let count = rows.len();
            if !rows.is_empty() {
                tracing::warn!(clients = ?dead, jobs = count, "rescuing the jobs of clients whose heartbeat lease ran out");
                let queues: BTreeSet<String> = rows
                    .iter()
                    .map(|r| match r {
                        Ok(job) => job.queue.clone(),
                        Err(job) => job.queue.clone(),
                    })
                    .collect();
                let now = self.clock.now();
                rescue(&mut exec, rows, RescueKind::DeadClient, now).await?;
                let queues: BTreeSet<&str> = queues.iter().map(String::as_str).collect();
                notify_queues(&self.driver, &self.local, &mut exec, &queues).await?;
            }
            if count < BATCH as usize {
                break;
            }
        }
        // Only once every job of theirs is handled, so a failure above retries next pass; and
        // only rows still expired and holding no running job, since a client may have come
        // back (SIGCONT) and taken jobs since the read above: without its row, those would be
        // under no lease, and were it to die now no rescuer of ours would take them.
        exec.client_delete_expired(&dead).await?;
        Ok(())
    }
}
