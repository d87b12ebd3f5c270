//! The executor's job admin verbs (get, list, cancel, retry, delete, update metadata), as
//! River's client has them. The `Executor` impl in `executor.rs` delegates to these.

use jiff::Timestamp;
use millrace_driver::{
    JobCancelParams, JobDeleteOutcome, JobListParams, JobRetryParams, Result, Topic,
};
use millrace_types::{JobId, JobRead, JobRow, JobState, job_read_id};

use super::{SqliteExecutor, bind_list, query};
use crate::row::{decoded, job_read, job_row};
use crate::time::encode;

impl SqliteExecutor<'_> {
    pub(super) async fn admin_job_get_by_id(&mut self, id: JobId) -> Result<Option<JobRow>> {
        let q = query(&self.driver.queries().job_get_by_id).bind(id.0);
        self.read_optional(q)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    pub(super) async fn admin_job_list(&mut self, params: &JobListParams) -> Result<Vec<JobRead>> {
        let queries = self.driver.queries();
        let sql = if params.descending {
            &queries.job_list_desc
        } else {
            &queries.job_list_asc
        };
        let q = bind_list(query(sql), params);
        self.read_all(q).await?.iter().map(job_read).collect()
    }

    pub(super) async fn admin_job_delete_many(
        &mut self,
        params: &JobListParams,
    ) -> Result<Vec<JobRead>> {
        let queries = self.driver.queries();
        let sql = if params.descending {
            &queries.job_delete_many_desc
        } else {
            &queries.job_delete_many_asc
        };
        let q = bind_list(query(sql), params);
        let driver = self.driver;
        let own = self.conn.is_none();
        let mut scope = self.scope().await?;
        let rows = scope.fetch_all(q).await?;
        let mut jobs = rows.iter().map(job_read).collect::<Result<Vec<_>>>()?;
        let keys: Vec<String> = jobs
            .iter()
            .filter_map(|j| j.as_ref().ok())
            .filter_map(|j| millrace_driver::sequence_key_of(&j.metadata))
            .collect();
        Self::sequence_promote_in_scope(driver, &mut scope, &keys, own).await?;
        scope.finish().await?;
        // SQLite returns deleted rows in no set order.
        if params.descending {
            jobs.sort_by_key(|j| std::cmp::Reverse(job_read_id(j)));
        } else {
            jobs.sort_by_key(job_read_id);
        }
        Ok(jobs)
    }

    pub(super) async fn admin_job_update_metadata(
        &mut self,
        id: JobId,
        metadata: &str,
    ) -> Result<Option<JobRow>> {
        let q = query(&self.driver.queries().job_update_metadata)
            .bind(id.0)
            .bind(metadata.to_owned());
        let mut scope = self.scope().await?;
        let job = scope
            .fetch_optional(q)
            .await?
            .as_ref()
            .map(job_read)
            .transpose()?;
        scope.finish().await?;
        job.map(decoded).transpose()
    }

    pub(super) async fn admin_job_cancel(
        &mut self,
        params: &JobCancelParams,
    ) -> Result<Option<JobRow>> {
        let driver = self.driver;
        let own = self.conn.is_none();
        let now = params.now.unwrap_or_else(Timestamp::now);
        let q = query(&driver.queries().job_cancel)
            .bind(params.id.0)
            .bind(encode(now))
            .bind(now.to_string());
        let mut scope = self.scope().await?;
        let updated = scope.fetch_optional(q).await?;
        let job = match updated {
            Some(row) => {
                let job = job_read(&row)?;
                let (id, state, queue) = match &job {
                    Ok(job) => (job.id, job.state, &job.queue),
                    Err(job) => (job.id, job.state, &job.queue),
                };
                if state == JobState::Cancelled {
                    if let Some(key) = job
                        .as_ref()
                        .ok()
                        .and_then(|j| millrace_driver::sequence_key_of(&j.metadata))
                    {
                        Self::sequence_promote_in_scope(driver, &mut scope, &[key], own).await?;
                    }
                }
                if state == JobState::Running {
                    // Its client cancels the worker on this notification.
                    let payload = serde_json::json!({
                        "action": "cancel",
                        "job_id": id.0,
                        "queue": queue,
                    })
                    .to_string();
                    Self::notify_in_scope(driver, &mut scope, &[(Topic::Control, payload)], own)
                        .await?;
                }
                Some(job)
            }
            None => Self::job_in_scope(driver, &mut scope, params.id)
                .await?
                .map(Ok),
        };
        scope.finish().await?;
        job.map(decoded).transpose()
    }

    pub(super) async fn admin_job_retry(
        &mut self,
        params: &JobRetryParams,
    ) -> Result<Option<JobRow>> {
        let driver = self.driver;
        let q = query(&driver.queries().job_retry)
            .bind(params.id.0)
            .bind(params.now.map(encode));
        let mut scope = self.scope().await?;
        let job = match scope.fetch_optional(q).await? {
            Some(row) => Some(job_read(&row)?),
            None => Self::job_in_scope(driver, &mut scope, params.id)
                .await?
                .map(Ok),
        };
        scope.finish().await?;
        job.map(decoded).transpose()
    }

    pub(super) async fn admin_job_delete(&mut self, id: JobId) -> Result<JobDeleteOutcome> {
        let driver = self.driver;
        let own = self.conn.is_none();
        let q = query(&driver.queries().job_delete).bind(id.0);
        let mut scope = self.scope().await?;
        let deleted = scope
            .fetch_optional(q)
            .await?
            .as_ref()
            .map(job_read)
            .transpose()?;
        if let Some(job) = deleted {
            if let Some(key) = job
                .as_ref()
                .ok()
                .and_then(|j| millrace_driver::sequence_key_of(&j.metadata))
            {
                Self::sequence_promote_in_scope(driver, &mut scope, &[key], own).await?;
            }
            // Committed before the row is decoded: one that does not decode is deleted all
            // the same.
            scope.finish().await?;
            return Ok(JobDeleteOutcome::Deleted(decoded(job)?));
        }
        let outcome = match Self::job_in_scope(driver, &mut scope, id).await? {
            Some(job) => JobDeleteOutcome::Running(job),
            None => JobDeleteOutcome::NotFound,
        };
        scope.finish().await?;
        Ok(outcome)
    }
}
