//! The soak's workers: the worker of each soak kind and the persistent `Keeper`.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use millrace::{
    BoxError, Job, JobArgs, PersistentContext, PersistentWorker, Schema, WorkError, Worker,
};
use serde::de::DeserializeOwned;
use sqlx::{AssertSqlSafe, PgPool};

use crate::ledger::Ledger;

/// How often the persistent instance writes its fenced beat.
const BEAT: Duration = Duration::from_millis(200);
/// The longest a `soak_cancel` job waits for its cancel before failing its attempt.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

/// What a soak worker does with a job of its kind, once its attempt is recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Behaviour {
    /// Commits its work with its completion.
    Complete,
    /// Snoozes a second at its first run.
    SnoozeOnce,
    /// Fails its first attempt.
    FailFirst,
    /// Waits for its cancel.
    AwaitCancel,
}

/// The worker of one soak kind.
pub(crate) struct SoakWorker<A, D> {
    driver: D,
    process: String,
    behaviour: Behaviour,
    runs: AtomicU64,
    args: PhantomData<fn() -> A>,
}

impl<A, D> SoakWorker<A, D> {
    pub(crate) fn new(driver: D, process: &str, behaviour: Behaviour) -> Self {
        SoakWorker {
            driver,
            process: process.to_owned(),
            behaviour,
            runs: AtomicU64::new(0),
            args: PhantomData,
        }
    }
}

impl<A, D> Worker for SoakWorker<A, D>
where
    A: JobArgs + DeserializeOwned + Send + Sync + 'static,
    D: Ledger,
{
    type Args = A;

    async fn work(&self, job: Job<A>) -> Result<(), WorkError> {
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let run_id = format!("{}:{}:{run}", self.process, A::KIND);
        // Bounded by the job's timeout and its cancel token.
        let mut backoff = Duration::from_millis(20);
        while let Err(err) = self
            .driver
            .record_attempt(&run_id, job.row.id, job.row.attempt, A::KIND, &self.process)
            .await
        {
            if job.is_cancelled() {
                return Err(WorkError::msg(format!(
                    "recording the attempt failed: {err}"
                )));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
        match self.behaviour {
            Behaviour::SnoozeOnce
                if job
                    .row
                    .metadata
                    .get("snoozes")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0)
                    == 0 =>
            {
                Err(WorkError::snooze(Duration::from_secs(1)))
            }
            Behaviour::FailFirst if job.row.attempt <= 1 => {
                Err(WorkError::msg("the first attempt fails by design"))
            }
            Behaviour::AwaitCancel => {
                tokio::select! {
                    () = job.cancelled() => Err(WorkError::cancel("cancelled while running")),
                    () = tokio::time::sleep(CANCEL_WAIT) => Err(WorkError::msg("no cancel came")),
                }
            }
            _ => {
                // Work that takes a while (0 to 200 ms), so that faults find jobs in flight.
                let busy = Duration::from_millis(u64::try_from(job.row.id.0 % 5).unwrap_or(0) * 50);
                tokio::select! {
                    () = job.cancelled() => return Err(WorkError::msg("stopped while working")),
                    () = tokio::time::sleep(busy) => {}
                }
                self.driver.complete_with_effect(&job, &self.process).await
            }
        }
    }

    fn timeout(&self, _job: &Job<A>) -> Option<Duration> {
        Some(CANCEL_WAIT + Duration::from_secs(15))
    }
}

/// The soak's persistent worker: writes a beat every 200 ms, fenced on its row's attempt
/// (the fencing token), and notes every beat the fence refused while its token had not fired.
pub(crate) struct Keeper {
    pub(crate) pool: PgPool,
    pub(crate) schema: Schema,
    pub(crate) process: String,
}

impl PersistentWorker for Keeper {
    async fn run(&self, ctx: PersistentContext) -> Result<(), BoxError> {
        let beat = format!(
            "WITH fence AS (\
                 SELECT 1 FROM {job} WHERE id = $2 AND attempt = $3 AND state = 'running' \
                 FOR SHARE) \
             INSERT INTO {persistent} (process, job_id, attempt, started_at, last_beat_at) \
             SELECT $1, $2, $3, clock_timestamp(), clock_timestamp() FROM fence \
             ON CONFLICT (process, job_id, attempt) DO UPDATE SET last_beat_at = clock_timestamp()",
            job = self.schema.qualify("river_job"),
            persistent = self.schema.qualify("soak_persistent"),
        );
        let zombie = format!(
            "INSERT INTO {} (process, attempt) VALUES ($1, $2)",
            self.schema.qualify("soak_zombie_beats")
        );
        // The soak's checks read the row's attempt column, so its beats are fenced on the
        // attempt rather than on the fencing token.
        #[allow(deprecated)]
        let attempt = i32::from(ctx.attempt());
        while !ctx.is_cancelled() {
            let written = sqlx::query(AssertSqlSafe(beat.clone()))
                .bind(&self.process)
                .bind(ctx.job_id().0)
                .bind(attempt)
                .execute(&self.pool)
                .await;
            if let Ok(done) = written {
                if done.rows_affected() == 0 && !ctx.is_cancelled() {
                    let _ = sqlx::query(AssertSqlSafe(zombie.clone()))
                        .bind(&self.process)
                        .bind(attempt)
                        .execute(&self.pool)
                        .await;
                }
            }
            tokio::select! {
                () = ctx.cancelled() => break,
                () = tokio::time::sleep(BEAT) => {}
            }
        }
        Ok(())
    }
}
