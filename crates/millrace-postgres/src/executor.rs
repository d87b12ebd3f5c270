use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use millrace_driver::{
    DriverError, Executor, FetchLimit, JobCancelParams, JobCompleteParams, JobCompleted,
    JobDeleteFinalizedParams, JobDeleteOutcome, JobGetAvailableParams, JobInsertParams,
    JobInsertResult, JobListParams, JobOutcome, JobRetryParams, JobReturnOrphansParams,
    JobScheduleParams, JobScheduled, LeaderParams, LeaderRow, LeaderTable, MigrationRow,
    PERSISTENT_KIND_PREFIX, PersistentClaimParams, PersistentReleaseParams, QueueRow, Result,
    Topic,
};
use millrace_types::{JobId, JobRead, JobRow, JobState, job_read_id};
use sqlx::postgres::{PgArguments, PgPoolCopyExt, PgRow};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Row};

mod inspect;
mod rate;
mod sequence;

pub(crate) use inspect::InspectQueries;

use crate::copy::CopyLayout;
use crate::row::{fetched_job_read, job_read, job_row, leader_row, parse_state, queue_row};
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

    async fn migration_has_line(&mut self) -> Result<bool> {
        let q = query(&self.driver.queries().migration.has_line)
            .bind(self.driver.queries().schema.name().to_owned());
        let row = self.fetch_optional(q).await?;
        Ok(row.is_some_and(|r| r.get::<bool, _>(0)))
    }
}

