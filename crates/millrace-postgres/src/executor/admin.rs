//! The executor's job admin verbs (get, list, cancel, retry, delete, update metadata), as
//! River's client has them. The `Executor` impl in `executor.rs` delegates to these.

use millrace_driver::{
    JobCancelParams, JobDeleteOutcome, JobListParams, JobRetryParams, Result, Topic,
};
use millrace_types::{JobId, JobRead, JobRow, JobState};
use sqlx::Row;

use super::{PgExecutor, bind_list, query};
use crate::db_error;
use crate::row::{job_read, job_row};

impl PgExecutor<'_> {
    pub(super) async fn admin_job_get_by_id(&mut self, id: JobId) -> Result<Option<JobRow>> {
        let q = query(&self.driver.queries().job_get_by_id).bind(id.0);
        self.fetch_optional(q)
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
        self.fetch_all(q).await?.iter().map(job_read).collect()
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
        let deleted: Vec<JobRead> = self
            .fetch_all(q)
            .await?
            .iter()
            .map(job_read)
            .collect::<Result<_>>()?;
        let keys: Vec<String> = deleted
            .iter()
            .filter_map(|j| j.as_ref().ok())
            .filter_map(|j| millrace_driver::sequence_key_of(&j.metadata))
            .collect();
        if !keys.is_empty() {
            self.sequence_promote_after(keys).await;
        }
        Ok(deleted)
    }

    pub(super) async fn admin_job_update_metadata(
        &mut self,
        id: JobId,
        metadata: &str,
    ) -> Result<Option<JobRow>> {
        let q = query(&self.driver.queries().job_update_metadata)
            .bind(id.0)
            .bind(metadata.to_owned());
        self.fetch_optional(q)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    pub(super) async fn admin_job_cancel(
        &mut self,
        params: &JobCancelParams,
    ) -> Result<Option<JobRow>> {
        let channel = self
            .driver
            .queries()
            .schema
            .channel(Topic::Control.as_str());
        let q = query(&self.driver.queries().job_cancel)
            .bind(params.id.0)
            .bind(params.now.map(jiff_sqlx::Timestamp::from))
            .bind(channel);
        let job = self
            .fetch_optional(q)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()?;
        if let Some(key) = job
            .as_ref()
            .filter(|j| j.state == JobState::Cancelled)
            .and_then(|j| millrace_driver::sequence_key_of(&j.metadata))
        {
            self.sequence_promote_after(vec![key]).await;
        }
        Ok(job)
    }

    pub(super) async fn admin_job_retry(
        &mut self,
        params: &JobRetryParams,
    ) -> Result<Option<JobRow>> {
        let q = query(&self.driver.queries().job_retry)
            .bind(params.id.0)
            .bind(params.now.map(jiff_sqlx::Timestamp::from));
        self.fetch_optional(q)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    pub(super) async fn admin_job_delete(&mut self, id: JobId) -> Result<JobDeleteOutcome> {
        let q = query(&self.driver.queries().job_delete).bind(id.0);
        let Some(row) = self.fetch_optional(q).await? else {
            return Ok(JobDeleteOutcome::NotFound);
        };
        let job = job_row(&row)?;
        if row.try_get::<bool, _>("deleted").map_err(db_error)? {
            if let Some(key) = millrace_driver::sequence_key_of(&job.metadata) {
                self.sequence_promote_after(vec![key]).await;
            }
            Ok(JobDeleteOutcome::Deleted(job))
        } else {
            Ok(JobDeleteOutcome::Running(job))
        }
    }
}
