//! [`PgExecutor`]: the driver's verbs. The `Executor` impl at the end of this file is their
//! table of contents; each verb's body lives in the file of its noun (`work`: fetch, start and
//! complete; `insert`; `admin`; `queue`; `fleet`: leaders, heartbeats, periodic schedules and
//! persistent instances; `maintenance`; `migration`; `inspect`; `sequence`; `rate`).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use millrace_driver::{
    Executor, JobCancelParams, JobCompleteParams, JobCompleted, JobDeleteFinalizedParams,
    JobDeleteOutcome, JobGetAvailableParams, JobInsertParams, JobInsertResult, JobListParams,
    JobRetryParams, JobReturnOrphansParams, JobScheduleParams, JobScheduled, LeaderParams,
    LeaderRow, LeaderTable, MigrationRow, PersistentClaimParams, PersistentReleaseParams, QueueRow,
    Result, Topic,
};
use millrace_types::{JobId, JobRead, JobRow, JobState};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Row};

mod admin;
mod fleet;
mod insert;
mod inspect;
mod maintenance;
mod migration;
mod queue;
mod rate;
mod sequence;
mod work;

pub(crate) use inspect::InspectQueries;

use crate::{PgDriver, db_error};

/// Runs the driver's verbs on the pool or on one connection (a caller's transaction).
#[derive(Debug)]
pub struct PgExecutor<'a> {
    driver: &'a PgDriver,
    conn: Option<&'a mut PgConnection>,
    /// Statements on the pool go to the driver's direct pool, when it has one.
    direct: bool,
}

type PgQuery = Query<'static, Postgres, PgArguments>;

fn query(sql: &Arc<str>) -> PgQuery {
    sqlx::query(AssertSqlSafe(sql.clone()))
}

impl<'a> PgExecutor<'a> {
    pub(crate) fn pool(driver: &'a PgDriver) -> Self {
        PgExecutor {
            driver,
            conn: None,
            direct: false,
        }
    }

    pub(crate) fn conn(driver: &'a PgDriver, conn: &'a mut PgConnection) -> Self {
        PgExecutor {
            driver,
            conn: Some(conn),
            direct: false,
        }
    }

    /// This executor's connection, with statements on the pool sent to the direct pool when
    /// the driver has one: for leader election (see [`PgDriver::direct`]).
    fn on_direct(&mut self) -> PgExecutor<'_> {
        PgExecutor {
            driver: self.driver,
            conn: self.conn.as_deref_mut(),
            direct: true,
        }
    }

    /// Where a statement without a connection of its own runs, and whether that pool goes
    /// through a transaction-mode pooler.
    fn target(&self) -> (&PgPool, bool) {
        match self.driver.direct_pool() {
            Some(direct) if self.direct => (direct, false),
            _ => (self.driver.pool(), self.driver.is_transaction_pooled()),
        }
    }

    async fn fetch_all(&mut self, q: PgQuery) -> Result<Vec<PgRow>> {
        Ok(self.run(q, Fetch::All).await?.all())
    }

    async fn fetch_optional(&mut self, q: PgQuery) -> Result<Option<PgRow>> {
        Ok(self.run(q, Fetch::Optional).await?.all().pop())
    }

    async fn execute(&mut self, q: PgQuery) -> Result<u64> {
        Ok(self.run(q, Fetch::None).await?.affected())
    }

    /// Runs `q` where it belongs. Through a transaction-mode pooler the statement is unnamed
    /// and, on the pool, wrapped in a transaction: see [`PgDriver::transaction_pooled`].
    async fn run(&mut self, q: PgQuery, fetch: Fetch) -> Result<Fetched> {
        if let Some(conn) = &mut self.conn {
            // A caller's transaction keeps its server connection until it ends, but a named
            // statement would outlive it there, for the next client to trip over.
            let q = q.persistent(!self.driver.is_transaction_pooled());
            return fetch.run(q, &mut **conn).await.map_err(db_error);
        }
        let (pool, pooled) = self.target();
        if !pooled {
            return fetch.run(q, pool).await.map_err(db_error);
        }
        let q = q.persistent(false);
        let mut tx = pool.begin().await.map_err(db_error)?;
        let fetched = fetch.run(q, &mut *tx).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(fetched)
    }

    async fn migration_has_line(&mut self) -> Result<bool> {
        let q = query(&self.driver.queries().migration.has_line)
            .bind(self.driver.queries().schema.name().to_owned());
        let row = self.fetch_optional(q).await?;
        Ok(row.is_some_and(|r| r.get::<bool, _>(0)))
    }
}