impl PgExecutor<'_> {
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
    async fn run_limited(
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

    /// Inserts the batch as given, states included: the body of `job_insert_many`.
    async fn insert_rows(&mut self, jobs: &[JobInsertParams]) -> Result<Vec<JobInsertResult>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let queries = self.driver.queries();
        let unique = jobs.iter().any(|j| j.unique_key.is_some());
        let sql = if unique {
            &queries.job_insert_many_unique
        } else {
            &queries.job_insert_many
        };
        let q = query(sql)
            .bind(jobs.iter().map(|j| j.args.as_str()).collect::<Vec<_>>())
            .bind(times(jobs.iter().map(|j| j.created_at)))
            .bind(jobs.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.max_attempts).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.metadata.as_str()).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>())
            .bind(times(jobs.iter().map(|j| j.scheduled_at)))
            .bind(jobs.iter().map(|j| j.state.as_str()).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.tags.join(",")).collect::<Vec<_>>())
            .bind(
                jobs.iter()
                    .map(|j| j.unique_key.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                jobs.iter()
                    .map(|j| j.unique_states.map(|s| i32::from(s.bits())))
                    .collect::<Vec<_>>(),
            );
        let rows = self.fetch_all(q).await?;
        if unique {
            // One row per job, in the order of the params.
            return rows
                .iter()
                .enumerate()
                .map(|(index, row)| {
                    let duplicate = row
                        .try_get("unique_skipped_as_duplicate")
                        .map_err(db_error)?;
                    let job = match (job_read(row)?, jobs.get(index)) {
                        (Ok(job), _) => job,
                        // The statement has committed: failing now would have a retry insert
                        // the batch's other jobs twice.
                        (Err(live), Some(params)) if duplicate && rows.len() == jobs.len() => {
                            tracing::warn!(job_id = %live.id, error = %live.error, "an insert's unique duplicate could not be decoded; reporting it from the insert's own options");
                            params.stand_in_for(&live)
                        }
                        (Err(live), _) => return Err(DriverError::UndecodableJob(Box::new(live))),
                    };
                    Ok(JobInsertResult {
                        job,
                        unique_skipped_as_duplicate: duplicate,
                    })
                })
                .collect();
        }
        // Rows come back in the order of the params (the conformance suite checks it).
        if rows.len() != jobs.len() {
            return Err(DriverError::Decode {
                column: "id",
                message: format!(
                    "inserted {} jobs but {} rows came back",
                    jobs.len(),
                    rows.len()
                ),
            });
        }
        let mut results = Vec::with_capacity(jobs.len());
        // Jobs whose JSON PostgreSQL writes back differently from how it was sent.
        let mut reread = Vec::new();
        for (index, (job, row)) in jobs.iter().zip(&rows).enumerate() {
            let id = JobId(row.try_get(0).map_err(db_error)?);
            let created_at = row
                .try_get::<jiff_sqlx::Timestamp, _>(1)
                .map_err(db_error)?;
            let scheduled_at = row
                .try_get::<jiff_sqlx::Timestamp, _>(2)
                .map_err(db_error)?;
            let built = inserted_row(job, id, created_at.to_jiff(), scheduled_at.to_jiff());
            if built.is_none() {
                reread.push((index, id));
            }
            results.push(built);
        }
        if !reread.is_empty() {
            let stored = self
                .job_list(&JobListParams {
                    ids: reread.iter().map(|(_, id)| *id).collect(),
                    limit: reread.len() as i64,
                    ..Default::default()
                })
                .await?;
            for (index, id) in reread {
                let job = match stored.iter().find(|j| job_read_id(j) == id).cloned() {
                    Some(Ok(job)) => job,
                    Some(Err(undecodable)) => {
                        return Err(DriverError::UndecodableJob(Box::new(undecodable)));
                    }
                    None => {
                        return Err(DriverError::Decode {
                            column: "id",
                            message: format!("inserted job {id} is gone"),
                        });
                    }
                };
                results[index] = Some(job);
            }
        }
        Ok(results
            .into_iter()
            .map(|job| JobInsertResult {
                job: job.expect("every row built or read back"),
                unique_skipped_as_duplicate: false,
            })
            .collect())
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
enum Pass {
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

fn times(values: impl Iterator<Item = Option<Timestamp>>) -> Vec<Option<jiff_sqlx::Timestamp>> {
    values.map(|t| t.map(jiff_sqlx::Timestamp::from)).collect()
}

/// The row a fresh insert of `job` stored, given the values PostgreSQL chose; `None` when its
/// JSON may not read back as PostgreSQL writes it.
fn inserted_row(
    job: &JobInsertParams,
    id: JobId,
    created_at: Timestamp,
    scheduled_at: Timestamp,
) -> Option<JobRow> {
    if !json_reads_back_as_sent(&job.args) || !json_reads_back_as_sent(&job.metadata) {
        return None;
    }
    Some(JobRow {
        id,
        args: serde_json::from_str(&job.args).ok()?,
        attempt: 0,
        attempted_at: None,
        attempted_by: Vec::new(),
        created_at,
        errors: Vec::new(),
        finalized_at: None,
        kind: job.kind.clone(),
        max_attempts: job.max_attempts,
        metadata: serde_json::from_str(&job.metadata).ok()?,
        priority: job.priority,
        queue: job.queue.clone(),
        scheduled_at,
        state: job.state,
        tags: job.tags.clone(),
        unique_key: job.unique_key.clone(),
        unique_states: job.unique_states,
    })
}

/// Whether `json`, stored as jsonb and written back by PostgreSQL, reads as the same
/// `serde_json::Value` as `json` itself. jsonb rewrites two kinds of numbers: exponents are
/// expanded (`1e3` comes back `1000`, an integer where serde_json reads a float), and a
/// negative zero (`-0`, `-0.0`) comes back without its sign. Everything else (key order,
/// duplicate keys, whitespace, escapes) reads the same.
fn json_reads_back_as_sent(json: &str) -> bool {
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let number = &bytes[start..i];
                let negative_zero = number.first() == Some(&b'-')
                    && number[1..].iter().all(|b| matches!(b, b'0' | b'.'));
                if negative_zero || number.iter().any(|b| matches!(b, b'e' | b'E')) {
                    return false;
                }
            }
            _ => i += 1,
        }
    }
    true
}

/// How many bytes of COPY data are encoded before they are sent.
const COPY_CHUNK: usize = 256 * 1024;

/// Encodes `jobs` with `encode` and sends them in chunks of about [`COPY_CHUNK`] bytes.
async fn copy_rows<C>(
    copy: &mut sqlx::postgres::PgCopyIn<C>,
    jobs: &[JobInsertParams],
    encode: impl Fn(&mut String, &JobInsertParams),
) -> Result<()>
where
    C: std::ops::DerefMut<Target = PgConnection>,
{
    let mut data = String::with_capacity(COPY_CHUNK + 4096);
    for job in jobs {
        encode(&mut data, job);
        if data.len() >= COPY_CHUNK {
            copy.send(data.as_bytes()).await.map_err(db_error)?;
            data.clear();
        }
    }
    if !data.is_empty() {
        copy.send(data.as_bytes()).await.map_err(db_error)?;
    }
    Ok(())
}

