//! The inspection and bulk-action verbs on SQLite: counts by queue and state, queue lag,
//! bulk retry, cancel and delete by filter, and reads of the fleet's own tables.

use std::sync::Arc;

use jiff::Timestamp;
use millrace_driver::{
    ClientRow, DriverError, FinalizedBucketRow, JobBatchAction, JobBatchParams, JobBatchRow,
    JobCountRow, PeriodicJobRow, QueueOldestAvailable, Result, RunningCountRow, Topic,
};
use millrace_types::{JobId, JobRead, JobState};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SqliteExecutor, bind_list, query};
use crate::error::db_error;
use crate::row::{job_columns, job_read, time, time_opt};
use crate::time::{NOW, encode};

/// The statements of the inspection verbs, built once per schema with the other queries.
#[derive(Debug)]
pub(crate) struct InspectQueries {
    /// Ascending, descending.
    job_count: [Arc<str>; 2],
    /// Every state, then the states bound as the one parameter.
    job_count_by_queue_and_state: [Arc<str>; 2],
    queue_oldest_available: Arc<str>,
    job_finalized_histogram: Arc<str>,
    /// The jobs a bulk action looks at: ascending, descending.
    job_pick: [Arc<str>; 2],
    /// Indexed by action: retry, cancel, delete; each takes the picked ids as a JSON array.
    job_act: [Arc<str>; 3],
    periodic_job_list: Arc<str>,
    persistent_list: Arc<str>,
    client_list: Arc<str>,
    job_count_running_by_client: Arc<str>,
    now: Arc<str>,
}

fn action_index(action: JobBatchAction) -> usize {
    match action {
        JobBatchAction::Retry => 0,
        JobBatchAction::Cancel => 1,
        JobBatchAction::Delete => 2,
    }
}

impl InspectQueries {
    /// `s` is the schema prefix; `filters` the job list's WHERE clause, whose parameters
    /// `bind_list` binds (?1 to ?14).
    pub(crate) fn new(s: &str, filters: &str) -> Self {
        let job = format!("{s}river_job");
        let cols = job_columns("");
        let job_count_by_queue_and_state = [
            format!(
                "SELECT queue, state, count(*) AS count FROM {job} \
                 GROUP BY state, queue ORDER BY queue, state"
            ),
            format!(
                "SELECT queue, state, count(*) AS count FROM {job} \
                 WHERE state IN (SELECT value FROM json_each(?1)) \
                 GROUP BY state, queue ORDER BY queue, state"
            ),
        ];
        // A range of the (state, finalized_at) index per final state. Stored times are UTC text
        // in one form, so they compare as text and julianday reads them.
        let job_finalized_histogram = format!(
            r#"
SELECT CAST((julianday(finalized_at) - julianday(?1)) * 86400.0 / ?2 AS INTEGER) AS bucket,
       state, count(*) AS count
FROM {job}
WHERE state IN ('cancelled', 'completed', 'discarded') AND finalized_at >= ?1
GROUP BY 1, 2
ORDER BY 1, 2"#
        );
        // Read from the (state, queue, …) index. SQLite is one machine's database, where a
        // range scan of the available jobs is cheap enough; PostgreSQL probes per priority.
        let queue_oldest_available = format!(
            r#"
SELECT n.now, o.queue, o.oldest
FROM (SELECT {NOW} AS now) AS n
LEFT JOIN (
    SELECT queue, min(scheduled_at) AS oldest FROM {job}
    WHERE state = 'available'
    GROUP BY queue
) AS o ON 1
ORDER BY o.queue"#
        );
        // SQLite has one writer at a time: the BEGIN IMMEDIATE transaction the pick and the
        // action share is the lock PostgreSQL's FOR UPDATE takes, so the state the action
        // judges a job by is the state it changes.
        let pick = |cmp: &str, order: &str| -> Arc<str> {
            format!(
                r#"
SELECT id, kind, queue, state FROM {job}{filters}
  AND (?4 IS NULL OR id {cmp} ?4)
ORDER BY id {order}
LIMIT ?5"#
            )
            .into()
        };
        // Counting stops at the limit, so a capped count stays cheap on a large match.
        let count = |cmp: &str| -> Arc<str> {
            format!(
                r#"
SELECT count(*) AS count FROM (
    SELECT 1 FROM {job}{filters}
      AND (?4 IS NULL OR id {cmp} ?4)
    LIMIT ?5
)"#
            )
            .into()
        };
        // Each mirrors its single-job statement (job_retry, job_cancel, job_delete).
        let retry = format!(
            r#"
UPDATE {job} SET
    state = 'available',
    scheduled_at = coalesce(?2, {NOW}),
    max_attempts = CASE WHEN attempt >= max_attempts AND max_attempts < 32767
                        THEN max_attempts + 1 ELSE max_attempts END,
    finalized_at = NULL
WHERE id IN (SELECT value FROM json_each(?1)) AND state <> 'running'
RETURNING id, state, queue"#
        );
        let cancel = format!(
            r#"
UPDATE {job} SET
    state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END,
    finalized_at = CASE WHEN state = 'running' THEN finalized_at ELSE ?2 END,
    metadata = jsonb_set({metadata}, '$.cancel_attempted_at', ?3)
WHERE id IN (SELECT value FROM json_each(?1))
  AND state NOT IN ('cancelled', 'completed', 'discarded')
RETURNING id, state, queue"#,
            metadata = crate::queries::metadata_object("metadata"),
        );
        let delete = format!(
            "DELETE FROM {job} WHERE id IN (SELECT value FROM json_each(?1)) \
             AND state <> 'running' RETURNING id, state, queue"
        );
        let periodic_job_list = format!(
            r#"
SELECT p.id, p.next_run_at, p.updated_at,
       j.id AS last_id, j.created_at AS last_created_at, j.state AS last_state
FROM {s}millrace_periodic_job AS p
LEFT JOIN {job} AS j ON j.id = (
    SELECT max(k.id) FROM {job} AS k
    WHERE k.metadata ->> '$."river:periodic_job_id"' = p.id
)
ORDER BY p.id"#
        );
        let persistent_list = format!(
            r#"
SELECT {cols} FROM {job}
WHERE state IN ('available', 'pending', 'retryable', 'running', 'scheduled')
  AND substr(kind, 1, length(?1)) = ?1
ORDER BY id"#
        );
        let client_list = format!(
            "SELECT id, started_at, heartbeat_at, lease_expires_at, queues \
             FROM {s}millrace_client ORDER BY id"
        );
        let job_count_running_by_client = format!(
            r#"
SELECT coalesce(attempted_by ->> '$[#-1]', '') AS client_id, queue, kind, count(*) AS count
FROM {job}
WHERE state = 'running'
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3"#
        );
        InspectQueries {
            job_count: [count(">"), count("<")],
            job_count_by_queue_and_state: job_count_by_queue_and_state.map(Into::into),
            queue_oldest_available: queue_oldest_available.into(),
            job_finalized_histogram: job_finalized_histogram.into(),
            job_pick: [pick(">", "ASC"), pick("<", "DESC")],
            job_act: [retry.into(), cancel.into(), delete.into()],
            periodic_job_list: periodic_job_list.into(),
            persistent_list: persistent_list.into(),
            client_list: client_list.into(),
            job_count_running_by_client: job_count_running_by_client.into(),
            now: format!("SELECT {NOW} AS now").into(),
        }
    }
}

