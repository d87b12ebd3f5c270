//! River's rescuer: running jobs older than RescueStuckJobsAfter (1 h by default, or the job
//! timeout plus 1 h) are retried, discarded after their last attempt, or discarded when no
//! worker knows their kind. Jobs whose timeout is turned off are never rescued, and jobs of
//! live Millrace clients are left to their heartbeat. Runs on the River leader.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use millrace_driver::{Driver, Executor, JobCompleteParams, JobOutcome};
use millrace_types::{AttemptError, JobRead, JobRow};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::retry_policy::RetryPolicy;
use crate::runtime::undecodable::failed_attempt;
use crate::worker::Workers;

const BATCH: i32 = 1_000;

/// River's message for a rescued job.
pub(crate) const RESCUE_MESSAGE: &str = "Stuck job rescued by JobRescuer";
/// The metadata key River counts rescues in.
pub(crate) const RESCUE_COUNT_KEY: &str = "river:rescue_count";

/// Why a job is rescued.
#[derive(Clone, Copy)]
pub(crate) enum RescueKind<'a> {
    /// Running too long by River's rule: retried when its worker's policy (else the client's)
    /// says, discarded when no worker knows its kind.
    Stuck {
        workers: &'a Workers,
        retry_policy: &'a dyn RetryPolicy,
    },
    /// Its client's heartbeat lease ran out: back to available at once.
    DeadClient,
}

/// Retries or discards the jobs running longer than River's rule allows.
#[derive(Clone)]
pub(crate) struct JobRescuer<D: Driver> {
    pub(in crate::runtime) driver: D,
    pub(in crate::runtime) clock: Clock,
    /// How often a pass runs.
    pub(in crate::runtime) interval: Duration,
    /// River's RescueStuckJobsAfter: no job running for less is rescued.
    pub(in crate::runtime) rescue_after: Duration,
    /// The client's job timeout, for the kinds whose worker sets none.
    pub(in crate::runtime) job_timeout: Option<Duration>,
    /// The client's workers: a job's own timeout and retry policy, and whether its kind is
    /// known at all.
    pub(in crate::runtime) workers: Workers,
    /// The client's retry policy, for a rescued job whose worker has none of its own.
    pub(in crate::runtime) retry_policy: Arc<dyn RetryPolicy>,
}

impl<D: Driver> JobRescuer<D> {
    pub(crate) async fn run(self, stop: CancellationToken) {
        super::every("job_rescuer", self.interval, stop, || self.pass()).await;
    }

    async fn pass(&self) -> millrace_driver::Result<()> {
        // The client's clock, as for every time it computes, so a test clock sees the rescue.
        let now = self.clock.now();
        let after = self.rescue_after;
        let Ok(horizon) = now.checked_sub(after) else {
            return Ok(());
        };
        let mut exec = self.driver.executor();
        let rows = exec.job_get_stuck(horizon, BATCH).await?;
        let hour = Duration::from_secs(3600);
        let rows: Vec<JobRead> = rows
            .into_iter()
            .filter(|row| {
                // A row that did not decode cannot be worked: River's rule (the query's
                // horizon) alone applies.
                let Ok(row) = row else {
                    return true;
                };
                let Some(worker) = self.workers.get(&row.kind) else {
                    return true;
                };
                match worker.timeout_for(row).or(self.job_timeout) {
                    // A job whose timeout is off may run for ever: never rescued.
                    Some(Duration::MAX) | None => false,
                    Some(timeout) => {
                        let limit = after.max(timeout.saturating_add(hour));
                        row.attempted_at
                            .and_then(|at| at.checked_add(limit).ok())
                            .is_some_and(|deadline| deadline < now)
                    }
                }
            })
            .collect();
        if !rows.is_empty() {
            tracing::warn!(jobs = rows.len(), "rescuing stuck jobs");
            let kind = RescueKind::Stuck {
                workers: &self.workers,
                retry_policy: &*self.retry_policy,
            };
            rescue(&mut exec, rows, kind, now).await?;
        }
        Ok(())
    }
}

/// Records a rescue as River does: an error entry stamped `now`, the time of the rescue by the
/// client's clock, `river:rescue_count` + 1, then a retry (at once for a dead client), or a
/// discard after the last attempt or for an unknown kind. Fenced like any completion, so a job
/// that finished meanwhile keeps its outcome.
pub(crate) async fn rescue<E: Executor>(
    exec: &mut E,
    rows: Vec<JobRead>,
    kind: RescueKind<'_>,
    now: Timestamp,
) -> millrace_driver::Result<()> {
    let params: Vec<JobCompleteParams> = rows
        .iter()
        .map(|row| match row {
            Ok(row) => rescue_params(row, kind, now),
            Err(job) => {
                let message = rescue_message(kind, None);
                let (retry_at, unknown) = match kind {
                    RescueKind::DeadClient => (Some(now), false),
                    RescueKind::Stuck { workers, .. } => (None, workers.get(&job.kind).is_none()),
                };
                failed_attempt(job, format!("{message}; {job}"), retry_at, unknown, now)
            }
        })
        .collect();
    exec.job_complete_many(&params).await?;
    Ok(())
}

/// River's message for a rescue, naming the dead client when the row could be read.
fn rescue_message(kind: RescueKind<'_>, client: Option<&str>) -> String {
    match (kind, client) {
        (RescueKind::Stuck { .. }, _) => RESCUE_MESSAGE.to_owned(),
        (RescueKind::DeadClient, Some(client)) => {
            format!("{RESCUE_MESSAGE}: client {client} stopped heartbeating")
        }
        (RescueKind::DeadClient, None) => {
            format!("{RESCUE_MESSAGE}: its client stopped heartbeating")
        }
    }
}

/// The fenced completion that rescues one decoded row.
fn rescue_params(row: &JobRow, kind: RescueKind<'_>, now: Timestamp) -> JobCompleteParams {
    let message = rescue_message(
        kind,
        Some(row.attempted_by.last().map_or("", String::as_str)),
    );
    let (retry_at, unknown) = match kind {
        RescueKind::DeadClient => (now, false),
        RescueKind::Stuck {
            workers,
            retry_policy,
        } => {
            let worker = workers.get(&row.kind);
            let retry_at = worker
                .and_then(|w| w.next_retry(row))
                .unwrap_or_else(|| retry_policy.next_retry(row, now));
            (retry_at, worker.is_none())
        }
    };
    let count = row
        .metadata
        .get(RESCUE_COUNT_KEY)
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0)
        + 1;
    JobCompleteParams::new(
        row,
        JobOutcome::Errored {
            error: AttemptError {
                // The time of the rescue, not of the attempt, as River's rescuer records it.
                at: now,
                attempt: i32::from(row.attempt),
                error: message,
                trace: String::new(),
            },
            retry_at,
            discard: row.attempt >= row.max_attempts || unknown,
        },
    )
    .metadata_merge(Some(
        serde_json::json!({ RESCUE_COUNT_KEY: count }).to_string(),
    ))
}
