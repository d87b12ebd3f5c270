//! Rows that do not decode: a fetched or rescued job whose row holds a value no River client
//! writes is failed on its own, so that it never stalls the batch it came in.

use std::sync::Arc;

use jiff::Timestamp;
use millrace_driver::{Driver, Executor, JobCompleteParams, JobOutcome};
use millrace_types::{AttemptError, UndecodableJob};

use crate::event::Event;
use crate::retry_policy::DefaultRetryPolicy;
use crate::runtime::shared::Shared;

/// A failed attempt of a job whose row did not decode, fenced on its attempt like any
/// completion: retried with River's default backoff (the worker's own policy needs the row),
/// discarded after its last attempt.
pub(crate) fn failed_attempt(
    job: &UndecodableJob,
    error: String,
    retry_at: Option<Timestamp>,
    discard: bool,
    now: Timestamp,
) -> JobCompleteParams {
    let attempt = usize::try_from(job.attempt).unwrap_or(0);
    let retry_at = retry_at.unwrap_or_else(|| {
        now.checked_add(DefaultRetryPolicy::base_delay(attempt))
            .unwrap_or(now)
    });
    // The metadata is left as it is: a rescue count cannot be read from a row that did not
    // decode.
    JobCompleteParams::new(
        job,
        JobOutcome::Errored {
            error: AttemptError {
                at: now,
                attempt: i32::from(job.attempt),
                error,
                trace: String::new(),
            },
            retry_at,
            discard: discard || job.attempt >= job.max_attempts,
        },
    )
}

/// Records a failed attempt for each fetched job whose row did not decode, then tells the
/// logs and subscribers. A store that fails leaves the rows running under this client; the
/// caller sweeps them back as orphans.
pub(crate) async fn fail_fetched<D: Driver>(
    shared: &Shared<D>,
    jobs: Vec<UndecodableJob>,
) -> millrace_driver::Result<()> {
    let now = shared.config.now();
    let params: Vec<JobCompleteParams> = jobs
        .iter()
        .map(|job| failed_attempt(job, job.to_string(), None, false, now))
        .collect();
    let stored = shared.driver.executor().job_complete_many(&params).await?;
    for job in jobs {
        let state = stored.iter().find(|s| s.id == job.id).map(|s| s.state);
        tracing::warn!(
            job_id = %job.id,
            kind = %job.kind,
            attempt = job.attempt,
            error = %job.error,
            state = ?state,
            "a fetched job's row could not be decoded; recorded as a failed attempt"
        );
        let Some(state) = state else {
            // Fenced out: rescued, cancelled or deleted meanwhile.
            continue;
        };
        // Sending fails only when nobody subscribes, which is fine.
        let _ = shared.events.send(Event::JobUndecodable {
            job: Arc::new(job),
            state,
        });
    }
    Ok(())
}