fn get<'r, T>(row: &'r SqliteRow, column: &'static str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(|err| DriverError::Decode {
        column,
        message: err.to_string(),
    })
}

fn state(row: &SqliteRow, column: &'static str) -> Result<JobState> {
    get::<String>(row, column)?
        .parse()
        .map_err(
            |err: millrace_types::ParseJobStateError| DriverError::Decode {
                column,
                message: err.to_string(),
            },
        )
}

impl SqliteExecutor<'_> {
    pub(super) async fn inspect_job_count(
        &mut self,
        params: &millrace_driver::JobListParams,
    ) -> Result<i64> {
        let sql = &self.driver.queries().inspect.job_count[usize::from(params.descending)];
        let q = bind_list(query(sql), params);
        let row = self
            .read_optional(q)
            .await?
            .ok_or_else(|| db_error(sqlx::Error::RowNotFound))?;
        get(&row, "count")
    }

    pub(super) async fn inspect_job_count_by_queue_and_state(
        &mut self,
        states: &[JobState],
    ) -> Result<Vec<JobCountRow>> {
        let sql = &self.driver.queries().inspect.job_count_by_queue_and_state;
        let q = if states.is_empty() {
            query(&sql[0])
        } else {
            let q = query(&sql[1]);
            q.bind(
                serde_json::to_string(&states.iter().map(|s| s.as_str()).collect::<Vec<_>>())
                    .expect("strings always encode"),
            )
        };
        self.read_all(q)
            .await?
            .iter()
            .map(|row| {
                Ok(JobCountRow {
                    queue: get(row, "queue")?,
                    state: state(row, "state")?,
                    count: get(row, "count")?,
                })
            })
            .collect()
    }

    pub(super) async fn inspect_job_finalized_histogram(
        &mut self,
        since: Timestamp,
        bucket_secs: i64,
    ) -> Result<Vec<FinalizedBucketRow>> {
        let q = query(&self.driver.queries().inspect.job_finalized_histogram)
            .bind(encode(since))
            .bind(bucket_secs as f64);
        self.read_all(q)
            .await?
            .iter()
            .map(|row| {
                Ok(FinalizedBucketRow {
                    bucket: get(row, "bucket")?,
                    state: state(row, "state")?,
                    count: get(row, "count")?,
                })
            })
            .collect()
    }

    pub(super) async fn inspect_queue_oldest_available(&mut self) -> Result<QueueOldestAvailable> {
        let q = query(&self.driver.queries().inspect.queue_oldest_available);
        let rows = self.read_all(q).await?;
        let now = match rows.first() {
            Some(row) => time(row, "now")?,
            None => Timestamp::now(),
        };
        let mut queues = Vec::with_capacity(rows.len());
        for row in &rows {
            let queue: Option<String> = get(row, "queue")?;
            if let (Some(queue), Some(oldest)) = (queue, time_opt(row, "oldest")?) {
                queues.push((queue, oldest));
            }
        }
        Ok(QueueOldestAvailable { now, queues })
    }

    pub(super) async fn inspect_job_act_many(
        &mut self,
        params: &JobBatchParams,
    ) -> Result<Vec<JobBatchRow>> {
        let driver = self.driver;
        let own = self.conn.is_none();
        let queries = &driver.queries().inspect;
        let pick = bind_list(
            query(&queries.job_pick[usize::from(params.filter.descending)]),
            &params.filter,
        );
        let mut scope = self.scope().await?;
        let picked = scope
            .fetch_all(pick)
            .await?
            .iter()
            .map(|row| {
                Ok(JobBatchRow {
                    id: JobId(get(row, "id")?),
                    kind: get(row, "kind")?,
                    queue: get(row, "queue")?,
                    state_before: state(row, "state")?,
                    state: state(row, "state")?,
                    applied: false,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if picked.is_empty() {
            scope.finish().await?;
            return Ok(picked);
        }
        let ids = serde_json::to_string(&picked.iter().map(|r| r.id.0).collect::<Vec<_>>())
            .expect("numbers always encode");
        let now = params.now.unwrap_or_else(Timestamp::now);
        let act = query(&queries.job_act[action_index(params.action)]).bind(ids);
        let act = match params.action {
            JobBatchAction::Retry => act.bind(params.now.map(encode)),
            JobBatchAction::Cancel => act.bind(encode(now)).bind(now.to_string()),
            JobBatchAction::Delete => act,
        };
        let acted = scope.fetch_all(act).await?;
        let mut changed = std::collections::HashMap::with_capacity(acted.len());
        let mut notifications = Vec::new();
        for row in &acted {
            let id: i64 = get(row, "id")?;
            let new_state = state(row, "state")?;
            if params.action == JobBatchAction::Cancel && new_state == JobState::Running {
                // Its client cancels the worker on this notification, as for one job.
                let queue: String = get(row, "queue")?;
                let payload = serde_json::json!({
                    "action": "cancel",
                    "job_id": id,
                    "queue": queue,
                })
                .to_string();
                notifications.push((Topic::Control, payload));
            }
            changed.insert(id, new_state);
        }
        if !notifications.is_empty() {
            Self::notify_in_scope(driver, &mut scope, &notifications, own).await?;
        }
        scope.finish().await?;
        Ok(picked
            .into_iter()
            .map(|mut row| {
                if let Some(new_state) = changed.get(&row.id.0) {
                    row.applied = true;
                    row.state = *new_state;
                }
                row
            })
            .collect())
    }

    pub(super) async fn inspect_periodic_job_list(&mut self) -> Result<Vec<PeriodicJobRow>> {
        let q = query(&self.driver.queries().inspect.periodic_job_list);
        self.read_all(q)
            .await?
            .iter()
            .map(|row| {
                let last_id: Option<i64> = get(row, "last_id")?;
                let last_job = match last_id {
                    Some(id) => Some((
                        JobId(id),
                        time(row, "last_created_at")?,
                        state(row, "last_state")?,
                    )),
                    None => None,
                };
                Ok(PeriodicJobRow {
                    id: get(row, "id")?,
                    next_run_at: time(row, "next_run_at")?,
                    updated_at: time(row, "updated_at")?,
                    last_job,
                })
            })
            .collect()
    }

    pub(super) async fn inspect_persistent_list(
        &mut self,
        kind_prefix: &str,
    ) -> Result<Vec<JobRead>> {
        let q = query(&self.driver.queries().inspect.persistent_list).bind(kind_prefix.to_owned());
        self.read_all(q).await?.iter().map(job_read).collect()
    }

    pub(super) async fn inspect_client_list(&mut self) -> Result<Vec<ClientRow>> {
        let q = query(&self.driver.queries().inspect.client_list);
        self.read_all(q)
            .await?
            .iter()
            .map(|row| {
                Ok(ClientRow {
                    id: get(row, "id")?,
                    started_at: time(row, "started_at")?,
                    heartbeat_at: time(row, "heartbeat_at")?,
                    lease_expires_at: time(row, "lease_expires_at")?,
                    queues: ClientRow::queues_from_text(&get::<String>(row, "queues")?),
                })
            })
            .collect()
    }

    pub(super) async fn inspect_job_count_running_by_client(
        &mut self,
    ) -> Result<Vec<RunningCountRow>> {
        let q = query(&self.driver.queries().inspect.job_count_running_by_client);
        self.read_all(q)
            .await?
            .iter()
            .map(|row| {
                Ok(RunningCountRow {
                    client_id: get(row, "client_id")?,
                    queue: get(row, "queue")?,
                    kind: get(row, "kind")?,
                    count: get(row, "count")?,
                })
            })
            .collect()
    }

    pub(super) async fn inspect_now(&mut self) -> Result<Timestamp> {
        let q = query(&self.driver.queries().inspect.now);
        let row = self
            .read_optional(q)
            .await?
            .ok_or_else(|| db_error(sqlx::Error::RowNotFound))?;
        time(&row, "now")
    }
}
