//! Running one job: decode, work under timeout and panic guard, and hand the outcome to the
//! completer.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt;
use millrace_driver::{Driver, Executor, JobOutcome};
use millrace_types::{AttemptError, JobRow};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::middleware::{ErrorHandling, WorkMiddleware, wrap_work};
use crate::runtime::config::RuntimeConfig;
use crate::runtime::panic_trace::{Traced, panic_message, take_trace};
use crate::runtime::shared::Completion;
use crate::runtime::shared::Shared;
use crate::work_error::WorkError;
use crate::worker::Workers;
use crate::worker::{JOB_SPAN_TARGET, JobContext, JobRunState, MergeFn};

/// Why a job's work was interrupted before it returned.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Interrupt {
    Timeout(Duration),
    Stop,
}

/// What became of the worker's future.
enum Ended {
    Returned(Result<(), WorkError>),
    Panicked {
        message: String,
        trace: String,
    },
    /// Interrupted, and still running after the grace period: dropped (aborted).
    Aborted,
}

/// What running a job needs from its client.
pub(crate) struct ExecEnv<'a> {
    pub(crate) workers: &'a Workers,
    pub(crate) config: &'a RuntimeConfig,
    pub(crate) hard_stop: &'a CancellationToken,
    pub(crate) client_any: &'a Arc<dyn Any + Send + Sync>,
}

