//! Every statement of the driver, with the schema filled in once when the driver is built.

use std::sync::Arc;

use millrace_driver::Schema;

use crate::row::job_columns;

/// The driver's SQL for one schema. Strings are `Arc<str>` so handing one to sqlx is a
/// reference-count bump, not a copy.
#[derive(Debug)]
pub(crate) struct Queries {
    pub(crate) schema: Schema,
    pub(crate) job_table: String,
    pub(crate) job_columns: String,
    pub(crate) job_insert_many: Arc<str>,
    pub(crate) job_insert_many_unique: Arc<str>,
    pub(crate) job_get_by_id: Arc<str>,
    pub(crate) job_list_asc: Arc<str>,
    pub(crate) job_list_desc: Arc<str>,
    pub(crate) job_cancel: Arc<str>,
    pub(crate) job_retry: Arc<str>,
    pub(crate) job_delete: Arc<str>,
    pub(crate) notify_many: Arc<str>,
    pub(crate) migration_has_line: Arc<str>,
    pub(crate) migration_get_all: Arc<str>,
    pub(crate) migration_get_all_legacy: Arc<str>,
    pub(crate) migration_insert: Arc<str>,
    pub(crate) migration_insert_legacy: Arc<str>,
    pub(crate) migration_delete: Arc<str>,
    pub(crate) migration_delete_legacy: Arc<str>,
}

impl Queries {
    pub(crate) fn new(schema: Schema) -> Self {
        let s = schema.fill("/*schema*/");
        let job = format!("{s}river_job");
        let migration = format!("{s}river_migration");
        let cols = job_columns("");
        let j_cols = job_columns("j.");

        // Rows go in as parallel arrays, one element per job. Tags travel as one comma-joined
        // string per job because PostgreSQL cannot unnest an array of arrays; tags never hold
        // commas (validated at insert).
        let insert_head = format!(
            r#"
INSERT INTO {job} AS j
    (args, created_at, kind, max_attempts, metadata, priority, queue, scheduled_at, state, tags,
     unique_key, unique_states)
SELECT
    unnest($1::jsonb[]),
    coalesce(unnest($2::timestamptz[]), now()),
    unnest($3::text[]),
    unnest($4::smallint[]),
    unnest($5::jsonb[]),
    unnest($6::smallint[]),
    unnest($7::text[]),
    coalesce(unnest($8::timestamptz[]), now()),
    unnest($9::text[])::{s}river_job_state,
    string_to_array(unnest($10::text[]), ','),
    unnest($11::bytea[]),
    unnest($12::int[])::bit(8)"#
        );
        let job_insert_many = format!(
            "{insert_head}\nRETURNING {j_cols}, false AS unique_skipped_as_duplicate"
        );
        // A duplicate returns the live row unchanged, as River's Rust crate does (River for Go
        // overwrites `kind`, which matters only under ExcludeKind). DO UPDATE rather than DO
        // NOTHING, because only DO UPDATE returns the conflicting row, and it sees the newest
        // committed version of it. `xmax` is zero exactly for freshly inserted rows.
        let job_insert_many_unique = format!(
            r#"{insert_head}
ON CONFLICT (unique_key)
    WHERE unique_key IS NOT NULL
      AND unique_states IS NOT NULL
      AND {s}river_job_state_in_bitmask(unique_states, state)
    DO UPDATE SET kind = j.kind
RETURNING {j_cols}, (j.xmax <> 0) AS unique_skipped_as_duplicate"#
        );

        let job_get_by_id = format!("SELECT {cols} FROM {job} WHERE id = $1");
        let job_list = |cmp: &str, order: &str| -> Arc<str> {
            format!(
                r#"
SELECT {cols} FROM {job}
WHERE (cardinality($1::text[]) = 0 OR state = ANY($1::text[]::{s}river_job_state[]))
  AND (cardinality($2::text[]) = 0 OR kind = ANY($2::text[]))
  AND (cardinality($3::text[]) = 0 OR queue = ANY($3::text[]))
  AND ($4::bigint IS NULL OR id {cmp} $4::bigint)
ORDER BY id {order}
LIMIT $5"#
            )
            .into()
        };

        // Mirrors River's JobCancel: a job that is not running is cancelled at once; a running
        // one records the request and its client is told, and finalizes it when the worker
        // returns. Finalized jobs are left as they are.
        let job_cancel = format!(
            r#"
WITH locked AS (
    SELECT id, state FROM {job} WHERE id = $1 FOR UPDATE
),
updated AS (
    UPDATE {job} AS j SET
        state = CASE WHEN l.state = 'running' THEN j.state ELSE 'cancelled' END,
        finalized_at = CASE WHEN l.state = 'running' THEN j.finalized_at
                            ELSE coalesce($2::timestamptz, now()) END,
        metadata = j.metadata
            || jsonb_build_object('cancel_attempted_at', coalesce($2::timestamptz, now()))
    FROM locked AS l
    WHERE j.id = l.id AND l.state NOT IN ('cancelled', 'completed', 'discarded')
    RETURNING j.*
),
notified AS (
    SELECT pg_notify($3, json_build_object('action', 'cancel', 'job_id', id, 'queue', queue)::text)
    FROM updated
    WHERE state = 'running'
)
SELECT {cols} FROM updated WHERE (SELECT count(*) FROM notified) >= 0
UNION ALL
SELECT {cols} FROM {job} WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM updated)"#
        );

