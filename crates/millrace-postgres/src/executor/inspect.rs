//! The inspection and bulk-action verbs on PostgreSQL: counts by queue and state, queue lag,
//! bulk retry, cancel and delete by filter, and reads of the fleet's own tables.

use std::sync::Arc;

use jiff::Timestamp;
use millrace_driver::{
    ClientRow, DriverError, FinalizedBucketRow, JobBatchAction, JobBatchParams, JobBatchRow,
    JobCountRow, JobStateEstimate, PeriodicJobRow, QueueOldestAvailable, Result, RunningCountRow,
    Topic,
};
use millrace_types::{JobId, JobRead, JobState};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgExecutor, bind_list, query};
use crate::row::{job_columns, job_read};

/// The statements of the inspection verbs, built once per schema with the other queries.
#[derive(Debug)]
pub(crate) struct InspectQueries {
    /// Ascending, descending.
    job_count: [Arc<str>; 2],
    /// Every state, then the states bound as the one parameter.
    job_count_by_queue_and_state: [Arc<str>; 2],
    queue_oldest_available: Arc<str>,
    job_finalized_histogram: Arc<str>,
    job_state_estimates: Arc<str>,
    /// Indexed by action (retry, cancel, delete), then ascending, descending.
    job_act_many: [[Arc<str>; 2]; 3],
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
    /// `s` is the schema prefix (`"name".`); `filters` the job list's WHERE clause, whose
    /// parameters `bind_list` binds ($1 to $14).
    pub(crate) fn new(s: &str, filters: &str) -> Self {
        let job = format!("{s}river_job");
        let cols = job_columns("");

        // GROUP BY (state, queue) in the order of the fetch index's leading columns, so
        // PostgreSQL can count from that index alone (an index-only scan on a vacuumed
        // table) instead of reading the heap.
        // Two statements rather than an optional filter, so that a prepared statement's
        // generic plan still ranges over the index for the states asked.
        let job_count_by_queue_and_state = [
            format!(
                "SELECT queue, state::text AS state, count(*) AS count FROM {job} \
                 GROUP BY state, queue ORDER BY queue, state"
            ),
            format!(
                "SELECT queue, state::text AS state, count(*) AS count FROM {job} \
                 WHERE state = ANY($1::text[]::{s}river_job_state[]) \
                 GROUP BY state, queue ORDER BY queue, state"
            ),
        ];

        // Each final state is a range of the (state, finalized_at) index from `since` on, read
        // without the heap on a vacuumed table.
        let job_finalized_histogram = format!(
            r#"
SELECT floor(extract(epoch FROM finalized_at - $1::timestamptz) / $2::float8)::bigint AS bucket,
       state::text AS state, count(*) AS count
FROM {job}
WHERE state IN ('cancelled', 'completed', 'discarded') AND finalized_at >= $1::timestamptz
GROUP BY 1, 2
ORDER BY 1, 2"#
        );

        // The table's estimated rows times each state's frequency among the most common
        // values ANALYZE recorded: the catalogs only, whatever the table's size. The schema is
        // bound as a value (it names catalog rows here, not a table).
        let job_state_estimates = r#"
SELECT s.state, round(c.reltuples * s.freq)::bigint AS estimate
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
CROSS JOIN LATERAL (
    SELECT unnest(st.most_common_vals::text::text[]) AS state,
           unnest(st.most_common_freqs) AS freq
    FROM pg_catalog.pg_stats AS st
    WHERE st.schemaname = $1 AND st.tablename = 'river_job' AND st.attname = 'state'
) AS s
WHERE n.nspname = $1 AND c.relname = 'river_job' AND c.reltuples > 0
ORDER BY s.state"#
            .to_owned();

        // A loose index scan: the recursive part jumps from one queue with available jobs to
        // the next through the (state, queue, priority, scheduled_at, id) index, and the
        // oldest job of each is the least of four index probes, one per priority (priority
        // comes before scheduled_at in the index). The cost grows with the number of queues,
        // not of available jobs.
        let queue_oldest_available = format!(
            r#"
WITH RECURSIVE queues AS (
    (SELECT queue FROM {job} WHERE state = 'available' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM {job} AS j
            WHERE j.state = 'available' AND j.queue > q.queue
            ORDER BY j.queue LIMIT 1)
    FROM queues AS q
    WHERE q.queue IS NOT NULL
),
oldest AS (
    SELECT q.queue,
           (SELECT min(o.scheduled_at)
            FROM generate_series(1, 4) AS p(priority)
            CROSS JOIN LATERAL (
                SELECT j.scheduled_at FROM {job} AS j
                WHERE j.state = 'available' AND j.queue = q.queue AND j.priority = p.priority
                ORDER BY j.scheduled_at
                LIMIT 1
            ) AS o) AS oldest
    FROM queues AS q
    WHERE q.queue IS NOT NULL
)
SELECT n.now, o.queue, o.oldest
FROM (SELECT now() AS now) AS n
LEFT JOIN oldest AS o ON true
ORDER BY o.queue"#
        );

        // The rows are locked (FOR UPDATE, not SKIP LOCKED: a row a fetch holds for a moment
        // is waited for rather than passed over, so the cursor never skips a job) and their
        // state read after the lock, so a job that changed state since it was listed is
        // judged by its new state, and the filters are checked again on it.
        let act = |action: JobBatchAction, cmp: &str, order: &str| -> Arc<str> {
            let picked = format!(
                r#"
WITH picked AS (
    SELECT id, kind, queue, state FROM {job}{filters}
      AND ($4::bigint IS NULL OR id {cmp} $4::bigint)
    ORDER BY id {order}
    LIMIT $5
    FOR UPDATE
),"#
            );
            // Each mirrors its single-job statement (job_retry, job_cancel, job_delete). The rows
            // are reached through `= ANY(ARRAY(…))`, an index probe per id: a join with `picked`
            // lets the planner, which cannot see how few rows it holds, hash the whole table on
            // every batch. The state tests read the row the update sees, which is the locked
            // (newest) version.
            let acted = match action {
                JobBatchAction::Retry => format!(
                    r#"
acted AS (
    UPDATE {job} AS j SET
        state = 'available',
        scheduled_at = coalesce($15::timestamptz, now()),
        max_attempts = CASE WHEN j.attempt >= j.max_attempts AND j.max_attempts < 32767
                            THEN j.max_attempts + 1 ELSE j.max_attempts END,
        finalized_at = NULL
    WHERE j.id = ANY(ARRAY(SELECT id FROM picked)) AND j.state <> 'running'
    RETURNING j.id, j.state
)"#
                ),
                JobBatchAction::Cancel => format!(
                    r#"
acted AS (
    UPDATE {job} AS j SET
        state = CASE WHEN j.state = 'running' THEN j.state ELSE 'cancelled' END,
        finalized_at = CASE WHEN j.state = 'running' THEN j.finalized_at
                            ELSE coalesce($15::timestamptz, now()) END,
        metadata = {j_metadata}
            || jsonb_build_object('cancel_attempted_at', coalesce($15::timestamptz, now()))
    WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
      AND j.state NOT IN ('cancelled', 'completed', 'discarded')
    RETURNING j.id, j.state, j.queue
),
notified AS (
    SELECT pg_notify($16, json_build_object('action', 'cancel', 'job_id', id, 'queue', queue)::text)
    FROM acted
    WHERE state = 'running'
)"#,
                    j_metadata = crate::queries::metadata_object("j.metadata"),
                ),
                JobBatchAction::Delete => format!(
                    r#"
acted AS (
    DELETE FROM {job} AS j
    WHERE j.id = ANY(ARRAY(SELECT id FROM picked)) AND j.state <> 'running'
    RETURNING j.id, j.state
)"#
                ),
            };
            // The notifications run only if referenced; counting them does.
            let notified = if action == JobBatchAction::Cancel {
                "\nWHERE (SELECT count(*) FROM notified) >= 0"
            } else {
                ""
            };
            format!(
                r#"{picked}{acted}
SELECT p.id, p.kind, p.queue, p.state::text AS state_before,
       coalesce(a.state, p.state)::text AS state, a.id IS NOT NULL AS applied
FROM picked AS p
LEFT JOIN acted AS a ON a.id = p.id{notified}
ORDER BY p.id {order}"#
            )
            .into()
        };
        // Counting stops at the limit, so a capped count stays cheap on a large match.
        let count = |cmp: &str| -> Arc<str> {
            format!(
                r#"
SELECT count(*) AS count FROM (
    SELECT 1 FROM {job}{filters}
      AND ($4::bigint IS NULL OR id {cmp} $4::bigint)
    LIMIT $5
) AS matched"#
            )
            .into()
        };
        let pair = |action| [act(action, ">", "ASC"), act(action, "<", "DESC")];

        // The newest job naming each schedule, found through the GIN index on metadata.
        let periodic_job_list = format!(
            r#"
SELECT p.id, p.next_run_at, p.updated_at,
       l.id AS last_id, l.created_at AS last_created_at, l.state::text AS last_state
FROM {s}millrace_periodic_job AS p
LEFT JOIN LATERAL (
    SELECT j.id, j.created_at, j.state FROM {job} AS j
    WHERE j.metadata @> jsonb_build_object('river:periodic_job_id', p.id)
    ORDER BY j.id DESC
    LIMIT 1
) AS l ON true
ORDER BY p.id"#
        );
        let persistent_list = format!(
            r#"
SELECT {cols} FROM {job}
WHERE state IN ('available', 'pending', 'retryable', 'running', 'scheduled')
  AND starts_with(kind, $1)
ORDER BY id"#
        );
        let client_list = format!(
            "SELECT id, started_at, heartbeat_at, lease_expires_at, queues::text AS queues \
             FROM {s}millrace_client ORDER BY id"
        );
        let job_count_running_by_client = format!(
            r#"
SELECT coalesce(attempted_by[cardinality(attempted_by)], '') AS client_id, queue, kind,
       count(*) AS count
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
            job_state_estimates: job_state_estimates.into(),
            job_act_many: [
                pair(JobBatchAction::Retry),
                pair(JobBatchAction::Cancel),
                pair(JobBatchAction::Delete),
            ],
            periodic_job_list: periodic_job_list.into(),
            persistent_list: persistent_list.into(),
            client_list: client_list.into(),
            job_count_running_by_client: job_count_running_by_client.into(),
            now: "SELECT now() AS now".into(),
        }
    }
}