pub(crate) async fn run_job<D: Driver>(
    shared: Arc<Shared<D>>,
    row: JobRow,
    token: CancellationToken,
) {
    let env = ExecEnv {
        workers: &shared.workers,
        config: &shared.config,
        hard_stop: &shared.hard_stop,
        client_any: &shared.client_any,
    };
    let (id, attempt) = (row.id, row.attempt);
    let driver = shared.driver.clone();
    let merge: MergeFn = Arc::new(move |metadata| {
        let driver = driver.clone();
        Box::pin(async move {
            Ok(driver
                .executor()
                .job_merge_metadata_if_running(id, attempt, &metadata)
                .await?)
        })
    });
    let run = Arc::new(JobRunState {
        merge: Some(merge),
        ..JobRunState::default()
    });
    // Every event of the run (the worker's own among them) carries the job: in text logs after
    // the span's name, in JSON logs under `span`.
    let span = tracing::info_span!(
        target: JOB_SPAN_TARGET,
        "job",
        job_id = id.0,
        kind = %row.kind,
        queue = %row.queue,
        attempt,
        outcome = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    let (outcome, duration) = execute(&env, &row, token, run.clone())
        .instrument(span.clone())
        .await;
    // Recorded before the span closes, so a subscriber sees how the job ended and how long
    // it took on the span itself; a no-op when no subscriber enabled the span.
    span.record("outcome", outcome_name(&outcome));
    span.record("duration_ms", duration.as_secs_f64() * 1000.0);
    span.in_scope(|| log_outcome(&row, &outcome));
    let completion = Completion {
        completed_in_tx: run.completed_in_tx.load(Ordering::Acquire),
        metadata_merge: output_merge(&run),
        outcome,
        duration,
        row,
    };
    // Waits while the completer is behind: this is the backpressure that stops producers.
    if shared.completions.send(completion).await.is_err() {
        tracing::error!("completer stopped before a job's outcome could be stored");
    }
}

/// Works one job to its outcome: decode, run under timeout and panic guard.
pub(crate) async fn execute(
    env: &ExecEnv<'_>,
    row: &JobRow,
    token: CancellationToken,
    run: Arc<JobRunState>,
) -> (JobOutcome, Duration) {
    let started = Instant::now();
    let (ended, interrupt) = work(env, row, token, run).await;
    let duration = started.elapsed();
    (outcome(env, row, ended, interrupt), duration)
}

async fn work(
    shared: &ExecEnv<'_>,
    row: &JobRow,
    token: CancellationToken,
    run: Arc<JobRunState>,
) -> (Ended, Option<Interrupt>) {
    let Some(worker) = shared.workers.get(&row.kind) else {
        let err = format!(
            "no worker is registered for kind {:?} on this client (unknown job kind)",
            row.kind
        );
        return (Ended::Returned(Err(WorkError::msg(err))), None);
    };
    let ctx = JobContext {
        token: token.clone(),
        client: shared.client_any.clone(),
        run,
    };
    let prepared = match worker.prepare(row.clone(), ctx) {
        Ok(prepared) => prepared,
        Err(message) => return (Ended::Returned(Err(WorkError::msg(message))), None),
    };
    let timeout = match prepared.timeout.or(shared.config.job_timeout) {
        Some(Duration::MAX) | None => None,
        Some(limit) => Some(limit),
    };
    // Client middleware wrap the worker's own, which wrap the work.
    let middleware: Vec<Arc<dyn WorkMiddleware>> = shared
        .config
        .work_middleware
        .iter()
        .chain(worker.middleware())
        .cloned()
        .collect();
    let work = wrap_work(&middleware, row, prepared.work);
    let mut fut = AssertUnwindSafe(Traced(work)).catch_unwind();
    let deadline = timeout.map(|t| Instant::now() + t);
    let first = tokio::select! {
        result = &mut fut => {
            // A worker that returned because a hard stop fired its token was interrupted too.
            let interrupt = shared.hard_stop.is_cancelled().then_some(Interrupt::Stop);
            return (ended(result), interrupt);
        }
        _ = sleep_until_opt(deadline) => Interrupt::Timeout(timeout.unwrap_or_default()),
        _ = shared.hard_stop.cancelled() => Interrupt::Stop,
    };
    // Token first, so cooperative work can wind down; abort after the grace period.
    token.cancel();
    match tokio::time::timeout(shared.config.cancel_grace, &mut fut).await {
        Ok(result) => (ended(result), Some(first)),
        Err(_) => {
            drop(fut);
            (Ended::Aborted, Some(first))
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn ended(result: std::thread::Result<Result<(), WorkError>>) -> Ended {
    match result {
        Ok(returned) => Ended::Returned(returned),
        Err(payload) => Ended::Panicked {
            message: panic_message(payload.as_ref()),
            trace: take_trace(),
        },
    }
}

fn outcome(
    shared: &ExecEnv<'_>,
    row: &JobRow,
    ended: Ended,
    interrupt: Option<Interrupt>,
) -> JobOutcome {
    let now = shared.config.now();
    let attempt_error = |error: String, trace: String| AttemptError {
        at: row.attempted_at.unwrap_or(now),
        attempt: i32::from(row.attempt),
        error,
        trace,
    };
    let handler = shared.config.error_handler.as_deref();
    let failed = |error: AttemptError, panicked: Option<&str>| {
        let handling = match (handler, panicked) {
            (None, _) => ErrorHandling::Default,
            (Some(h), Some(message)) => h.handle_panic(row, message, &error.trace),
            (Some(h), None) => h.handle_error(row, &error.error),
        };
        if handling == ErrorHandling::Cancel {
            return JobOutcome::Cancelled { error };
        }
        let retry_at = shared
            .workers
            .get(&row.kind)
            .and_then(|w| w.next_retry(row))
            .unwrap_or_else(|| shared.config.retry_policy.next_retry(row, now));
        JobOutcome::Errored {
            error,
            retry_at,
            discard: row.attempt >= row.max_attempts,
        }
    };
    match (ended, interrupt) {
        (Ended::Returned(Ok(())), _) => JobOutcome::Completed,
        // A stop interrupted the attempt: it does not count, as in River's newest clients.
        (Ended::Aborted, Some(Interrupt::Stop))
        | (Ended::Returned(Err(_)), Some(Interrupt::Stop)) => JobOutcome::Returned,
        (Ended::Aborted, _) | (Ended::Returned(Err(_)), Some(Interrupt::Timeout(_))) => {
            let limit = match interrupt {
                Some(Interrupt::Timeout(limit)) => limit,
                _ => Duration::ZERO,
            };
            failed(
                attempt_error(format!("job timed out after {limit:?}"), String::new()),
                None,
            )
        }
        // A time jiff cannot hold (past 9999) is one no client could read back from the row:
        // refused as a failed attempt rather than clamped, or, as before, run again at once.
        (Ended::Returned(Err(WorkError::Snooze(after))), _) => match now.checked_add(after) {
            Ok(until) => JobOutcome::Snoozed { until },
            Err(_) => failed(
                attempt_error(
                    format!(
                        "snooze of {after:?} refused: it would schedule the job past \
                         {}, the latest time a job row can hold",
                        jiff::Timestamp::MAX
                    ),
                    String::new(),
                ),
                None,
            ),
        },
        (Ended::Returned(Err(WorkError::Cancel(err))), _) => JobOutcome::Cancelled {
            error: attempt_error(error_chain(err.as_ref()), String::new()),
        },
        (Ended::Returned(Err(WorkError::Retry(err))), _) => failed(
            attempt_error(error_chain(err.as_ref()), String::new()),
            None,
        ),
        (Ended::Panicked { message, trace }, _) => failed(
            attempt_error(format!("panic: {message}"), trace),
            Some(&message),
        ),
    }
}

/// Logs a failed attempt: a warning when the job will be retried, an error when it is
/// discarded. Other outcomes are what the job asked for, and are left to events.
///
/// The job's fields are on the event itself too, so the line carries them where the `job`
/// span is filtered out (as `millrace bench` does, to measure the queue rather than the
/// logger).
fn log_outcome(row: &JobRow, outcome: &JobOutcome) {
    if let JobOutcome::Errored { error, discard, .. } = outcome {
        let (job_id, kind, queue, attempt) = (row.id.0, &row.kind, &row.queue, row.attempt);
        if *discard {
            tracing::error!(job_id, %kind, %queue, attempt, error = %error.error, "job failed on its last attempt; discarded");
        } else {
            tracing::warn!(job_id, %kind, %queue, attempt, error = %error.error, "job failed; it will be retried");
        }
    }
}

/// The outcome's name on the job span: the state it leaves the job in, or `returned` for an
/// attempt a stop interrupted.
fn outcome_name(outcome: &JobOutcome) -> &'static str {
    match outcome {
        JobOutcome::Completed => "completed",
        JobOutcome::Errored { discard: true, .. } => "discarded",
        JobOutcome::Errored { .. } => "retryable",
        JobOutcome::Cancelled { .. } => "cancelled",
        JobOutcome::Snoozed { .. } => "snoozed",
        JobOutcome::Returned => "returned",
    }
}

/// The metadata merge that stores a recorded output with the outcome.
pub(crate) fn output_merge(run: &JobRunState) -> Option<String> {
    let output = run.output.lock().expect("lock poisoned").take()?;
    Some(format!("{{\"output\":{output}}}"))
}

/// An error and its sources, `outer: inner: innermost`.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        // Many errors (sqlx's among them) already include their source's message.
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = inner.source();
    }
    message
}