        // Mirrors River's JobRetry: any job that is not running becomes available now; a job
        // that used all its attempts gets one more (never beyond smallint's range).
        let job_retry = format!(
            r#"
WITH updated AS (
    UPDATE {job} AS j SET
        state = 'available',
        scheduled_at = coalesce($2::timestamptz, now()),
        max_attempts = CASE WHEN j.attempt >= j.max_attempts AND j.max_attempts < 32767
                            THEN j.max_attempts + 1 ELSE j.max_attempts END,
        finalized_at = NULL
    WHERE j.id = $1 AND j.state <> 'running'
    RETURNING j.*
)
SELECT {cols} FROM updated
UNION ALL
SELECT {cols} FROM {job} WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM updated)"#
        );

        let job_delete = format!(
            r#"
WITH deleted AS (
    DELETE FROM {job} WHERE id = $1 AND state <> 'running' RETURNING *
)
SELECT {cols}, true AS deleted FROM deleted
UNION ALL
SELECT {cols}, false AS deleted FROM {job} WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM deleted)"#
        );

        let notify_many =
            "SELECT count(pg_notify(c, p)) FROM unnest($1::text[], $2::text[]) AS t(c, p)"
                .to_owned();

        let migration_has_line = r#"
SELECT EXISTS (
    SELECT 1 FROM information_schema.columns
    WHERE table_schema = $1 AND table_name = 'river_migration' AND column_name = 'line'
)"#
        .to_owned();

        Queries {
            job_insert_many: job_insert_many.into(),
            job_insert_many_unique: job_insert_many_unique.into(),
            job_get_by_id: job_get_by_id.into(),
            job_list_asc: job_list(">", "ASC"),
            job_list_desc: job_list("<", "DESC"),
            job_cancel: job_cancel.into(),
            job_retry: job_retry.into(),
            job_delete: job_delete.into(),
            notify_many: notify_many.into(),
            migration_has_line: migration_has_line.into(),
            migration_get_all: format!(
                "SELECT line, version, created_at FROM {migration} WHERE line = $1 ORDER BY version"
            )
            .into(),
            migration_get_all_legacy: format!(
                "SELECT 'main' AS line, version, created_at FROM {migration} ORDER BY version"
            )
            .into(),
            migration_insert: format!("INSERT INTO {migration} (line, version) VALUES ($1, $2)")
                .into(),
            migration_insert_legacy: format!("INSERT INTO {migration} (version) VALUES ($1)").into(),
            migration_delete: format!("DELETE FROM {migration} WHERE line = $1 AND version = $2")
                .into(),
            migration_delete_legacy: format!("DELETE FROM {migration} WHERE version = $1").into(),
            job_table: job,
            job_columns: cols,
            schema,
        }
    }
}
