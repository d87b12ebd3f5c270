//! The sequences' safety net (issue 19): promotes the next pending job of sequences that have
//! nothing ahead of it any more, within about a second. Runs under the Millrace lease.
//!
//! Millrace promotes a sequence's next job in the same step that finishes the job before it,
//! so in a Millrace-only fleet this finds nothing. It is for what Millrace does not see: a
//! River client completing or discarding a sequence job (River knows nothing of sequences),
//! a row deleted by hand, a promotion lost with its process between its two transactions,
//! or an operator's retry, cancel or delete made without Millrace.

use std::collections::BTreeSet;
use std::sync::Weak;
use std::time::Duration;

use millrace_driver::{Driver, Executor};
use tokio_util::sync::CancellationToken;

use crate::insert::LocalQueues;

/// How often the leaseholder looks for stranded sequences.
const INTERVAL: Duration = Duration::from_secs(1);
/// The most sequences promoted per pass; the next pass takes the rest.
const BATCH: i32 = 1_000;

/// Promotes the next pending job of sequences left without a head.
#[derive(Clone)]
pub(crate) struct SequencePromoter<D: Driver> {
    pub(in crate::runtime) driver: D,
    /// This client's producers and keepers, woken for the queues that got a job (weakly: see
    /// [`super::ServiceFn`]).
    pub(in crate::runtime) local: Weak<dyn LocalQueues>,
}

impl<D: Driver> SequencePromoter<D> {
    pub(crate) async fn run(self, stop: CancellationToken) {
        super::every("sequence_promoter", INTERVAL, stop, || self.pass()).await;
    }

    async fn pass(&self) -> millrace_driver::Result<()> {
        let mut exec = self.driver.executor();
        let promoted = exec.sequence_promote_stranded(BATCH).await?;
        if promoted.is_empty() {
            return Ok(());
        }
        tracing::info!(
            sequences = promoted.len(),
            "promoted the next job of sequences left without a head"
        );
        // The driver notified the fleet; this client's own producers are woken without
        // waiting for the notification to come back.
        let queues: BTreeSet<&str> = promoted.iter().map(|p| p.queue.as_str()).collect();
        for queue in queues {
            self.local.wake_queue(queue);
        }
        Ok(())
    }
}
