//! [`SqliteExecutor`]: the driver's verbs. The `Executor` impl at the end of this file is
//! their table of contents; each verb's body lives in the file of its noun (`work`: fetch,
//! start and complete; `insert`; `admin`; `queue`; `fleet`: leaders, heartbeats, periodic
//! schedules and persistent instances; `maintenance`; `migration`; `inspect`; `sequence`;
//! `rate`).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use millrace_driver::{
    DriverError, Executor, JobCancelParams, JobCompleteParams, JobCompleted,
    JobDeleteFinalizedParams, JobDeleteOutcome, JobGetAvailableParams, JobInsertParams,
    JobInsertResult, JobListParams, JobRetryParams, JobReturnOrphansParams, JobScheduleParams,
    JobScheduled, LeaderParams, LeaderRow, LeaderTable, MigrationRow, PersistentClaimParams,
    PersistentReleaseParams, QueueRow, Result, Topic,
};
use millrace_types::{JobId, JobRead, JobRow, JobState};
use serde::Serialize;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{AssertSqlSafe, Row, Sqlite, SqliteConnection, Transaction};

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

use crate::error::db_error;
use crate::row::job_row;
use crate::time::encode;
use crate::{SqliteDriver, notification_retention_modifier};

/// Runs the driver's verbs on the pool or on one connection (a caller's transaction).
///
/// On the pool, every write runs in a `BEGIN IMMEDIATE` transaction of its own; on a caller's
/// connection, in whatever transaction the caller opened.
#[derive(Debug)]
pub struct SqliteExecutor<'a> {
    driver: &'a SqliteDriver,
    conn: Option<&'a mut SqliteConnection>,
}

type SqliteQuery = Query<'static, Sqlite, SqliteArguments>;

fn query(sql: &Arc<str>) -> SqliteQuery {
    sqlx::query(AssertSqlSafe(sql.clone()))
}

/// Where a write runs: a transaction of the executor's own, or the caller's connection.
enum Scope<'c> {
    Own(Transaction<'static, Sqlite>),
    Borrowed(&'c mut SqliteConnection),
}

impl Scope<'_> {
    fn conn(&mut self) -> &mut SqliteConnection {
        match self {
            Scope::Own(tx) => tx,
            Scope::Borrowed(conn) => conn,
        }
    }

    async fn fetch_all(&mut self, q: SqliteQuery) -> Result<Vec<SqliteRow>> {
        q.fetch_all(self.conn()).await.map_err(db_error)
    }

    async fn fetch_optional(&mut self, q: SqliteQuery) -> Result<Option<SqliteRow>> {
        q.fetch_optional(self.conn()).await.map_err(db_error)
    }

    async fn execute(&mut self, q: SqliteQuery) -> Result<u64> {
        q.execute(self.conn())
            .await
            .map(|r| r.rows_affected())
            .map_err(db_error)
    }

    /// Commits the executor's own transaction; the caller commits theirs.
    async fn finish(self) -> Result<()> {
        match self {
            Scope::Own(tx) => tx.commit().await.map_err(db_error),
            Scope::Borrowed(_) => Ok(()),
        }
    }
}

/// One job of an insert batch, as the insert statements read it.
#[derive(Serialize)]
struct InsertRow<'a> {
    args: &'a str,
    created_at: Option<String>,
    kind: &'a str,
    max_attempts: i16,
    metadata: &'a str,
    priority: i16,
    queue: &'a str,
    scheduled_at: Option<String>,
    state: &'static str,
    tags: &'a [String],
    unique_key: Option<String>,
    unique_states: Option<u8>,
}