impl Executor for PgExecutor<'_> {
    async fn exec_script(&mut self, sql: &str) -> Result<()> {
        // A raw (simple-protocol) query runs several statements at once.
        let sql = AssertSqlSafe(sql.to_owned());
        match &mut self.conn {
            Some(conn) => sqlx::raw_sql(sql).execute(&mut **conn).await,
            None => sqlx::raw_sql(sql).execute(self.driver.pool()).await,
        }
        .map(|_| ())
        .map_err(db_error)
    }

    async fn table_exists(&mut self, table: &str) -> Result<bool> {
        // pg_class is read with the statement's snapshot. `to_regclass` goes through the
        // backend's catalog cache, which can still hold "no such table" after another
        // migrator committed it while this one waited on the migration lock.
        let q = sqlx::query(AssertSqlSafe(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2)",
        ))
        .bind(self.driver.queries().schema.name().to_owned())
        .bind(table.to_owned());
        let row = self.fetch_optional(q).await?;
        Ok(row.is_some_and(|r| r.get::<bool, _>(0)))
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
        self.fetch_all(q)
            .await?
            .iter()
            .map(|r| {
                Ok(MigrationRow {
                    line: r.try_get("line").map_err(db_error)?,
                    version: r.try_get("version").map_err(db_error)?,
                    created_at: r
                        .try_get::<jiff_sqlx::Timestamp, _>("created_at")
                        .map_err(db_error)?
                        .to_jiff(),
                })
            })
            .collect()
    }

    async fn migration_lock(&mut self) -> Result<()> {
        // One lock per schema: the key is derived from the schema's name.
        let key = format!(
            "{}river_migration",
            self.driver.queries().schema.fill("/*schema*/")
        );
        let q = sqlx::query(AssertSqlSafe("SELECT pg_advisory_xact_lock(hashtext($1))")).bind(key);
        self.execute(q).await.map(|_| ())
    }

    async fn migration_insert(&mut self, line: &str, version: i64) -> Result<()> {
        let q = if self.migration_has_line().await? {
            query(&self.driver.queries().migration.insert)
                .bind(line.to_owned())
                .bind(version)
        } else {
            query(&self.driver.queries().migration.insert_legacy).bind(version)
        };
        self.execute(q).await.map(|_| ())
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
        self.execute(q).await.map(|_| ())
    }

    async fn job_insert_many(&mut self, jobs: &[JobInsertParams]) -> Result<Vec<JobInsertResult>> {
        match sequence::batch_keys(jobs) {
            Some(keys) => self.sequence_insert(jobs, keys).await,
            None => self.insert_rows(jobs).await,
        }
    }

    async fn job_insert_fast(&mut self, jobs: &[JobInsertParams]) -> Result<u64> {
        if jobs.is_empty() {
            return Ok(0);
        }
        // COPY cannot read which sequences are busy between its rows; a batch with sequence
        // jobs takes the insert statement's path instead.
        if let Some(keys) = sequence::batch_keys(jobs) {
            return Ok(self.sequence_insert(jobs, keys).await?.len() as u64);
        }
        let layout = CopyLayout::for_jobs(jobs);
        let statement = format!(
            "COPY {} ({}) FROM STDIN",
            self.driver.queries().job_table,
            layout.columns().join(", ")
        );
        let encode = |data: &mut String, job: &JobInsertParams| layout.encode(data, job);
        let result = match &mut self.conn {
            Some(conn) => {
                let mut copy = conn.copy_in_raw(&statement).await.map_err(db_error)?;
                copy_rows(&mut copy, jobs, encode).await?;
                copy.finish().await
            }
            None => {
                let mut copy = self
                    .driver
                    .pool()
                    .copy_in_raw(&statement)
                    .await
                    .map_err(db_error)?;
                copy_rows(&mut copy, jobs, encode).await?;
                copy.finish().await
            }
        };
        result.map_err(db_error)
    }

    async fn job_get_by_id(&mut self, id: JobId) -> Result<Option<JobRow>> {
        let q = query(&self.driver.queries().job_get_by_id).bind(id.0);
        self.fetch_optional(q)
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
        self.fetch_all(q).await?.iter().map(job_read).collect()
    }

    async fn job_delete_many(&mut self, params: &JobListParams) -> Result<Vec<JobRead>> {
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
        let q = query(&self.driver.queries().job_update_metadata)
            .bind(id.0)
            .bind(metadata.to_owned());
        self.fetch_optional(q)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    async fn queue_list(&mut self, after: Option<&str>, limit: i64) -> Result<Vec<QueueRow>> {
        let q = query(&self.driver.queries().queue.list)
            .bind(after.map(str::to_owned))
            .bind(limit);
        self.fetch_all(q).await?.iter().map(queue_row).collect()
    }

    async fn queue_update_metadata(&mut self, name: &str, metadata: &str) -> Result<QueueRow> {
        let channel = self
            .driver
            .queries()
            .schema
            .channel(Topic::Control.as_str());
        let q = query(&self.driver.queries().queue.update_metadata)
            .bind(name.to_owned())
            .bind(metadata.to_owned())
            .bind(channel);
        let row = self
            .fetch_optional(q)
            .await?
            .ok_or_else(|| DriverError::Decode {
                column: "name",
                message: "queue update returned no row".to_owned(),
            })?;
        queue_row(&row)
    }

    async fn queue_set_metadata_key(
        &mut self,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<QueueRow> {
        let channel = self
            .driver
            .queries()
            .schema
            .channel(Topic::Control.as_str());
        let q = query(&self.driver.queries().queue.set_metadata_key)
            .bind(name.to_owned())
            .bind(key.to_owned())
            .bind(value.map(str::to_owned))
            .bind(channel);
        let row = self
            .fetch_optional(q)
            .await?
            .ok_or_else(|| DriverError::Decode {
                column: "name",
                message: "queue update returned no row".to_owned(),
            })?;
        queue_row(&row)
    }

    async fn job_cancel(&mut self, params: &JobCancelParams) -> Result<Option<JobRow>> {
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

    async fn job_retry(&mut self, params: &JobRetryParams) -> Result<Option<JobRow>> {
        let q = query(&self.driver.queries().job_retry)
            .bind(params.id.0)
            .bind(params.now.map(jiff_sqlx::Timestamp::from));
        self.fetch_optional(q)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    async fn job_delete(&mut self, id: JobId) -> Result<JobDeleteOutcome> {
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

    async fn job_get_available(&mut self, params: &JobGetAvailableParams) -> Result<Vec<JobRead>> {
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

    async fn job_rate_limit_wait(
        &mut self,
        queue: &str,
        rate: &millrace_driver::FetchRate,
    ) -> Result<Option<std::time::Duration>> {
        self.rate_limit_wait(queue, rate).await
    }

    async fn job_start_by_id(&mut self, id: JobId, client_id: &str) -> Result<Option<JobRow>> {
        let q = query(&self.driver.queries().job_start_by_id)
            .bind(id.0)
            .bind(client_id.to_owned());
        self.fetch_optional(q)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    async fn job_complete_many(
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

    async fn job_schedule(&mut self, params: &JobScheduleParams) -> Result<Vec<JobScheduled>> {
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

    async fn job_return_orphans(&mut self, params: &JobReturnOrphansParams) -> Result<u64> {
        let q = query(&self.driver.queries().job_return_orphans)
            .bind(params.client_id.as_str())
            .bind(params.queue.as_str())
            .bind(params.held.iter().map(|id| id.0).collect::<Vec<_>>());
        self.execute(q).await
    }

    async fn queue_create_or_touch(&mut self, name: &str) -> Result<QueueRow> {
        let q = query(&self.driver.queries().queue.create_or_touch).bind(name.to_owned());
        let row = self
            .fetch_optional(q)
            .await?
            .ok_or_else(|| DriverError::Decode {
                column: "name",
                message: "queue upsert returned no row".to_owned(),
            })?;
        queue_row(&row)
    }

    async fn queue_get(&mut self, name: &str) -> Result<Option<QueueRow>> {
        let q = query(&self.driver.queries().queue.get).bind(name.to_owned());
        self.fetch_optional(q)
            .await?
            .as_ref()
            .map(queue_row)
            .transpose()
    }

    async fn queue_set_paused(&mut self, name: &str, paused: bool) -> Result<u64> {
        let action = if paused { "pause" } else { "resume" };
        let payload = serde_json::json!({ "action": action, "queue": name }).to_string();
        let channel = self
            .driver
            .queries()
            .schema
            .channel(Topic::Control.as_str());
        let q = query(&self.driver.queries().queue.set_paused)
            .bind(name.to_owned())
            .bind(paused)
            .bind(channel)
            .bind(payload);
        let row = self.fetch_optional(q).await?;
        Ok(row.map_or(0, |r| r.get::<i64, _>("changed") as u64))
    }

    async fn leader_attempt_elect(&mut self, params: &LeaderParams) -> Result<Option<LeaderRow>> {
        let queries = self.driver.queries().leader(params.table);
        let mut exec = self.on_direct();
        exec.execute(query(&queries.delete_expired)).await?;
        let q = query(&queries.elect)
            .bind(params.leader_id.as_str())
            .bind(params.ttl.as_secs_f64());
        exec.fetch_optional(q)
            .await?
            .as_ref()
            .map(leader_row)
            .transpose()
    }

    async fn leader_attempt_reelect(
        &mut self,
        params: &LeaderParams,
        elected_at: Timestamp,
    ) -> Result<Option<LeaderRow>> {
        let queries = self.driver.queries().leader(params.table);
        let q = query(&queries.reelect)
            .bind(params.leader_id.as_str())
            .bind(params.ttl.as_secs_f64())
            .bind(jiff_sqlx::Timestamp::from(elected_at));
        self.on_direct()
            .fetch_optional(q)
            .await?
            .as_ref()
            .map(leader_row)
            .transpose()
    }

    async fn leader_resign(&mut self, table: LeaderTable, leader_id: &str) -> Result<bool> {
        let queries = self.driver.queries();
        let mut q = query(&queries.leader(table).resign).bind(leader_id.to_owned());
        if table == LeaderTable::River {
            q = q.bind(queries.schema.channel(Topic::Leadership.as_str()));
        }
        let row = self.on_direct().fetch_optional(q).await?;
        Ok(row.is_some_and(|r| r.get::<i64, _>("n") > 0))
    }

    async fn leader_get(&mut self, table: LeaderTable) -> Result<Option<LeaderRow>> {
        let q = query(&self.driver.queries().leader(table).get);
        self.on_direct()
            .fetch_optional(q)
            .await?
            .as_ref()
            .map(leader_row)
            .transpose()
    }

    async fn client_heartbeat(&mut self, client_id: &str, lease: Duration) -> Result<()> {
        let q = query(&self.driver.queries().client.heartbeat)
            .bind(client_id.to_owned())
            .bind(lease.as_secs_f64());
        self.execute(q).await.map(|_| ())
    }

    async fn client_declare_queues(&mut self, client_id: &str, queues: &str) -> Result<bool> {
        let q = query(&self.driver.queries().client.declare_queues)
            .bind(client_id.to_owned())
            .bind(queues.to_owned());
        Ok(self.execute(q).await? == 1)
    }

    async fn client_get_expired(&mut self, max: i32) -> Result<Vec<String>> {
        let q = query(&self.driver.queries().client.get_expired).bind(max);
        self.fetch_all(q)
            .await?
            .iter()
            .map(|r| r.try_get("id").map_err(db_error))
            .collect()
    }

    async fn client_delete(&mut self, client_ids: &[String]) -> Result<u64> {
        let q = query(&self.driver.queries().client.delete).bind(client_ids.to_vec());
        self.execute(q).await
    }

    async fn client_delete_expired(&mut self, client_ids: &[String]) -> Result<u64> {
        let q = query(&self.driver.queries().client.delete_expired)
            .bind(client_ids.to_vec())
            .bind(PERSISTENT_KIND_PREFIX);
        self.execute(q).await
    }

    async fn job_get_running_of_clients(
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

    async fn job_get_stuck(&mut self, horizon: Timestamp, max: i32) -> Result<Vec<JobRead>> {
        let q = query(&self.driver.queries().job_get_stuck)
            .bind(jiff_sqlx::Timestamp::from(horizon))
            .bind(i64::from(max));
        self.fetch_all(q).await?.iter().map(job_read).collect()
    }

    async fn job_delete_finalized(&mut self, params: &JobDeleteFinalizedParams) -> Result<u64> {
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

    async fn queue_delete_expired(&mut self, before: Timestamp, max: i32) -> Result<Vec<String>> {
        let q = query(&self.driver.queries().queue.delete_expired)
            .bind(jiff_sqlx::Timestamp::from(before))
            .bind(i64::from(max));
        self.fetch_all(q)
            .await?
            .iter()
            .map(|r| r.try_get("name").map_err(db_error))
            .collect()
    }

    async fn index_reindex(&mut self, index: &str) -> Result<()> {
        let name = self.driver.queries().schema.qualify(index);
        // CONCURRENTLY cannot run in a transaction: always on a pool connection of its own.
        sqlx::raw_sql(AssertSqlSafe(format!("REINDEX INDEX CONCURRENTLY {name}")))
            .execute(self.driver.pool())
            .await
            .map(|_| ())
            .map_err(db_error)
    }

    async fn periodic_job_get(&mut self, ids: &[String]) -> Result<Vec<(String, Timestamp)>> {
        let q = query(&self.driver.queries().periodic.get).bind(ids.to_vec());
        self.fetch_all(q)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("id").map_err(db_error)?,
                    r.try_get::<jiff_sqlx::Timestamp, _>("next_run_at")
                        .map_err(db_error)?
                        .to_jiff(),
                ))
            })
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
                .bind(jiff_sqlx::Timestamp::from(next_run_at)),
            Some(expected) => query(&queries.periodic.update)
                .bind(id.to_owned())
                .bind(jiff_sqlx::Timestamp::from(expected))
                .bind(jiff_sqlx::Timestamp::from(next_run_at)),
        };
        Ok(self.execute(q).await? == 1)
    }

    async fn persistent_claim(&mut self, params: &PersistentClaimParams) -> Result<Option<JobRow>> {
        let q = query(&self.driver.queries().persistent.claim)
            .bind(params.kind.as_str())
            .bind(params.queue.as_str())
            .bind(params.client_id.as_str())
            .bind(params.lease.as_secs_f64());
        self.fetch_optional(q)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    async fn persistent_renew(&mut self, id: JobId, fence: i64) -> Result<bool> {
        let q = query(&self.driver.queries().persistent.renew)
            .bind(id.0)
            .bind(fence);
        Ok(self.execute(q).await? == 1)
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
        Ok(self.execute(q).await? == 1)
    }

    async fn persistent_release(&mut self, params: &PersistentReleaseParams) -> Result<bool> {
        let error = params
            .error
            .as_ref()
            .map(|e| serde_json::to_string(e).expect("an AttemptError always encodes"));
        let q = query(&self.driver.queries().persistent.release)
            .bind(params.id.0)
            .bind(params.fence)
            .bind(jiff_sqlx::Timestamp::from(params.available_at))
            .bind(error)
            .bind(i64::from(params.keep_errors.max(1)));
        Ok(self.execute(q).await? == 1)
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

#[cfg(test)]
mod tests {
    use super::json_reads_back_as_sent;

    #[test]
    fn numbers_that_jsonb_rewrites_are_found() {
        for rewritten in [
            r#"{"a":1e3}"#,
            r#"[2E-2]"#,
            r#"{"z":-0}"#,
            r#"{"s":"x","n":[1,-0]}"#,
        ] {
            assert!(!json_reads_back_as_sent(rewritten), "{rewritten}");
        }
        for same in [
            r#"{}"#,
            r#"{"n":-12,"x":0.25,"big":123456789012345678901234567890}"#,
            r#"{"date":"2024-01-05","hex":"3e4f","e":"1e3","esc":"\"1e3"}"#,
            r#"{"g":-0.5,"h":10,"i":-10,"j":0.0}"#,
        ] {
            assert!(json_reads_back_as_sent(same), "{same}");
        }
    }
}