/// What a statement's caller wants back.
#[derive(Clone, Copy)]
enum Fetch {
    All,
    Optional,
    None,
}

/// What a statement gave back.
enum Fetched {
    Rows(Vec<PgRow>),
    Affected(u64),
}

impl Fetched {
    fn all(self) -> Vec<PgRow> {
        match self {
            Fetched::Rows(rows) => rows,
            Fetched::Affected(_) => Vec::new(),
        }
    }

    fn affected(self) -> u64 {
        match self {
            Fetched::Rows(rows) => rows.len() as u64,
            Fetched::Affected(n) => n,
        }
    }
}

impl Fetch {
    async fn run<'e, E>(self, q: PgQuery, on: E) -> sqlx::Result<Fetched>
    where
        E: sqlx::Executor<'e, Database = Postgres>,
    {
        Ok(match self {
            Fetch::All => Fetched::Rows(q.fetch_all(on).await?),
            Fetch::Optional => Fetched::Rows(q.fetch_optional(on).await?.into_iter().collect()),
            Fetch::None => Fetched::Affected(q.execute(on).await?.rows_affected()),
        })
    }
}

impl Executor for PgExecutor<'_> {
    async fn exec_script(&mut self, sql: &str) -> Result<()> {
        self.migrations_exec_script(sql).await
    }

    async fn table_exists(&mut self, table: &str) -> Result<bool> {
        self.migrations_table_exists(table).await
    }

    async fn migration_get_all(&mut self, line: &str) -> Result<Vec<MigrationRow>> {
        self.migrations_migration_get_all(line).await
    }

    async fn migration_lock(&mut self) -> Result<()> {
        self.migrations_migration_lock().await
    }

    async fn migration_insert(&mut self, line: &str, version: i64) -> Result<()> {
        self.migrations_migration_insert(line, version).await
    }

    async fn migration_delete(&mut self, line: &str, version: i64) -> Result<()> {
        self.migrations_migration_delete(line, version).await
    }

    async fn job_insert_many(&mut self, jobs: &[JobInsertParams]) -> Result<Vec<JobInsertResult>> {
        self.insert_job_insert_many(jobs).await
    }

    async fn job_insert_fast(&mut self, jobs: &[JobInsertParams]) -> Result<u64> {
        self.insert_job_insert_fast(jobs).await
    }

    async fn job_get_by_id(&mut self, id: JobId) -> Result<Option<JobRow>> {
        self.admin_job_get_by_id(id).await
    }

    async fn job_list(&mut self, params: &JobListParams) -> Result<Vec<JobRead>> {
        self.admin_job_list(params).await
    }

    async fn job_delete_many(&mut self, params: &JobListParams) -> Result<Vec<JobRead>> {
        self.admin_job_delete_many(params).await
    }

    async fn job_count(&mut self, params: &JobListParams) -> Result<i64> {
        self.inspect_job_count(params).await
    }

    async fn job_count_by_queue_and_state(
        &mut self,
        states: &[JobState],
    ) -> Result<Vec<millrace_driver::JobCountRow>> {
        self.inspect_job_count_by_queue_and_state(states).await
    }

    async fn job_finalized_histogram(
        &mut self,
        since: Timestamp,
        bucket_secs: i64,
    ) -> Result<Vec<millrace_driver::FinalizedBucketRow>> {
        self.inspect_job_finalized_histogram(since, bucket_secs)
            .await
    }

    async fn job_state_estimates(&mut self) -> Result<Vec<millrace_driver::JobStateEstimate>> {
        self.inspect_job_state_estimates().await
    }

    async fn queue_oldest_available(&mut self) -> Result<millrace_driver::QueueOldestAvailable> {
        self.inspect_queue_oldest_available().await
    }

    async fn job_act_many(
        &mut self,
        params: &millrace_driver::JobBatchParams,
    ) -> Result<Vec<millrace_driver::JobBatchRow>> {
        let rows = self.inspect_job_act_many(params).await?;
        // The rows do not name their sequences; a cancel or delete that may have freed one
        // lets the sweep promote whatever it left without a head.
        if params.action != millrace_driver::JobBatchAction::Retry && rows.iter().any(|r| r.applied)
        {
            if let Err(err) = self.sequence_sweep(i32::MAX).await {
                tracing::warn!(%err, "promoting the next jobs of sequences failed; the sequence promoter will");
            }
        }
        Ok(rows)
    }

    async fn periodic_job_list(&mut self) -> Result<Vec<millrace_driver::PeriodicJobRow>> {
        self.inspect_periodic_job_list().await
    }

    async fn persistent_list(&mut self, kind_prefix: &str) -> Result<Vec<JobRead>> {
        self.inspect_persistent_list(kind_prefix).await
    }

    async fn client_list(&mut self) -> Result<Vec<millrace_driver::ClientRow>> {
        self.inspect_client_list().await
    }

    async fn job_count_running_by_client(
        &mut self,
    ) -> Result<Vec<millrace_driver::RunningCountRow>> {
        self.inspect_job_count_running_by_client().await
    }

    async fn sequence_promote(
        &mut self,
        keys: &[String],
    ) -> Result<Vec<millrace_driver::SequencePromoted>> {
        self.sequence_promote_keys(keys.to_vec()).await
    }

    async fn sequence_promote_stranded(
        &mut self,
        max: i32,
    ) -> Result<Vec<millrace_driver::SequencePromoted>> {
        self.sequence_sweep(max).await
    }

    async fn sequence_list(
        &mut self,
        params: &millrace_driver::SequenceListParams,
    ) -> Result<Vec<millrace_driver::SequenceRow>> {
        self.sequence_rows(params).await
    }

    async fn now(&mut self) -> Result<Timestamp> {
        self.inspect_now().await
    }

    async fn job_update_metadata(&mut self, id: JobId, metadata: &str) -> Result<Option<JobRow>> {
        self.admin_job_update_metadata(id, metadata).await
    }

    async fn queue_list(&mut self, after: Option<&str>, limit: i64) -> Result<Vec<QueueRow>> {
        self.queues_queue_list(after, limit).await
    }

    async fn queue_update_metadata(&mut self, name: &str, metadata: &str) -> Result<QueueRow> {
        self.queues_queue_update_metadata(name, metadata).await
    }

    async fn queue_set_metadata_key(
        &mut self,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<QueueRow> {
        self.queues_queue_set_metadata_key(name, key, value).await
    }

    async fn job_cancel(&mut self, params: &JobCancelParams) -> Result<Option<JobRow>> {
        self.admin_job_cancel(params).await
    }

    async fn job_retry(&mut self, params: &JobRetryParams) -> Result<Option<JobRow>> {
        self.admin_job_retry(params).await
    }

    async fn job_delete(&mut self, id: JobId) -> Result<JobDeleteOutcome> {
        self.admin_job_delete(id).await
    }

    async fn job_get_available(&mut self, params: &JobGetAvailableParams) -> Result<Vec<JobRead>> {
        self.fetch_job_get_available(params).await
    }

    async fn job_rate_limit_wait(
        &mut self,
        queue: &str,
        rate: &millrace_driver::FetchRate,
    ) -> Result<Option<std::time::Duration>> {
        self.rate_limit_wait(queue, rate).await
    }

    async fn job_start_by_id(&mut self, id: JobId, client_id: &str) -> Result<Option<JobRow>> {
        self.fetch_job_start_by_id(id, client_id).await
    }

    async fn job_complete_many(
        &mut self,
        params: &[JobCompleteParams],
    ) -> Result<Vec<JobCompleted>> {
        self.fetch_job_complete_many(params).await
    }

    async fn job_schedule(&mut self, params: &JobScheduleParams) -> Result<Vec<JobScheduled>> {
        self.maintenance_job_schedule(params).await
    }

    async fn job_return_orphans(&mut self, params: &JobReturnOrphansParams) -> Result<u64> {
        self.maintenance_job_return_orphans(params).await
    }

    async fn queue_create_or_touch(&mut self, name: &str) -> Result<QueueRow> {
        self.queues_queue_create_or_touch(name).await
    }

    async fn queue_get(&mut self, name: &str) -> Result<Option<QueueRow>> {
        self.queues_queue_get(name).await
    }

    async fn queue_set_paused(&mut self, name: &str, paused: bool) -> Result<u64> {
        self.queues_queue_set_paused(name, paused).await
    }

    async fn leader_attempt_elect(&mut self, params: &LeaderParams) -> Result<Option<LeaderRow>> {
        self.fleet_leader_attempt_elect(params).await
    }

    async fn leader_attempt_reelect(
        &mut self,
        params: &LeaderParams,
        elected_at: Timestamp,
    ) -> Result<Option<LeaderRow>> {
        self.fleet_leader_attempt_reelect(params, elected_at).await
    }

    async fn leader_resign(&mut self, table: LeaderTable, leader_id: &str) -> Result<bool> {
        self.fleet_leader_resign(table, leader_id).await
    }

    async fn leader_get(&mut self, table: LeaderTable) -> Result<Option<LeaderRow>> {
        self.fleet_leader_get(table).await
    }

    async fn client_heartbeat(&mut self, client_id: &str, lease: Duration) -> Result<()> {
        self.fleet_client_heartbeat(client_id, lease).await
    }

    async fn client_declare_queues(&mut self, client_id: &str, queues: &str) -> Result<bool> {
        self.fleet_client_declare_queues(client_id, queues).await
    }

    async fn client_get_expired(&mut self, max: i32) -> Result<Vec<String>> {
        self.fleet_client_get_expired(max).await
    }

    async fn client_delete(&mut self, client_ids: &[String]) -> Result<u64> {
        self.fleet_client_delete(client_ids).await
    }

    async fn client_delete_expired(&mut self, client_ids: &[String]) -> Result<u64> {
        self.fleet_client_delete_expired(client_ids).await
    }

    async fn job_get_running_of_clients(
        &mut self,
        client_ids: &[String],
        max: i32,
    ) -> Result<Vec<JobRead>> {
        self.maintenance_job_get_running_of_clients(client_ids, max)
            .await
    }

    async fn job_get_stuck(&mut self, horizon: Timestamp, max: i32) -> Result<Vec<JobRead>> {
        self.maintenance_job_get_stuck(horizon, max).await
    }

    async fn job_delete_finalized(&mut self, params: &JobDeleteFinalizedParams) -> Result<u64> {
        self.maintenance_job_delete_finalized(params).await
    }

    async fn queue_delete_expired(&mut self, before: Timestamp, max: i32) -> Result<Vec<String>> {
        self.queues_queue_delete_expired(before, max).await
    }

    async fn index_reindex(&mut self, index: &str) -> Result<()> {
        self.maintenance_index_reindex(index).await
    }

    async fn periodic_job_get(&mut self, ids: &[String]) -> Result<Vec<(String, Timestamp)>> {
        self.fleet_periodic_job_get(ids).await
    }

    async fn periodic_job_set_next(
        &mut self,
        id: &str,
        expected: Option<Timestamp>,
        next_run_at: Timestamp,
    ) -> Result<bool> {
        self.fleet_periodic_job_set_next(id, expected, next_run_at)
            .await
    }

    async fn persistent_claim(&mut self, params: &PersistentClaimParams) -> Result<Option<JobRow>> {
        self.fleet_persistent_claim(params).await
    }

    async fn persistent_renew(&mut self, id: JobId, fence: i64) -> Result<bool> {
        self.fleet_persistent_renew(id, fence).await
    }

    async fn persistent_merge_metadata(
        &mut self,
        id: JobId,
        fence: i64,
        metadata: &str,
    ) -> Result<bool> {
        self.fleet_persistent_merge_metadata(id, fence, metadata)
            .await
    }

    async fn persistent_release(&mut self, params: &PersistentReleaseParams) -> Result<bool> {
        self.fleet_persistent_release(params).await
    }

    async fn job_merge_metadata_if_running(
        &mut self,
        id: JobId,
        attempt: i16,
        metadata: &str,
    ) -> Result<bool> {
        let q = query(&self.driver.queries().job_merge_metadata)
            .bind(id.0)
            .bind(attempt)
            .bind(metadata.to_owned());
        Ok(self.execute(q).await? == 1)
    }

    async fn notify_many(&mut self, notifications: &[(Topic, String)]) -> Result<()> {
        if notifications.is_empty() {
            return Ok(());
        }
        let schema = &self.driver.queries().schema;
        let q = query(&self.driver.queries().notify_many)
            .bind(
                notifications
                    .iter()
                    .map(|(t, _)| schema.channel(t.as_str()))
                    .collect::<Vec<_>>(),
            )
            .bind(
                notifications
                    .iter()
                    .map(|(_, p)| p.as_str())
                    .collect::<Vec<_>>(),
            );
        self.execute(q).await.map(|_| ())
    }
}

/// Binds a job list's filters in the order the list and bulk-delete statements expect.
fn bind_list(q: PgQuery, params: &JobListParams) -> PgQuery {
    q.bind(params.states.iter().map(|s| s.as_str()).collect::<Vec<_>>())
        .bind(params.kinds.clone())
        .bind(params.queues.clone())
        .bind(params.after_id.map(|id| id.0))
        .bind(params.limit)
        .bind(params.ids.iter().map(|id| id.0).collect::<Vec<_>>())
        .bind(params.priorities.clone())
        .bind(params.tags.clone())
        .bind(params.metadata_contains.clone())
        .bind(params.args_contains.clone())
        .bind(params.id_min.map(|id| id.0))
        .bind(params.id_max.map(|id| id.0))
        .bind(params.created_since.map(jiff_sqlx::Timestamp::from))
        .bind(params.finalized_since.map(jiff_sqlx::Timestamp::from))
}
