use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use millrace_driver::{
    DriverError, Executor, JobCancelParams, JobCompleteParams, JobCompleted,
    JobDeleteFinalizedParams, JobDeleteOutcome, JobGetAvailableParams, JobInsertParams,
    JobInsertResult, JobListParams, JobOutcome, JobRetryParams, JobReturnOrphansParams,
    JobScheduleParams, JobScheduled, LeaderParams, LeaderRow, LeaderTable, MigrationRow,
    PERSISTENT_KIND_PREFIX, PersistentClaimParams, PersistentReleaseParams, QueueRow, Result,
    Topic,
};
use millrace_types::{JobId, JobRead, JobRow, JobState, job_read_id};
use serde::Serialize;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{AssertSqlSafe, Row, Sqlite, SqliteConnection, Transaction};

mod inspect;
mod rate;
mod sequence;

pub(crate) use inspect::InspectQueries;

use crate::error::db_error;
use crate::row::{decoded, job_read, job_row, leader_row, parse_state, queue_row, time};
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
        // A raw query runs every statement of the script.
        let sql = AssertSqlSafe(sql.to_owned());
        match &mut self.conn {
            Some(conn) => sqlx::raw_sql(sql).execute(&mut **conn).await,
            None => sqlx::raw_sql(sql).execute(self.driver.pool()).await,
        }
        .map(|_| ())
        .map_err(db_error)
    }

    async fn table_exists(&mut self, table: &str) -> Result<bool> {
        let q = query(&self.driver.queries().table_exists).bind(table.to_owned());
        self.read_bool(q).await
    }

    async fn migration_get_all(&mut self, line: &str) -> Result<Vec<MigrationRow>> {
        if !self.table_exists("river_migration").await? {
            return Ok(Vec::new());
        }
        let q = if self.migration_has_line().await? {
            query(&self.driver.queries().migration.get_all).bind(line.to_owned())
        } else if line == "main" {
            query(&self.driver.queries().migration.get_all_legacy)
        } else {
            return Ok(Vec::new());
        };
        self.read_all(q)
            .await?
            .iter()
            .map(|r| {
                Ok(MigrationRow {
                    line: r.try_get("line").map_err(db_error)?,
                    version: r.try_get("version").map_err(db_error)?,
                    created_at: time(r, "created_at")?,
                })
            })
            .collect()
    }

    async fn migration_lock(&mut self) -> Result<()> {
        // Migrations run in `BEGIN IMMEDIATE` transactions, which already hold SQLite's one
        // write lock: migrators take turns without anything more.
        Ok(())
    }

    async fn migration_insert(&mut self, line: &str, version: i64) -> Result<()> {
        let q = if self.migration_has_line().await? {
            query(&self.driver.queries().migration.insert)
                .bind(line.to_owned())
                .bind(version)
        } else {
            query(&self.driver.queries().migration.insert_legacy).bind(version)
        };
        let mut scope = self.scope().await?;
        scope.execute(q).await?;
        scope.finish().await
    }

    async fn migration_delete(&mut self, line: &str, version: i64) -> Result<()> {
        if !self.table_exists("river_migration").await? {
            return Ok(());
        }
        let q = if self.migration_has_line().await? {
            query(&self.driver.queries().migration.delete)
                .bind(line.to_owned())
                .bind(version)
        } else {
            query(&self.driver.queries().migration.delete_legacy).bind(version)
        };
        let mut scope = self.scope().await?;
        scope.execute(q).await?;
        scope.finish().await
    }

    async fn job_insert_many(&mut self, jobs: &[JobInsertParams]) -> Result<Vec<JobInsertResult>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let driver = self.driver;
        let queries = driver.queries();
        let unique = jobs.iter().any(|j| j.unique_key.is_some());
        let sql = if unique {
            &queries.job_insert_many_unique
        } else {
            &queries.job_insert_many
        };
        let mut scope = self.scope().await?;
        // Sequence jobs behind unfinished work go in `pending`, decided in this write
        // transaction, which no other writer can interleave with.
        let sequenced;
        let jobs = match sequence::batch_keys(jobs) {
            Some(keys) => {
                let occupied = Self::sequence_occupied_in_scope(driver, &mut scope, &keys).await?;
                sequenced = millrace_driver::sequence_states(jobs, &occupied);
                &sequenced[..]
            }
            None => jobs,
        };
        let rows = scope
            .fetch_all(query(sql).bind(insert_payload(jobs)))
            .await?;
        let mut inserted = rows.iter().map(job_row).collect::<Result<Vec<_>>>()?;
        // Ids rise in input order within the statement; a skipped (duplicate) job has no row,
        // and only a job with a unique key can be skipped.
        inserted.sort_by_key(|r| r.id);
        let mut inserted = inserted.into_iter().peekable();
        let mut results: Vec<Option<JobInsertResult>> = Vec::with_capacity(jobs.len());
        let mut skipped_keys: Vec<String> = Vec::new();
        for job in jobs {
            let own_row = inserted
                .peek()
                .is_some_and(|row| job.unique_key.is_none() || row.unique_key == job.unique_key);
            if own_row {
                results.push(inserted.next().map(|job| JobInsertResult {
                    job,
                    unique_skipped_as_duplicate: false,
                }));
            } else if let Some(key) = &job.unique_key {
                skipped_keys.push(hex::encode(key));
                results.push(None);
            } else {
                return Err(missing_row("job insert"));
            }
        }
        if !skipped_keys.is_empty() {
            let keys = serde_json::to_string(&skipped_keys).expect("strings always encode");
            let live = scope
                .fetch_all(query(&queries.job_get_live_by_keys).bind(keys))
                .await?;
            // A live row that does not decode still names its key: the duplicate is reported
            // from the insert's own options rather than failing the batch.
            let mut by_key: HashMap<Vec<u8>, JobRead> = HashMap::new();
            for row in &live {
                let key: Option<Vec<u8>> =
                    row.try_get("unique_key")
                        .map_err(|err| DriverError::Decode {
                            column: "unique_key",
                            message: err.to_string(),
                        })?;
                if let Some(key) = key {
                    by_key.insert(key, job_read(row)?);
                }
            }
            for (result, job) in results.iter_mut().zip(jobs) {
                if result.is_none() {
                    let key = job
                        .unique_key
                        .as_ref()
                        .expect("only unique jobs are skipped");
                    let live = match by_key.get(key) {
                        Some(Ok(live)) => live.clone(),
                        Some(Err(live)) => {
                            tracing::warn!(job_id = %live.id, error = %live.error, "an insert's unique duplicate could not be decoded; reporting it from the insert's own options");
                            job.stand_in_for(live)
                        }
                        None => return Err(missing_row("live unique job lookup")),
                    };
                    *result = Some(JobInsertResult {
                        job: live,
                        unique_skipped_as_duplicate: true,
                    });
                }
            }
        }
        scope.finish().await?;
        Ok(results
            .into_iter()
            .map(|r| r.expect("every input has a result"))
            .collect())
    }

    async fn job_insert_fast(&mut self, jobs: &[JobInsertParams]) -> Result<u64> {
        if jobs.is_empty() {
            return Ok(0);
        }
        // The fast statement cannot read which sequences are busy; a batch with sequence jobs
        // takes the checked path.
        if sequence::batch_keys(jobs).is_some() {
            return Ok(self.job_insert_many(jobs).await?.len() as u64);
        }
        let q = query(&self.driver.queries().job_insert_fast).bind(insert_payload(jobs));
        let count = self.write(q).await?;
        Ok(count)
    }

    async fn job_get_by_id(&mut self, id: JobId) -> Result<Option<JobRow>> {
        let q = query(&self.driver.queries().job_get_by_id).bind(id.0);
        self.read_optional(q)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    async fn job_list(&mut self, params: &JobListParams) -> Result<Vec<JobRead>> {
        let queries = self.driver.queries();
        let sql = if params.descending {
            &queries.job_list_desc
        } else {
            &queries.job_list_asc
        };
        let q = bind_list(query(sql), params);
        self.read_all(q).await?.iter().map(job_read).collect()
    }

    async fn job_delete_many(&mut self, params: &JobListParams) -> Result<Vec<JobRead>> {
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

    async fn queue_list(&mut self, after: Option<&str>, limit: i64) -> Result<Vec<QueueRow>> {
        let q = query(&self.driver.queries().queue.list)
            .bind(after.map(str::to_owned))
            .bind(limit.max(0));
        self.read_all(q).await?.iter().map(queue_row).collect()
    }

    async fn queue_update_metadata(&mut self, name: &str, metadata: &str) -> Result<QueueRow> {
        let driver = self.driver;
        let own = self.conn.is_none();
        let q = query(&driver.queries().queue.update_metadata)
            .bind(name.to_owned())
            .bind(metadata.to_owned());
        let mut scope = self.scope().await?;
        let row = scope
            .fetch_optional(q)
            .await?
            .ok_or_else(|| missing_row("queue metadata update"))?;
        let queue = queue_row(&row)?;
        // The same payload as PostgreSQL's, keys in the same order.
        let payload = serde_json::json!({
            "action": "metadata_changed",
            "metadata": queue.metadata,
            "queue": queue.name,
        })
        .to_string();
        Self::notify_in_scope(driver, &mut scope, &[(Topic::Control, payload)], own).await?;
        scope.finish().await?;
        Ok(queue)
    }

    async fn queue_set_metadata_key(
        &mut self,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<QueueRow> {
        let driver = self.driver;
        let own = self.conn.is_none();
        let q = query(&driver.queries().queue.set_metadata_key)
            .bind(name.to_owned())
            .bind(key.to_owned())
            .bind(value.map(str::to_owned));
        let mut scope = self.scope().await?;
        let row = scope
            .fetch_optional(q)
            .await?
            .ok_or_else(|| missing_row("queue metadata update"))?;
        let queue = queue_row(&row)?;
        // The same payload as PostgreSQL's, keys in the same order.
        let payload = serde_json::json!({
            "action": "metadata_changed",
            "metadata": queue.metadata,
            "queue": queue.name,
        })
        .to_string();
        Self::notify_in_scope(driver, &mut scope, &[(Topic::Control, payload)], own).await?;
        scope.finish().await?;
        Ok(queue)
    }

    async fn job_cancel(&mut self, params: &JobCancelParams) -> Result<Option<JobRow>> {
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

    async fn job_retry(&mut self, params: &JobRetryParams) -> Result<Option<JobRow>> {
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

    async fn job_delete(&mut self, id: JobId) -> Result<JobDeleteOutcome> {
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

    async fn job_get_available(&mut self, params: &JobGetAvailableParams) -> Result<Vec<JobRead>> {
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

    async fn job_rate_limit_wait(
        &mut self,
        queue: &str,
        rate: &millrace_driver::FetchRate,
    ) -> Result<Option<Duration>> {
        self.rate_limit_wait(queue, rate).await
    }

    async fn job_start_by_id(&mut self, id: JobId, client_id: &str) -> Result<Option<JobRow>> {
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

    async fn job_complete_many(
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

    async fn job_schedule(&mut self, params: &JobScheduleParams) -> Result<Vec<JobScheduled>> {
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

    async fn job_return_orphans(&mut self, params: &JobReturnOrphansParams) -> Result<u64> {
        let held: Vec<i64> = params.held.iter().map(|id| id.0).collect();
        let q = query(&self.driver.queries().job_return_orphans)
            .bind(params.client_id.clone())
            .bind(params.queue.clone())
            .bind(serde_json::to_string(&held).expect("numbers always encode"));
        let returned = self.write(q).await?;
        Ok(returned)
    }

    async fn queue_create_or_touch(&mut self, name: &str) -> Result<QueueRow> {
        let q = query(&self.driver.queries().queue.create_or_touch).bind(name.to_owned());
        let mut scope = self.scope().await?;
        let row = scope
            .fetch_optional(q)
            .await?
            .ok_or_else(|| missing_row("queue upsert"))?;
        let queue = queue_row(&row)?;
        scope.finish().await?;
        Ok(queue)
    }

    async fn queue_get(&mut self, name: &str) -> Result<Option<QueueRow>> {
        let q = query(&self.driver.queries().queue.get).bind(name.to_owned());
        self.read_optional(q)
            .await?
            .as_ref()
            .map(queue_row)
            .transpose()
    }

    async fn queue_set_paused(&mut self, name: &str, paused: bool) -> Result<u64> {
        let driver = self.driver;
        let own = self.conn.is_none();
        let q = if name == "*" {
            query(&driver.queries().queue.set_paused_all).bind(paused)
        } else {
            query(&driver.queries().queue.create_paused)
                .bind(name.to_owned())
                .bind(paused)
        };
        let action = if paused { "pause" } else { "resume" };
        let payload = serde_json::json!({ "action": action, "queue": name }).to_string();
        let mut scope = self.scope().await?;
        let changed = scope.execute(q).await?;
        Self::notify_in_scope(driver, &mut scope, &[(Topic::Control, payload)], own).await?;
        scope.finish().await?;
        Ok(changed)
    }

    async fn leader_attempt_elect(&mut self, params: &LeaderParams) -> Result<Option<LeaderRow>> {
        let queries = self.driver.queries().leader(params.table);
        let mut scope = self.scope().await?;
        scope.execute(query(&queries.delete_expired)).await?;
        let q = query(&queries.elect)
            .bind(params.leader_id.clone())
            .bind(modifier(params.ttl));
        let leader = scope
            .fetch_optional(q)
            .await?
            .as_ref()
            .map(leader_row)
            .transpose()?;
        scope.finish().await?;
        Ok(leader)
    }

    async fn leader_attempt_reelect(
        &mut self,
        params: &LeaderParams,
        elected_at: Timestamp,
    ) -> Result<Option<LeaderRow>> {
        let q = query(&self.driver.queries().leader(params.table).reelect)
            .bind(params.leader_id.clone())
            .bind(modifier(params.ttl))
            .bind(encode(elected_at));
        let mut scope = self.scope().await?;
        let leader = scope
            .fetch_optional(q)
            .await?
            .as_ref()
            .map(leader_row)
            .transpose()?;
        scope.finish().await?;
        Ok(leader)
    }

    async fn leader_resign(&mut self, table: LeaderTable, leader_id: &str) -> Result<bool> {
        let driver = self.driver;
        let own = self.conn.is_none();
        let q = query(&driver.queries().leader(table).resign).bind(leader_id.to_owned());
        let mut scope = self.scope().await?;
        let resigned = scope.fetch_optional(q).await?.is_some();
        if resigned && table == LeaderTable::River {
            // River's clients elect again within moments of this, not at their next attempt.
            let payload =
                serde_json::json!({ "action": "resigned", "leader_id": leader_id }).to_string();
            Self::notify_in_scope(driver, &mut scope, &[(Topic::Leadership, payload)], own).await?;
        }
        scope.finish().await?;
        Ok(resigned)
    }

    async fn leader_get(&mut self, table: LeaderTable) -> Result<Option<LeaderRow>> {
        let q = query(&self.driver.queries().leader(table).get);
        self.read_optional(q)
            .await?
            .as_ref()
            .map(leader_row)
            .transpose()
    }

    async fn client_heartbeat(&mut self, client_id: &str, lease: Duration) -> Result<()> {
        let q = query(&self.driver.queries().client.heartbeat)
            .bind(client_id.to_owned())
            .bind(modifier(lease));
        let mut scope = self.scope().await?;
        scope.execute(q).await?;
        scope.finish().await
    }

    async fn client_declare_queues(&mut self, client_id: &str, queues: &str) -> Result<bool> {
        let q = query(&self.driver.queries().client.declare_queues)
            .bind(client_id.to_owned())
            .bind(queues.to_owned());
        Ok(self.write(q).await? == 1)
    }

    async fn client_get_expired(&mut self, max: i32) -> Result<Vec<String>> {
        if max <= 0 {
            return Ok(Vec::new());
        }
        let q = query(&self.driver.queries().client.get_expired).bind(max);
        self.read_all(q)
            .await?
            .iter()
            .map(|r| r.try_get("id").map_err(db_error))
            .collect()
    }

    async fn client_delete(&mut self, client_ids: &[String]) -> Result<u64> {
        if client_ids.is_empty() {
            return Ok(0);
        }
        let q = query(&self.driver.queries().client.delete).bind(strings(client_ids));
        let deleted = self.write(q).await?;
        Ok(deleted)
    }

    async fn client_delete_expired(&mut self, client_ids: &[String]) -> Result<u64> {
        if client_ids.is_empty() {
            return Ok(0);
        }
        let q = query(&self.driver.queries().client.delete_expired)
            .bind(strings(client_ids))
            .bind(PERSISTENT_KIND_PREFIX);
        self.write(q).await
    }

    async fn job_get_running_of_clients(
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

    async fn job_get_stuck(&mut self, horizon: Timestamp, max: i32) -> Result<Vec<JobRead>> {
        if max <= 0 {
            return Ok(Vec::new());
        }
        let q = query(&self.driver.queries().job_get_stuck)
            .bind(encode(horizon))
            .bind(max);
        self.read_all(q).await?.iter().map(job_read).collect()
    }

    async fn job_delete_finalized(&mut self, params: &JobDeleteFinalizedParams) -> Result<u64> {
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

    async fn queue_delete_expired(&mut self, before: Timestamp, max: i32) -> Result<Vec<String>> {
        if max <= 0 {
            return Ok(Vec::new());
        }
        let q = query(&self.driver.queries().queue.delete_expired)
            .bind(encode(before))
            .bind(max);
        let mut scope = self.scope().await?;
        let names = scope
            .fetch_all(q)
            .await?
            .iter()
            .map(|r| r.try_get("name").map_err(db_error))
            .collect::<Result<Vec<String>>>()?;
        scope.finish().await?;
        Ok(names)
    }

    async fn index_reindex(&mut self, index: &str) -> Result<()> {
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

    async fn periodic_job_get(&mut self, ids: &[String]) -> Result<Vec<(String, Timestamp)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let q = query(&self.driver.queries().periodic.get).bind(strings(ids));
        self.read_all(q)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("id").map_err(db_error)?, time(r, "next_run_at")?)))
            .collect()
    }

    async fn periodic_job_set_next(
        &mut self,
        id: &str,
        expected: Option<Timestamp>,
        next_run_at: Timestamp,
    ) -> Result<bool> {
        let queries = self.driver.queries();
        let q = match expected {
            None => query(&queries.periodic.insert)
                .bind(id.to_owned())
                .bind(encode(next_run_at)),
            Some(expected) => query(&queries.periodic.update)
                .bind(id.to_owned())
                .bind(encode(expected))
                .bind(encode(next_run_at)),
        };
        let stored = self.write(q).await? == 1;
        Ok(stored)
    }

    async fn persistent_claim(&mut self, params: &PersistentClaimParams) -> Result<Option<JobRow>> {
        let q = query(&self.driver.queries().persistent.claim)
            .bind(params.kind.clone())
            .bind(params.queue.clone())
            .bind(params.client_id.clone())
            .bind(format!("-{:.3} seconds", params.lease.as_secs_f64()));
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

    async fn persistent_renew(&mut self, id: JobId, fence: i64) -> Result<bool> {
        let q = query(&self.driver.queries().persistent.renew)
            .bind(id.0)
            .bind(fence);
        let renewed = self.write(q).await? == 1;
        Ok(renewed)
    }

    async fn persistent_merge_metadata(
        &mut self,
        id: JobId,
        fence: i64,
        metadata: &str,
    ) -> Result<bool> {
        let q = query(&self.driver.queries().persistent.merge_metadata)
            .bind(id.0)
            .bind(fence)
            .bind(metadata.to_owned());
        let merged = self.write(q).await? == 1;
        Ok(merged)
    }

    async fn persistent_release(&mut self, params: &PersistentReleaseParams) -> Result<bool> {
        let error = params
            .error
            .as_ref()
            .map(|e| serde_json::to_string(e).expect("an AttemptError always encodes"));
        let q = query(&self.driver.queries().persistent.release)
            .bind(params.id.0)
            .bind(params.fence)
            .bind(encode(params.available_at))
            .bind(error)
            .bind(i64::from(params.keep_errors.max(1)));
        let released = self.write(q).await? == 1;
        Ok(released)
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
