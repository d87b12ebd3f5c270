//! The executor's hot path: fetching jobs (plain, or under concurrency and rate limits),
//! starting one by id, and storing outcomes. The `Executor` impl in `executor.rs` delegates
//! to these.

use millrace_driver::{
    FetchLimit, JobCompleteParams, JobCompleted, JobGetAvailableParams, JobOutcome, Result,
};
use millrace_types::{JobId, JobRead, JobRow, JobState};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row};

use super::{PgExecutor, PgQuery, query};
use crate::db_error;
use crate::row::{fetched_job_read, job_row, parse_state};

impl PgExecutor<'_> {
    pub(super) async fn fetch_job_get_available(
        &mut self,
        params: &JobGetAvailableParams,
    ) -> Result<Vec<JobRead>> {
        if let Some(rate) = &params.rate {
            return self.job_get_available_rated(params, rate).await;
        }
        if let Some(limit) = &params.limit {
            return self.job_get_available_limited(params, limit).await;
        }
        let q = query(&self.driver.queries().job_get_available)
            .bind(params.queue.as_str())
            .bind(params.now.map(jiff_sqlx::Timestamp::from))
            .bind(params.max)
            .bind(params.client_id.as_str());
        self.fetch_all(q)
            .await?
            .iter()
            .map(fetched_job_read)
            .collect()
    }

    pub(super) async fn fetch_job_start_by_id(
        &mut self,
        id: JobId,
        client_id: &str,
    ) -> Result<Option<JobRow>> {
        let q = query(&self.driver.queries().job_start_by_id)
            .bind(id.0)
            .bind(client_id.to_owned());
        self.fetch_optional(q)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    pub(super) async fn fetch_job_complete_many(
        &mut self,
        params: &[JobCompleteParams],
    ) -> Result<Vec<JobCompleted>> {
        let (plain, other): (Vec<&JobCompleteParams>, Vec<&JobCompleteParams>) = params
            .iter()
            .partition(|p| p.outcome == JobOutcome::Completed && p.metadata_merge.is_none());
        let mut done = Vec::with_capacity(params.len());
        // The sequences whose job finished: their next jobs are promoted once the outcomes
        // are stored.
        let mut finished_keys = Vec::new();
        // One statement per attempt number: see `job_complete_completed`.
        let mut by_attempt: Vec<(i16, Vec<i64>)> = Vec::new();
        for p in plain {
            match by_attempt
                .iter_mut()
                .find(|(attempt, _)| *attempt == p.attempt)
            {
                Some((_, ids)) => ids.push(p.id.0),
                None => by_attempt.push((p.attempt, vec![p.id.0])),
            }
        }
        for (attempt, ids) in by_attempt {
            let q = query(&self.driver.queries().job_complete_completed)
                .bind(ids)
                .bind(attempt);
            for row in self.fetch_all(q).await? {
                if let Some(key) = row.try_get::<Option<String>, _>("seq").map_err(db_error)? {
                    finished_keys.push(key);
                }
                done.push(JobCompleted {
                    id: JobId(row.try_get("id").map_err(db_error)?),
                    state: JobState::Completed,
                });
            }
        }
        if !other.is_empty() {
            done.extend(
                self.job_complete_general(&other, &mut finished_keys)
                    .await?,
            );
        }
        if !finished_keys.is_empty() {
            // After the outcomes commit (on the pool) and under the keys' locks, so an insert
            // racing with this completion either saw it or is seen by the promotion. A crash
            // or a failure in between leaves the sequence to the promoter's sweep; the
            // outcomes are stored either way and are reported so.
            self.sequence_promote_after(finished_keys).await;
        }
        Ok(done)
    }

    /// Completion of any outcome, in one statement.
    async fn job_complete_general(
        &mut self,
        params: &[&JobCompleteParams],
        finished_keys: &mut Vec<String>,
    ) -> Result<Vec<JobCompleted>> {
        if params.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(params.len());
        let mut attempts = Vec::with_capacity(params.len());
        let mut states = Vec::with_capacity(params.len());
        let mut scheduled = Vec::with_capacity(params.len());
        let mut errors = Vec::with_capacity(params.len());
        let mut give_back = Vec::with_capacity(params.len());
        let mut snooze = Vec::with_capacity(params.len());
        let mut merges = Vec::with_capacity(params.len());
        for p in params {
            ids.push(p.id.0);
            attempts.push(p.attempt);
            merges.push(p.metadata_merge.as_deref());
            let (state, at, error, back, snoozed) = match &p.outcome {
                JobOutcome::Completed => (JobState::Completed, None, None, false, false),
                JobOutcome::Errored {
                    error,
                    retry_at,
                    discard,
                } => {
                    let state = if *discard {
                        JobState::Discarded
                    } else {
                        JobState::Retryable
                    };
                    (state, Some(*retry_at), Some(error), false, false)
                }
                JobOutcome::Cancelled { error } => {
                    (JobState::Cancelled, None, Some(error), false, false)
                }
                JobOutcome::Snoozed { until } => {
                    (JobState::Scheduled, Some(*until), None, true, true)
                }
                JobOutcome::Returned => (JobState::Available, None, None, true, false),
            };
            states.push(state.as_str());
            scheduled.push(at.map(jiff_sqlx::Timestamp::from));
            errors.push(
                error.map(|e| serde_json::to_string(e).expect("an AttemptError always encodes")),
            );
            give_back.push(back);
            snooze.push(snoozed);
        }
        let q = query(&self.driver.queries().job_complete_many)
            .bind(ids)
            .bind(attempts)
            .bind(states)
            .bind(scheduled)
            .bind(errors)
            .bind(give_back)
            .bind(snooze)
            .bind(merges);
        self.fetch_all(q)
            .await?
            .iter()
            .map(|row| {
                let state = parse_state(row)?;
                if state.is_finalized() {
                    if let Some(key) = row.try_get::<Option<String>, _>("seq").map_err(db_error)? {
                        finished_keys.push(key);
                    }
                }
                Ok(JobCompleted {
                    id: JobId(row.try_get("id").map_err(db_error)?),
                    state,
                })
            })
            .collect()
    }

    /// The fetch of a queue with a concurrency limit, in a transaction of its own (or the
    /// caller's): first the queue's advisory lock, then the counting fetch. Two statements,
    /// because under READ COMMITTED a statement sees what committed before it began: a lock
    /// taken inside the fetch statement would still leave it counting running rows from
    /// before a racing fetch committed.
    async fn job_get_available_limited(
        &mut self,
        params: &JobGetAvailableParams,
        limit: &FetchLimit,
    ) -> Result<Vec<JobRead>> {
        let queries = self.driver.queries();
        let fetch = |max: i32, pass: Pass| {
            let sql = match pass {
                Pass::Loose => &queries.job_get_available_loose,
                _ if limit.is_partitioned() => &queries.job_get_available_partitioned,
                _ => &queries.job_get_available_capped,
            };
            let fetch = query(sql)
                .bind(params.queue.as_str())
                .bind(params.now.map(jiff_sqlx::Timestamp::from))
                .bind(max)
                .bind(params.client_id.as_str())
                .bind(limit.global)
                .bind(limit.local);
            match pass {
                Pass::Window(window) if limit.is_partitioned() => fetch
                    .bind(limit.by_kind)
                    .bind(limit.by_args.clone())
                    .bind(window),
                Pass::All if limit.is_partitioned() => fetch
                    .bind(limit.by_kind)
                    .bind(limit.by_args.clone())
                    .bind(None::<i64>),
                _ => fetch,
            }
        };
        let passes: &[Pass] = if limit.is_partitioned() {
            &[Pass::Loose, Pass::Window(0), Pass::All]
        } else {
            &[Pass::Window(0)]
        };
        self.run_limited(params, passes, fetch).await
    }

    /// Runs a limited fetch (by concurrency, rate or both) in a transaction of its own, or
    /// the caller's: the queue's limit lock, then `fetch` for each of `passes` in turn while
    /// the batch is short of `params.max`, each asked for what is still missing. A
    /// [`Pass::Window`]'s size is set here, from the batch.
    ///
    /// A partitioned fetch tries [`Pass::Loose`] (the plain head of the queue when no
    /// partition can reach its limit), then ranks the head of the queue, which is enough
    /// unless saturated partitions fill it, and only then the whole backlog. Each pass's
    /// rows are running by the next, in the same transaction, so they count against their
    /// partitions.
    pub(super) async fn run_limited(
        &mut self,
        params: &JobGetAvailableParams,
        passes: &[Pass],
        fetch: impl Fn(i32, Pass) -> PgQuery,
    ) -> Result<Vec<JobRead>> {
        let queries = self.driver.queries();
        let key = format!("millrace.limit.{}.{}", queries.schema.name(), params.queue);
        let lock = query(&queries.limit_lock).bind(key);
        let window = i64::from(params.max).saturating_mul(PARTITION_WINDOW_PER_SLOT);
        let window = window.max(PARTITION_WINDOW_MIN);
        let passes: Vec<Pass> = passes
            .iter()
            .map(|pass| match pass {
                Pass::Window(_) => Pass::Window(window),
                other => *other,
            })
            .collect();
        let rows = if let Some(conn) = &mut self.conn {
            let persistent = !self.driver.is_transaction_pooled();
            limited_passes(conn, persistent, lock, params.max, &passes, &fetch)
                .await
                .map_err(db_error)?
        } else {
            let (pool, pooled) = self.target();
            let mut tx = pool.begin().await.map_err(db_error)?;
            let rows = limited_passes(&mut tx, !pooled, lock, params.max, &passes, &fetch)
                .await
                .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            rows
        };
        rows.iter().map(fetched_job_read).collect()
    }
}