fn insert_payload(jobs: &[JobInsertParams]) -> String {
    let rows: Vec<InsertRow<'_>> = jobs
        .iter()
        .map(|j| InsertRow {
            args: &j.args,
            created_at: j.created_at.map(encode),
            kind: &j.kind,
            max_attempts: j.max_attempts,
            metadata: &j.metadata,
            priority: j.priority,
            queue: &j.queue,
            scheduled_at: j.scheduled_at.map(encode),
            state: j.state.as_str(),
            tags: &j.tags,
            unique_key: j.unique_key.as_deref().map(hex::encode),
            unique_states: j.unique_states.map(|s| s.bits()),
        })
        .collect();
    serde_json::to_string(&rows).expect("strings and numbers always encode")
}

/// One completion, as the completion statement reads it.
#[derive(Serialize)]
struct CompleteRow<'a> {
    id: i64,
    attempt: i16,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    give_back: bool,
    snooze: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata_merge: Option<&'a str>,
}

#[derive(Serialize)]
struct NotificationRow<'a> {
    topic: &'static str,
    payload: &'a str,
}

/// A list filter as a JSON array, or null for "any".
fn filter<T: Serialize>(values: &[T]) -> Option<String> {
    (!values.is_empty()).then(|| serde_json::to_string(values).expect("strings always encode"))
}

/// A duration as a SQLite time modifier, to add to `now`.
fn modifier(d: Duration) -> String {
    format!("+{:.3} seconds", d.as_secs_f64())
}

fn strings(values: &[String]) -> String {
    serde_json::to_string(values).expect("strings always encode")
}

fn missing_row(what: &str) -> DriverError {
    DriverError::Decode {
        column: "id",
        message: format!("{what} returned no row"),
    }
}

impl<'a> SqliteExecutor<'a> {
    pub(crate) fn pool(driver: &'a SqliteDriver) -> Self {
        SqliteExecutor { driver, conn: None }
    }

    pub(crate) fn conn(driver: &'a SqliteDriver, conn: &'a mut SqliteConnection) -> Self {
        SqliteExecutor {
            driver,
            conn: Some(conn),
        }
    }

    /// A write scope: the caller's connection, or a new `BEGIN IMMEDIATE` transaction.
    async fn scope(&mut self) -> Result<Scope<'_>> {
        match &mut self.conn {
            Some(conn) => Ok(Scope::Borrowed(conn)),
            None => Ok(Scope::Own(self.driver.begin_immediate().await?)),
        }
    }

    /// Runs one write statement in its own scope and returns the rows it changed.
    async fn write(&mut self, q: SqliteQuery) -> Result<u64> {
        let mut scope = self.scope().await?;
        let changed = scope.execute(q).await?;
        scope.finish().await?;
        Ok(changed)
    }

    async fn read_all(&mut self, q: SqliteQuery) -> Result<Vec<SqliteRow>> {
        match &mut self.conn {
            Some(conn) => q.fetch_all(&mut **conn).await,
            None => q.fetch_all(self.driver.pool()).await,
        }
        .map_err(db_error)
    }

    async fn read_optional(&mut self, q: SqliteQuery) -> Result<Option<SqliteRow>> {
        match &mut self.conn {
            Some(conn) => q.fetch_optional(&mut **conn).await,
            None => q.fetch_optional(self.driver.pool()).await,
        }
        .map_err(db_error)
    }

    async fn read_bool(&mut self, q: SqliteQuery) -> Result<bool> {
        let row = self.read_optional(q).await?;
        Ok(row.is_some_and(|r| r.get::<bool, _>(0)))
    }

    async fn migration_has_line(&mut self) -> Result<bool> {
        let q = query(&self.driver.queries().migration.has_line)
            .bind(self.driver.queries().schema.name().to_owned());
        self.read_bool(q).await
    }

    /// One job as it is now, in the scope of a write that did not return it.
    async fn job_in_scope(
        driver: &SqliteDriver,
        scope: &mut Scope<'_>,
        id: JobId,
    ) -> Result<Option<JobRow>> {
        let q = query(&driver.queries().job_get_by_id).bind(id.0);
        scope
            .fetch_optional(q)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    async fn notify_in_scope(
        driver: &SqliteDriver,
        scope: &mut Scope<'_>,
        notifications: &[(Topic, String)],
        own: bool,
    ) -> Result<()> {
        let rows: Vec<NotificationRow<'_>> = notifications
            .iter()
            .map(|(topic, payload)| NotificationRow {
                topic: topic.as_str(),
                payload,
            })
            .collect();
        let payload = serde_json::to_string(&rows).expect("strings always encode");
        let q = query(&driver.queries().notification.insert_many).bind(payload);
        scope.execute(q).await?;
        // Cleaning only in the driver's own transactions keeps a delete out of callers'.
        if own && driver.notifications_clean_due() {
            let q = query(&driver.queries().notification.delete_before)
                .bind(notification_retention_modifier());
            let deleted = scope.execute(q).await?;
            tracing::debug!(deleted, "cleaned old notifications");
        }
        Ok(())
    }
}

