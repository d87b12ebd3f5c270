//! The executor's maintenance verbs: what the rescuers, the cleaner, the scheduler, the
//! reindexer and a producer's orphan sweep run. The `Executor` impl in `executor.rs`
//! delegates to these.

use jiff::Timestamp;
use millrace_driver::{
    JobDeleteFinalizedParams, JobReturnOrphansParams, JobScheduleParams, JobScheduled,
    PERSISTENT_KIND_PREFIX, Result,
};
use millrace_types::{JobId, JobRead};
use sqlx::{AssertSqlSafe, Row};

use super::{PgExecutor, query};
use crate::db_error;
use crate::row::{job_read, parse_state};

impl PgExecutor<'_> {
    pub(super) async fn maintenance_job_get_running_of_clients(
        &mut self,
        client_ids: &[String],
        max: i32,
    ) -> Result<Vec<JobRead>> {
        let q = query(&self.driver.queries().job_get_running_of_clients)
            .bind(client_ids.to_vec())
            .bind(i64::from(max))
            .bind(PERSISTENT_KIND_PREFIX);
        self.fetch_all(q).await?.iter().map(job_read).collect()
    }

    pub(super) async fn maintenance_job_get_stuck(
        &mut self,
        horizon: Timestamp,
        max: i32,
    ) -> Result<Vec<JobRead>> {
        let q = query(&self.driver.queries().job_get_stuck)
            .bind(jiff_sqlx::Timestamp::from(horizon))
            .bind(i64::from(max));
        self.fetch_all(q).await?.iter().map(job_read).collect()
    }

    pub(super) async fn maintenance_job_delete_finalized(
        &mut self,
        params: &JobDeleteFinalizedParams,
    ) -> Result<u64> {
        // A state kept for ever gets a horizon no row is older than.
        let horizon =
            |t: Option<Timestamp>| jiff_sqlx::Timestamp::from(t.unwrap_or(Timestamp::MIN));
        let q = query(&self.driver.queries().job_delete_finalized)
            .bind(horizon(params.completed_before))
            .bind(horizon(params.cancelled_before))
            .bind(horizon(params.discarded_before))
            .bind(i64::from(params.max));
        self.execute(q).await
    }

    pub(super) async fn maintenance_index_reindex(&mut self, index: &str) -> Result<()> {
        let name = self.driver.queries().schema.qualify(index);
        // CONCURRENTLY cannot run in a transaction: always on a pool connection of its own.
        sqlx::raw_sql(AssertSqlSafe(format!("REINDEX INDEX CONCURRENTLY {name}")))
            .execute(self.driver.pool())
            .await
            .map(|_| ())
            .map_err(db_error)
    }

    pub(super) async fn maintenance_job_schedule(
        &mut self,
        params: &JobScheduleParams,
    ) -> Result<Vec<JobScheduled>> {
        let q = query(&self.driver.queries().job_schedule)
            .bind(params.horizon.map(jiff_sqlx::Timestamp::from))
            .bind(params.max);
        self.fetch_all(q)
            .await?
            .iter()
            .map(|row| {
                Ok(JobScheduled {
                    id: JobId(row.try_get("id").map_err(db_error)?),
                    queue: row.try_get("queue").map_err(db_error)?,
                    state: parse_state(row)?,
                })
            })
            .collect()
    }

    pub(super) async fn maintenance_job_return_orphans(
        &mut self,
        params: &JobReturnOrphansParams,
    ) -> Result<u64> {
        let q = query(&self.driver.queries().job_return_orphans)
            .bind(params.client_id.as_str())
            .bind(params.queue.as_str())
            .bind(params.held.iter().map(|id| id.0).collect::<Vec<_>>());
        self.execute(q).await
    }
}