/// Runs a limited fetch on `conn`, inside the caller's transaction: the queue's lock, then
/// `first`, then, when `first` took fewer than `max` rows, `rest` for the rows still wanted.
async fn limited_passes<'q>(
    conn: &mut sqlx::PgConnection,
    persistent: bool,
    lock: Query<'q, Postgres, PgArguments>,
    max: i32,
    passes: &[Pass],
    fetch: &impl Fn(i32, Pass) -> Query<'q, Postgres, PgArguments>,
) -> std::result::Result<Vec<PgRow>, sqlx::Error> {
    lock.persistent(persistent).execute(&mut *conn).await?;
    let mut rows = Vec::new();
    for (index, pass) in passes.iter().enumerate() {
        let short = max - i32::try_from(rows.len()).unwrap_or(i32::MAX);
        if index > 0 && short <= 0 {
            break;
        }
        rows.extend(
            fetch(short, *pass)
                .persistent(persistent)
                .fetch_all(&mut *conn)
                .await?,
        );
    }
    Ok(rows)
}

/// One statement of a limited fetch (see `PgExecutor::run_limited`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Pass {
    /// The plain head of the queue, when the running rows and the batch stay within the
    /// limits whatever partitions the batch holds; nothing otherwise.
    Loose,
    /// The limited fetch, ranking at most this many waiting rows when partitioned.
    Window(i64),
    /// The partitioned fetch ranking every waiting row.
    All,
}

/// How many waiting rows a partitioned fetch ranks per row it may take, in its first pass.
const PARTITION_WINDOW_PER_SLOT: i64 = 10;

/// The fewest waiting rows a partitioned fetch ranks in its first pass.
const PARTITION_WINDOW_MIN: i64 = 500;
