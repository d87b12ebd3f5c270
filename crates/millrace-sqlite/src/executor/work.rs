//! The executor's hot path: fetching jobs (plain, or under concurrency and rate limits),
//! starting one by id, and storing outcomes. The `Executor` impl in `executor.rs`
//! delegates to these.

use millrace_driver::{JobCompleteParams, JobCompleted, JobGetAvailableParams, JobOutcome, Result};
use millrace_types::{JobId, JobRead, JobRow, JobState};
use sqlx::Row;

use super::{CompleteRow, SqliteExecutor, fields_json, query, sort_fetched};
use crate::error::db_error;
use crate::row::{job_read, job_row, parse_state};
use crate::time::encode;

impl SqliteExecutor<'_> {
    pub(super) async fn work_job_get_available(
        &mut self,
        params: &JobGetAvailableParams,
    ) -> Result<Vec<JobRead>> {
        // SQLite reads a negative LIMIT as no limit at all.
        if params.max <= 0 {
            return Ok(Vec::new());
        }
        if let Some(rate) = &params.rate {
            return self.job_get_available_rated(params, rate).await;
        }
        let q = match &params.limit {
            None => query(&self.driver.queries().job_get_available)
                .bind(params.queue.clone())
                .bind(params.now.map(encode))
                .bind(params.max)
                .bind(params.client_id.clone()),
            Some(limit) => query(&self.driver.queries().job_get_available_limited)
                .bind(params.queue.clone())
                .bind(params.now.map(encode))
                .bind(params.max)
                .bind(params.client_id.clone())
                .bind(limit.global)
                .bind(limit.local)
                .bind(limit.by_kind)
                .bind(fields_json(&limit.by_args)),
        };
        // In the driver's own transaction, the rows are committed as running only once they
        // have been read back: a fetch abandoned half-way (its future dropped) rolls back
        // instead of leaving orphans.
        let mut scope = self.scope().await?;
        let rows = scope.fetch_all(q).await?;
        let mut jobs = rows.iter().map(job_read).collect::<Result<Vec<_>>>()?;
        scope.finish().await?;
        sort_fetched(&mut jobs);
        Ok(jobs)
    }

    pub(super) async fn work_job_start_by_id(
        &mut self,
        id: JobId,
        client_id: &str,
    ) -> Result<Option<JobRow>> {
        let q = query(&self.driver.queries().job_start_by_id)
            .bind(id.0)
            .bind(client_id.to_owned());
        let mut scope = self.scope().await?;
        let job = scope
            .fetch_optional(q)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()?;
        scope.finish().await?;
        Ok(job)
    }

    pub(super) async fn work_job_complete_many(
        &mut self,
        params: &[JobCompleteParams],
    ) -> Result<Vec<JobCompleted>> {
        if params.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<CompleteRow<'_>> = params
            .iter()
            .map(|p| {
                let (state, at, error, give_back, snooze) = match &p.outcome {
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
                CompleteRow {
                    id: p.id.0,
                    attempt: p.attempt,
                    state: state.as_str(),
                    scheduled_at: at.map(encode),
                    error: error
                        .map(|e| serde_json::to_string(e).expect("an AttemptError always encodes")),
                    give_back,
                    snooze,
                    metadata_merge: p.metadata_merge.as_deref(),
                }
            })
            .collect();
        let payload = serde_json::to_string(&rows).expect("strings and numbers always encode");
        let q = query(&self.driver.queries().job_complete_many).bind(payload);
        let driver = self.driver;
        let own = self.conn.is_none();
        let mut scope = self.scope().await?;
        let rows = scope.fetch_all(q).await?;
        // The sequences whose job finished: their next jobs are promoted in this same
        // transaction.
        let mut finished_keys = Vec::new();
        let completed = rows
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
            .collect::<Result<Vec<_>>>()?;
        Self::sequence_promote_in_scope(driver, &mut scope, &finished_keys, own).await?;
        scope.finish().await?;
        Ok(completed)
    }
}
