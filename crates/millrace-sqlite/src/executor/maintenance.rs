//! The executor's maintenance verbs: what the rescuers, the cleaner, the scheduler, the
//! reindexer and a producer's orphan sweep run. The `Executor` impl in `executor.rs`
//! delegates to these.

use jiff::Timestamp;
use millrace_driver::{
    DriverError, Executor, JobDeleteFinalizedParams, JobReturnOrphansParams, JobScheduleParams,
    JobScheduled, PERSISTENT_KIND_PREFIX, Result,
};
use millrace_types::{JobId, JobRead};
use sqlx::Row;

use super::{SqliteExecutor, query, strings};
use crate::error::db_error;
use crate::row::{job_read, parse_state};
use crate::time::encode;

impl SqliteExecutor<'_> {
    pub(super) async fn maintenance_job_get_running_of_clients(
        &mut self,
        client_ids: &[String],
        max: i32,
    ) -> Result<Vec<JobRead>> {
        if client_ids.is_empty() || max <= 0 {
            return Ok(Vec::new());
        }
        let q = query(&self.driver.queries().job_get_running_of_clients)
            .bind(strings(client_ids))
            .bind(max)
            .bind(PERSISTENT_KIND_PREFIX);
        self.read_all(q).await?.iter().map(job_read).collect()
    }

    pub(super) async fn maintenance_job_get_stuck(
        &mut self,
        horizon: Timestamp,
        max: i32,
    ) -> Result<Vec<JobRead>> {
        if max <= 0 {
            return Ok(Vec::new());
        }
        let q = query(&self.driver.queries().job_get_stuck)
            .bind(encode(horizon))
            .bind(max);
        self.read_all(q).await?.iter().map(job_read).collect()
    }

    pub(super) async fn maintenance_job_delete_finalized(
        &mut self,
        params: &JobDeleteFinalizedParams,
    ) -> Result<u64> {
        if params.max <= 0 {
            return Ok(0);
        }
        let q = query(&self.driver.queries().job_delete_finalized)
            .bind(params.completed_before.map(encode))
            .bind(params.cancelled_before.map(encode))
            .bind(params.discarded_before.map(encode))
            .bind(params.max);
        let deleted = self.write(q).await?;
        Ok(deleted)
    }

    pub(super) async fn maintenance_index_reindex(&mut self, index: &str) -> Result<()> {
        // Index names come from the client, never from users; still, only a plain name is
        // put into SQL.
        if index.is_empty() || !index.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(DriverError::Database(
                format!("invalid index name {index:?}").into(),
            ));
        }
        // SQLite rebuilds an index under the write lock; there is no concurrent variant.
        let name = self.driver.queries().schema.qualify(index);
        self.exec_script(&format!("REINDEX {name}")).await
    }

    pub(super) async fn maintenance_job_schedule(
        &mut self,
        params: &JobScheduleParams,
    ) -> Result<Vec<JobScheduled>> {
        if params.max <= 0 {
            return Ok(Vec::new());
        }
        let q = query(&self.driver.queries().job_schedule)
            .bind(params.horizon.map(encode))
            .bind(params.max);
        let mut scope = self.scope().await?;
        let rows = scope.fetch_all(q).await?;
        let scheduled = rows
            .iter()
            .map(|row| {
                Ok(JobScheduled {
                    id: JobId(row.try_get("id").map_err(db_error)?),
                    queue: row.try_get("queue").map_err(db_error)?,
                    state: parse_state(row)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        scope.finish().await?;
        Ok(scheduled)
    }

    pub(super) async fn maintenance_job_return_orphans(
        &mut self,
        params: &JobReturnOrphansParams,
    ) -> Result<u64> {
        let held: Vec<i64> = params.held.iter().map(|id| id.0).collect();
        let q = query(&self.driver.queries().job_return_orphans)
            .bind(params.client_id.clone())
            .bind(params.queue.clone())
            .bind(serde_json::to_string(&held).expect("numbers always encode"));
        let returned = self.write(q).await?;
        Ok(returned)
    }
}