/// Binds a job list's filters in the order the list and bulk-delete statements expect.
fn bind_list(q: SqliteQuery, params: &JobListParams) -> SqliteQuery {
    let states: Vec<&str> = params.states.iter().map(|s| s.as_str()).collect();
    let ids: Vec<i64> = params.ids.iter().map(|id| id.0).collect();
    q.bind(filter(&states))
        .bind(filter(&params.kinds))
        .bind(filter(&params.queues))
        .bind(params.after_id.map(|id| id.0))
        // SQLite reads a negative LIMIT as no limit at all.
        .bind(params.limit.max(0))
        .bind(filter(&ids))
        .bind(filter(&params.priorities))
        .bind(filter(&params.tags))
        .bind(params.metadata_contains.clone())
        .bind(params.args_contains.clone())
        .bind(params.id_min.map(|id| id.0))
        .bind(params.id_max.map(|id| id.0))
        .bind(params.created_since.map(encode))
        .bind(params.finalized_since.map(encode))
}

/// A limit's or rate's list of partitioning fields as the JSON array the fetch statements
/// take.
fn fields_json(fields: &[String]) -> String {
    serde_json::to_string(fields).expect("a list of strings always encodes")
}

fn sort_fetched(rows: &mut [JobRead]) {
    // A row that did not decode has no order to keep: it is never worked, only failed.
    rows.sort_by_key(|read| match read {
        Ok(job) => (job.priority, Some(job.scheduled_at), job.id),
        Err(undecodable) => (i16::MIN, None, undecodable.id),
    });
}

impl Executor for SqliteExecutor<'_> {
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
        // SQLite's statistics (sqlite_stat1) hold no per-value counts; callers count exactly,
        // which on one machine's database is cheap enough.
        Ok(Vec::new())
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
            self.sequence_sweep(i32::MAX).await?;
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
        self.work_job_get_available(params).await
    }

    async fn job_rate_limit_wait(
        &mut self,
        queue: &str,
        rate: &millrace_driver::FetchRate,
    ) -> Result<Option<Duration>> {
        self.rate_limit_wait(queue, rate).await
    }

    async fn job_start_by_id(&mut self, id: JobId, client_id: &str) -> Result<Option<JobRow>> {
        self.work_job_start_by_id(id, client_id).await
    }

    async fn job_complete_many(
        &mut self,
        params: &[JobCompleteParams],
    ) -> Result<Vec<JobCompleted>> {
        self.work_job_complete_many(params).await
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
        let merged = self.write(q).await? == 1;
        Ok(merged)
    }

    async fn sequence_promote(
        &mut self,
        keys: &[String],
    ) -> Result<Vec<millrace_driver::SequencePromoted>> {
        self.sequence_promote_keys(keys).await
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

    async fn notify_many(&mut self, notifications: &[(Topic, String)]) -> Result<()> {
        if notifications.is_empty() {
            return Ok(());
        }
        let driver = self.driver;
        let own = self.conn.is_none();
        let mut scope = self.scope().await?;
        Self::notify_in_scope(driver, &mut scope, notifications, own).await?;
        scope.finish().await
    }
}
