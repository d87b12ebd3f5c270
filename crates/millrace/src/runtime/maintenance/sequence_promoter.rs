//! The sequences' safety net (issue 19): promotes the next pending job of sequences that have
//! nothing ahead of it any more, within about a second. Runs under the Millrace lease.
//!
//! Millrace promotes a sequence's next job in the same step that finishes the job before it,
//! so in a Millrace-only fleet this finds nothing. It is for what Millrace does not see: a
//! River client completing or discarding a sequence job (River knows nothing of sequences),
//! a row deleted by hand, a promotion lost with its process between its two transactions,
//! or an operator's retry, cancel or delete made without Millrace.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use millrace_driver::{Driver, Executor};
use tokio_util::sync::CancellationToken;

use crate::runtime::shared::Shared;

/// How often the leaseholder looks for stranded sequences.
const INTERVAL: Duration = Duration::from_secs(1);
/// The most sequences promoted per pass; the next pass takes the rest.
const BATCH: i32 = 1_000;

pub(crate) fn service<D: Driver>(
    shared: Arc<Shared<D>>,
    stop: CancellationToken,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        super::every("sequence_promoter", INTERVAL, stop, || pass(&shared)).await;
    })
}

async fn pass<D: Driver>(shared: &Shared<D>) -> millrace_driver::Result<()> {
    let mut exec = shared.driver.executor();
    let promoted = exec.sequence_promote_stranded(BATCH).await?;
    if promoted.is_empty() {
        return Ok(());
    }
    tracing::info!(
        sequences = promoted.len(),
        "promoted the next job of sequences left without a head"
    );
    // The driver notified the fleet; this client's own producers are woken without waiting
    // for the notification to come back.
    let queues: BTreeSet<&str> = promoted.iter().map(|p| p.queue.as_str()).collect();
    for queue in queues {
        shared.wake_queue(queue);
    }
    Ok(())
}