fn get<'r, T>(row: &'r PgRow, column: &'static str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(|err| DriverError::Decode {
        column,
        message: err.to_string(),
    })
}

fn time(row: &PgRow, column: &'static str) -> Result<Timestamp> {
    Ok(get::<jiff_sqlx::Timestamp>(row, column)?.to_jiff())
}

fn state(row: &PgRow, column: &'static str) -> Result<JobState> {
    get::<String>(row, column)?
        .parse()
        .map_err(
            |err: millrace_types::ParseJobStateError| DriverError::Decode {
                column,
                message: err.to_string(),
            },
        )
}

impl PgExecutor<'_> {
    pub(super) async fn inspect_job_count(
        &mut self,
        params: &millrace_driver::JobListParams,
    ) -> Result<i64> {
        let sql = &self.driver.queries().inspect.job_count[usize::from(params.descending)];
        let q = bind_list(query(sql), params);
        let row = self.fetch_optional(q).await?.ok_or(DriverError::Decode {
            column: "count",
            message: "a count returned no row".to_owned(),
        })?;
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
            q.bind(states.iter().map(|s| s.as_str()).collect::<Vec<_>>())
        };
        self.fetch_all(q)
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
            .bind(jiff_sqlx::Timestamp::from(since))
            .bind(bucket_secs as f64);
        self.fetch_all(q)
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

    pub(super) async fn inspect_job_state_estimates(&mut self) -> Result<Vec<JobStateEstimate>> {
        let queries = self.driver.queries();
        let q = query(&queries.inspect.job_state_estimates).bind(queries.schema.name().to_owned());
        let rows = self.fetch_all(q).await?;
        let mut estimates = Vec::with_capacity(rows.len());
        for row in &rows {
            // A value no River client writes is left out rather than failing the page.
            if let Ok(state) = state(row, "state") {
                estimates.push(JobStateEstimate {
                    state,
                    estimate: get(row, "estimate")?,
                });
            }
        }
        Ok(estimates)
    }

    pub(super) async fn inspect_queue_oldest_available(&mut self) -> Result<QueueOldestAvailable> {
        let q = query(&self.driver.queries().inspect.queue_oldest_available);
        let rows = self.fetch_all(q).await?;
        let now = match rows.first() {
            Some(row) => time(row, "now")?,
            None => Timestamp::now(),
        };
        let mut queues = Vec::with_capacity(rows.len());
        for row in &rows {
            let queue: Option<String> = get(row, "queue")?;
            let oldest: Option<jiff_sqlx::Timestamp> = get(row, "oldest")?;
            if let (Some(queue), Some(oldest)) = (queue, oldest) {
                queues.push((queue, oldest.to_jiff()));
            }
        }
        Ok(QueueOldestAvailable { now, queues })
    }

    pub(super) async fn inspect_job_act_many(
        &mut self,
        params: &JobBatchParams,
    ) -> Result<Vec<JobBatchRow>> {
        let queries = self.driver.queries();
        let sql = &queries.inspect.job_act_many[action_index(params.action)]
            [usize::from(params.filter.descending)];
        let mut q = bind_list(query(sql), &params.filter);
        match params.action {
            JobBatchAction::Retry => {
                q = q.bind(params.now.map(jiff_sqlx::Timestamp::from));
            }
            JobBatchAction::Cancel => {
                q = q
                    .bind(params.now.map(jiff_sqlx::Timestamp::from))
                    .bind(queries.schema.channel(Topic::Control.as_str()));
            }
            JobBatchAction::Delete => {}
        }
        self.fetch_all(q)
            .await?
            .iter()
            .map(|row| {
                Ok(JobBatchRow {
                    id: JobId(get(row, "id")?),
                    kind: get(row, "kind")?,
                    queue: get(row, "queue")?,
                    state_before: state(row, "state_before")?,
                    state: state(row, "state")?,
                    applied: get(row, "applied")?,
                })
            })
            .collect()
    }

    pub(super) async fn inspect_periodic_job_list(&mut self) -> Result<Vec<PeriodicJobRow>> {
        let q = query(&self.driver.queries().inspect.periodic_job_list);
        self.fetch_all(q)
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
        self.fetch_all(q).await?.iter().map(job_read).collect()
    }

    pub(super) async fn inspect_client_list(&mut self) -> Result<Vec<ClientRow>> {
        let q = query(&self.driver.queries().inspect.client_list);
        self.fetch_all(q)
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
        self.fetch_all(q)
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
        let row = self.fetch_optional(q).await?.ok_or(DriverError::Decode {
            column: "now",
            message: "SELECT now() returned no row".to_owned(),
        })?;
        time(&row, "now")
    }
}
