//! Rescues the running jobs of Millrace clients whose heartbeat lease ran out, within about a
//! second, recording the rescue as River's rescuer does. Runs under the Millrace lease.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use millrace_driver::{Driver, Executor};
use tokio_util::sync::CancellationToken;

use super::job_rescuer::{RescueKind, rescue};
use crate::runtime::shared::Shared;

/// How often the leaseholder looks for dead clients.
const INTERVAL: Duration = Duration::from_secs(1);
const BATCH: i32 = 1_000;

pub(crate) fn service<D: Driver>(
    shared: Arc<Shared<D>>,
    stop: CancellationToken,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        super::every("client_rescuer", INTERVAL, stop, || pass(&shared)).await;
    })
}

async fn pass<D: Driver>(shared: &Shared<D>) -> millrace_driver::Result<()> {
    let mut exec = shared.driver.executor();
    let dead = exec.client_get_expired(100).await?;
    if dead.is_empty() {
        return Ok(());
    }
    loop {
        let rows = exec.job_get_running_of_clients(&dead, BATCH).await?;
        // Persistent instances are left out by the statement itself: they move by their own
        // lease, which the holder fences itself by, so a heartbeat shorter than that lease must
        // not hand them over early. Filtering them here, after the limit, would fetch the same
        // batch for ever once a whole batch were instances (issue 15).
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
            let now = shared.config.now();
            rescue(shared, &mut exec, rows, RescueKind::DeadClient, now).await?;
            let queues: BTreeSet<&str> = queues.iter().map(String::as_str).collect();
            super::job_scheduler::notify_queues(shared, &mut exec, &queues).await?;
        }
        if count < BATCH as usize {
            break;
        }
    }
    // Only once every job of theirs is handled, so a failure above retries next pass; and
    // only rows still expired and holding no running job, since a client may have come back
    // (SIGCONT) and taken jobs since the read above: without its row, those would be under
    // no lease, and were it to die now no rescuer of ours would take them.
    exec.client_delete_expired(&dead).await?;
    Ok(())
}
