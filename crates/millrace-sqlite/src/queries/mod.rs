//! Every statement of the driver, with the schema filled in once when the driver is built.
//!
//! SQLite has no arrays, so a batch travels as one JSON array bound as text and is unpacked
//! with `json_each`; JSON columns are written with `jsonb()` and read with `json()`; times are
//! UTC text (see [`crate::time`]).

use std::sync::Arc;

use millrace_driver::{LeaderTable, Schema};

use crate::row::job_columns;
use crate::time::NOW;

mod client;
mod fleet;
mod leader;
mod migration;
mod notification;
mod queue;
mod rate;
mod sequence;
mod sql;

pub(crate) use leader::LeaderQueries;
pub(crate) use sql::metadata_object;
use sql::{
    CONTAINS_ARRAY_DEPTH, FENCE_PATH, attempted_by_appended, json_contains, mask_holds,
    shallow_merge, unique_live,
};

/// The driver's SQL for one schema. Strings are `Arc<str>` so handing one to sqlx is a
/// reference-count bump, not a copy.
#[derive(Debug)]
pub(crate) struct Queries {
    pub(crate) schema: Schema,
    pub(crate) inspect: crate::executor::InspectQueries,
    pub(crate) sequence: sequence::SequenceQueries,
    pub(crate) rate: rate::RateQueries,
    pub(crate) job_insert_many: Arc<str>,
    pub(crate) job_insert_many_unique: Arc<str>,
    pub(crate) job_insert_fast: Arc<str>,
    pub(crate) job_get_live_by_keys: Arc<str>,
    pub(crate) job_get_by_id: Arc<str>,
    pub(crate) job_list_asc: Arc<str>,
    pub(crate) job_list_desc: Arc<str>,
    pub(crate) job_delete_many_asc: Arc<str>,
    pub(crate) job_delete_many_desc: Arc<str>,
    pub(crate) job_update_metadata: Arc<str>,
    pub(crate) job_cancel: Arc<str>,
    pub(crate) job_retry: Arc<str>,
    pub(crate) job_delete: Arc<str>,
    pub(crate) job_get_available: Arc<str>,
    pub(crate) job_get_available_limited: Arc<str>,
    pub(crate) job_start_by_id: Arc<str>,
    pub(crate) job_complete_many: Arc<str>,
    pub(crate) job_schedule: Arc<str>,
    pub(crate) job_return_orphans: Arc<str>,
    pub(crate) river_leader: LeaderQueries,
    pub(crate) client: client::ClientQueries,
    pub(crate) periodic: fleet::PeriodicQueries,
    pub(crate) persistent: fleet::PersistentQueries,
    pub(crate) queue: queue::QueueQueries,
    pub(crate) notification: notification::NotificationQueries,
    pub(crate) migration: migration::MigrationQueries,
    pub(crate) millrace_leader: LeaderQueries,
    pub(crate) job_get_running_of_clients: Arc<str>,
    pub(crate) job_get_stuck: Arc<str>,
    pub(crate) job_delete_finalized: Arc<str>,
    pub(crate) job_merge_metadata: Arc<str>,
    pub(crate) table_exists: Arc<str>,
}

impl Queries {
    pub(crate) fn new(schema: Schema) -> Self {
        let s = schema.fill("/*schema*/");
        let job = format!("{s}river_job");
        let cols = job_columns("");

        // Each job is one object of the JSON array ?1: args and metadata as JSON text (so
        // SQLite, not the driver, parses them), tags as an array, times as stored text or
        // null for now, the unique key in hex. The ORDER BY makes ids
        // rise in input order, which the unique insert relies on to pair rows with inputs.
        let insert_head = format!(
            r#"
INSERT INTO {job}
    (args, created_at, kind, max_attempts, metadata, priority, queue, scheduled_at, state, tags,
     unique_key, unique_states)
SELECT
    jsonb(p.value ->> '$.args'),
    coalesce(p.value ->> '$.created_at', {NOW}),
    p.value ->> '$.kind',
    p.value ->> '$.max_attempts',
    jsonb(p.value ->> '$.metadata'),
    p.value ->> '$.priority',
    p.value ->> '$.queue',
    coalesce(p.value ->> '$.scheduled_at', {NOW}),
    p.value ->> '$.state',
    jsonb(p.value -> '$.tags'),
    unhex(p.value ->> '$.unique_key'),
    p.value ->> '$.unique_states'
FROM json_each(?1) AS p
WHERE true
ORDER BY p.key"#
        );
        let job_insert_many = format!("{insert_head}\nRETURNING {cols}");
        // SQLite's RETURNING gives no row for a conflict that DO NOTHING skipped, and has no
        // way to return the conflicting row itself (PostgreSQL's DO UPDATE trick has no
        // `xmax` to tell the cases apart here); the driver reads the live rows of the skipped
        // keys afterwards, in the same transaction. Unlike River's SQLite drivers, this needs
        // no nonce in the inserted metadata.
        let job_insert_many_unique = format!(
            "{insert_head}\nON CONFLICT (unique_key) WHERE {} DO NOTHING\nRETURNING {cols}",
            unique_live("")
        );
        let job_insert_fast = insert_head.clone();
        let job_get_live_by_keys = format!(
            "SELECT {cols} FROM {job} \
             WHERE unique_key IN (SELECT unhex(value) FROM json_each(?1)) AND {}",
            unique_live("")
        );

        let job_get_by_id = format!("SELECT {cols} FROM {job} WHERE id = ?1");
        // Empty filters are bound as null; the others as JSON arrays (?9 and ?10, the metadata
        // and args a job must contain, as JSON objects; ?11 to ?14 as scalars). Every filter
        // is always present, so one prepared statement serves any combination.
        let filters = format!(
            r#"
WHERE (?1 IS NULL OR state IN (SELECT value FROM json_each(?1)))
  AND (?2 IS NULL OR kind IN (SELECT value FROM json_each(?2)))
  AND (?3 IS NULL OR queue IN (SELECT value FROM json_each(?3)))
  AND (?6 IS NULL OR id IN (SELECT value FROM json_each(?6)))
  AND (?7 IS NULL OR priority IN (SELECT value FROM json_each(?7)))
  AND (?8 IS NULL OR NOT EXISTS (
      SELECT 1 FROM json_each(?8) AS t
      WHERE t.value NOT IN (SELECT value FROM json_each({job}.tags))))
  AND (?9 IS NULL OR {contains})
  AND (?10 IS NULL OR {args_contains})
  AND (?11 IS NULL OR id >= ?11)
  AND (?12 IS NULL OR id <= ?12)
  AND (?13 IS NULL OR created_at >= ?13)
  AND (?14 IS NULL OR finalized_at >= ?14)"#,
            contains = json_contains(&format!("{job}.metadata"), "?9", CONTAINS_ARRAY_DEPTH),
            args_contains = json_contains(&format!("{job}.args"), "?10", CONTAINS_ARRAY_DEPTH),
        );
        let job_list = |cmp: &str, order: &str| -> Arc<str> {
            format!(
                r#"
SELECT {cols} FROM {job}{filters}
  AND (?4 IS NULL OR id {cmp} ?4)
ORDER BY id {order}
LIMIT ?5"#
            )
            .into()
        };
        // The rows come back in no particular order; the driver sorts them as listed.
        let job_delete_many = |cmp: &str, order: &str| -> Arc<str> {
            format!(
                r#"
DELETE FROM {job} WHERE id IN (
    SELECT id FROM {job}{filters}
      AND state <> 'running'
      AND (?4 IS NULL OR id {cmp} ?4)
    ORDER BY id {order}
    LIMIT ?5
)
RETURNING {cols}"#
            )
            .into()
        };

        // Mirrors River's JobCancel: a job that is not running is cancelled at once; a running
        // one records the request, and its client finalizes it when the worker returns.
        // Finalized jobs are left alone (the driver then reads the row as it is). ?2 is the
        // time as stored, ?3 the same time in RFC 3339 for the metadata.
        let job_cancel = format!(
            r#"
UPDATE {job} SET
    state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END,
    finalized_at = CASE WHEN state = 'running' THEN finalized_at ELSE ?2 END,
    metadata = jsonb_set({metadata}, '$.cancel_attempted_at', ?3)
WHERE id = ?1 AND state NOT IN ('cancelled', 'completed', 'discarded')
RETURNING {cols}"#,
            metadata = metadata_object("metadata"),
        );

        // Mirrors River's JobRetry: any job that is not running becomes available now; a job
        // that used all its attempts gets one more (never beyond smallint's range, as on
        // PostgreSQL).
        let job_retry = format!(
            r#"
UPDATE {job} SET
    state = 'available',
    scheduled_at = coalesce(?2, {NOW}),
    max_attempts = CASE WHEN attempt >= max_attempts AND max_attempts < 32767
                        THEN max_attempts + 1 ELSE max_attempts END,
    finalized_at = NULL
WHERE id = ?1 AND state <> 'running'
RETURNING {cols}"#
        );

        let job_delete =
            format!("DELETE FROM {job} WHERE id = ?1 AND state <> 'running' RETURNING {cols}");

        // Mirrors River's JobGetAvailable. SQLite has one writer at a time, so the write
        // transaction this runs in is the lock FOR UPDATE SKIP LOCKED takes on PostgreSQL.
        // The attempt never passes smallint's range, and attempted_by keeps its last 100.
        let job_get_available = format!(
            r#"
UPDATE {job} AS j SET
    state = 'running',
    attempt = min(j.attempt, 32766) + 1,
    attempted_at = coalesce(?2, {NOW}),
    attempted_by = {appended}
WHERE j.id IN (
    SELECT id FROM {job}
    WHERE state = 'available' AND queue = ?1 AND scheduled_at <= coalesce(?2, {NOW})
    ORDER BY priority ASC, scheduled_at ASC, id ASC
    LIMIT ?3
)
RETURNING {cols}"#,
            appended = attempted_by_appended("j", "?4"),
        );

        // The fetch of a queue with a concurrency limit. The write transaction it runs in
        // (BEGIN IMMEDIATE) is the lock PostgreSQL takes with an advisory lock: no other
        // fetch commits between the count of running rows and the update. Every due row is
        // ranked within its partition (the kind when ?7, and the JSON values of the args
        // fields named in the JSON array ?8), and a partition gives no more rows than the
        // global limit ?5 and the local limit ?6 (this client's rows: the last entry of
        // `attempted_by` is ?4) leave room for. Without partitions every row shares one key.
        let pkey = |t: &str| {
            format!(
                "json_array(CASE WHEN ?7 THEN {t}.kind END, \
                 (SELECT json_group_array({t}.args -> ('$.\"' || e.value || '\"') ORDER BY e.key) \
                  FROM json_each(?8) AS e))"
            )
        };
        let (running_key, ranked_key) = (pkey("r"), pkey("a"));
        //
        // When the queue's running rows plus the whole batch stay within the limits
        // (`loose`), no partition can reach its limit whatever the batch holds: the fetch
        // takes the head of the queue and ranks nothing. SQLite evaluates the uncorrelated
        // `loose` once, and a WHERE term that names no table before its loop, so the branch
        // not taken scans nothing.
        let job_get_available_limited = format!(
            r#"
WITH whole AS (
    SELECT (?5 IS NULL OR count(*) + ?3 <= ?5)
       AND (?6 IS NULL OR coalesce(sum(r.attempted_by ->> '$[#-1]' = ?4), 0) + ?3 <= ?6) AS loose
    FROM {job} AS r
    WHERE r.state = 'running' AND r.queue = ?1
),
running AS (
    SELECT {running_key} AS pkey, count(*) AS total,
           coalesce(sum(r.attempted_by ->> '$[#-1]' = ?4), 0) AS mine
    FROM {job} AS r
    WHERE r.state = 'running' AND r.queue = ?1 AND NOT (SELECT loose FROM whole)
    GROUP BY 1
),
ranked AS (
    SELECT id, priority, scheduled_at, pkey,
           row_number() OVER (PARTITION BY pkey ORDER BY priority, scheduled_at, id) AS n
    FROM (
        SELECT a.id, a.priority, a.scheduled_at, {ranked_key} AS pkey
        FROM {job} AS a
        WHERE a.state = 'available' AND a.queue = ?1 AND a.scheduled_at <= coalesce(?2, {NOW})
          AND NOT (SELECT loose FROM whole)
    )
),
chosen AS (
    SELECT id FROM (
        SELECT k.id FROM ranked AS k LEFT JOIN running AS u ON u.pkey = k.pkey
        WHERE (?5 IS NULL OR k.n <= ?5 - coalesce(u.total, 0))
          AND (?6 IS NULL OR k.n <= ?6 - coalesce(u.mine, 0))
        ORDER BY k.priority ASC, k.scheduled_at ASC, k.id ASC
        LIMIT ?3
    )
    UNION ALL
    SELECT id FROM (
        SELECT h.id FROM {job} AS h
        WHERE h.state = 'available' AND h.queue = ?1 AND h.scheduled_at <= coalesce(?2, {NOW})
          AND (SELECT loose FROM whole)
        ORDER BY h.priority ASC, h.scheduled_at ASC, h.id ASC
        LIMIT ?3
    )
)
UPDATE {job} AS j SET
    state = 'running',
    attempt = min(j.attempt, 32766) + 1,
    attempted_at = coalesce(?2, {NOW}),
    attempted_by = {appended}
WHERE j.id IN (SELECT id FROM chosen)
RETURNING {cols}"#,
            appended = attempted_by_appended("j", "?4"),
        );

        let job_start_by_id = format!(
            r#"
UPDATE {job} AS j SET
    state = 'running',
    attempt = min(j.attempt, 32766) + 1,
    attempted_at = {NOW},
    attempted_by = {appended}
WHERE j.id = ?1 AND j.state IN ('available', 'pending', 'retryable', 'scheduled')
RETURNING {cols}"#,
            appended = attempted_by_appended("j", "?2"),
        );

        // The state a completion ends in: a job whose cancel was requested is cancelled rather
        // than retried, snoozed or returned; a retry or snooze due within 5 s is available at
        // once (the fetch still waits for its time), as in River. `json_type` is not null
        // exactly when the key exists, as PostgreSQL's `?`.
        let end_state = "(CASE \
                WHEN p.state IN ('retryable', 'scheduled', 'available') \
                     AND json_type(j.metadata, '$.cancel_attempted_at') IS NOT NULL THEN 'cancelled' \
                WHEN p.state IN ('retryable', 'scheduled') \
                     AND p.scheduled_at <= strftime('%Y-%m-%d %H:%M:%f', 'now', '+5 seconds') \
                     THEN 'available' \
                ELSE p.state END)";
        // As on PostgreSQL: metadata is rewritten only by outcomes that write a key, and the
        // count starts again at 1 when `snoozes` is not a number.
        let metadata = metadata_object("j.metadata");
        let snoozed_metadata = format!(
            "(CASE WHEN p.snooze \
                THEN jsonb_set({metadata}, '$.snoozes', \
                    CASE WHEN json_type(j.metadata, '$.snoozes') IN ('integer', 'real') \
                         THEN j.metadata ->> '$.snoozes' ELSE 0 END + 1) \
                ELSE j.metadata END)"
        );
        let merged_metadata = shallow_merge(
            &format!("(CASE WHEN p.snooze THEN {snoozed_metadata} ELSE {metadata} END)"),
            "p.metadata_merge",
        );
        // ?1 holds one object per completion; `error` and `metadata_merge` are JSON text,
        // left out when absent. The unary `+` keeps SQLite from driving the join by the state
        // index, which scans the whole batch once per running job; each completion then finds
        // its row by primary key.
        let job_complete_many = format!(
            r#"
UPDATE {job} AS j SET
    state = {end_state},
    finalized_at = CASE WHEN {end_state} IN ('cancelled', 'completed', 'discarded')
                        THEN {NOW} END,
    scheduled_at = CASE WHEN p.scheduled_at IS NOT NULL THEN p.scheduled_at
                        WHEN p.state = 'available' THEN {NOW}
                        ELSE j.scheduled_at END,
    errors = CASE WHEN p.error IS NULL THEN j.errors
                  ELSE jsonb_insert(coalesce(j.errors, jsonb('[]')), '$[#]', json(p.error)) END,
    attempt = CASE WHEN p.give_back THEN max(j.attempt - 1, 0) ELSE j.attempt END,
    metadata = CASE WHEN p.metadata_merge IS NULL THEN {snoozed_metadata}
                    ELSE {merged_metadata} END
FROM (
    SELECT
        e.value ->> '$.id' AS id,
        e.value ->> '$.attempt' AS attempt,
        e.value ->> '$.state' AS state,
        e.value ->> '$.scheduled_at' AS scheduled_at,
        e.value ->> '$.error' AS error,
        e.value ->> '$.give_back' AS give_back,
        e.value ->> '$.snooze' AS snooze,
        e.value ->> '$.metadata_merge' AS metadata_merge
    FROM json_each(?1) AS e
) AS p
WHERE j.id = p.id AND +j.state = 'running' AND j.attempt = p.attempt
RETURNING id, state, metadata ->> '$."millrace:seq"' AS seq"#
        );

        // Mirrors River's JobScheduler: due jobs become available, except that one whose
        // unique key another live job took meanwhile is discarded and marked.
        let job_schedule = format!(
            r#"
UPDATE {job} AS j SET
    state = CASE WHEN d.conflict THEN 'discarded' ELSE 'available' END,
    finalized_at = CASE WHEN d.conflict THEN {NOW} END,
    metadata = CASE WHEN d.conflict
                    THEN jsonb_set({metadata}, '$.unique_key_conflict', 'scheduler_discarded')
                    ELSE j.metadata END
FROM (
    SELECT
        c.id,
        c.unique_key IS NOT NULL AND c.unique_states IS NOT NULL
            AND {available_in_mask}
            AND EXISTS (
                SELECT 1 FROM {job} AS o
                WHERE o.unique_key = c.unique_key AND o.id <> c.id AND {o_live}
            ) AS conflict
    FROM {job} AS c
    WHERE c.state IN ('retryable', 'scheduled') AND c.scheduled_at <= coalesce(?1, {NOW})
    ORDER BY c.priority, c.scheduled_at, c.id
    LIMIT ?2
) AS d
WHERE j.id = d.id
RETURNING id, queue, state"#,
            available_in_mask = mask_holds("c.unique_states", "'available'"),
            o_live = unique_live("o."),
        );

        let job_return_orphans = format!(
            r#"
UPDATE {job} SET state = 'available', attempt = max(attempt - 1, 0), scheduled_at = {NOW}
WHERE state = 'running' AND queue = ?2
  AND attempted_by ->> '$[#-1]' = ?1
  AND id NOT IN (SELECT value FROM json_each(?3))"#
        );

        let client = format!("{s}millrace_client");
        let job_get_running_of_clients = format!(
            r#"
SELECT {cols} FROM {job}
WHERE state = 'running' AND attempted_by ->> '$[#-1]' IN (SELECT value FROM json_each(?1))
  AND substr(kind, 1, length(?3)) <> ?3
ORDER BY id
LIMIT ?2"#
        );
        let job_get_stuck = format!(
            r#"
SELECT {cols} FROM {job} AS j
WHERE state = 'running' AND attempted_at < ?1
  AND NOT EXISTS (
      SELECT 1 FROM {client} AS c
      WHERE c.id = j.attempted_by ->> '$[#-1]' AND c.lease_expires_at > {NOW}
  )
ORDER BY id
LIMIT ?2"#
        );
        // A state kept for ever is bound as null, which no finalized_at is older than.
        let job_delete_finalized = format!(
            r#"
DELETE FROM {job} WHERE id IN (
    SELECT id FROM {job}
    WHERE (state = 'completed' AND finalized_at < ?1)
       OR (state = 'cancelled' AND finalized_at < ?2)
       OR (state = 'discarded' AND finalized_at < ?3)
    ORDER BY id
    LIMIT ?4
)"#
        );

        let job_update_metadata = format!(
            "UPDATE {job} AS j SET metadata = {merged} WHERE j.id = ?1 RETURNING {cols}",
            merged = shallow_merge(&metadata_object("j.metadata"), "?2"),
        );
        let job_merge_metadata = format!(
            "UPDATE {job} AS j SET metadata = {merged} \
             WHERE j.id = ?1 AND j.state = 'running' AND j.attempt = ?2",
            merged = shallow_merge(&metadata_object("j.metadata"), "?3"),
        );

        let table_exists = format!(
            "SELECT EXISTS (SELECT 1 FROM {s}sqlite_master WHERE type = 'table' AND name = ?1)"
        );

        Queries {
            inspect: crate::executor::InspectQueries::new(&s, &filters),
            sequence: sequence::SequenceQueries::new(&schema),
            rate: rate::RateQueries::new(&schema),
            job_insert_many: job_insert_many.into(),
            job_insert_many_unique: job_insert_many_unique.into(),
            job_insert_fast: job_insert_fast.into(),
            job_get_live_by_keys: job_get_live_by_keys.into(),
            job_get_by_id: job_get_by_id.into(),
            job_list_asc: job_list(">", "ASC"),
            job_list_desc: job_list("<", "DESC"),
            job_delete_many_asc: job_delete_many(">", "ASC"),
            job_delete_many_desc: job_delete_many("<", "DESC"),
            job_update_metadata: job_update_metadata.into(),
            job_cancel: job_cancel.into(),
            job_retry: job_retry.into(),
            job_delete: job_delete.into(),
            job_get_available: job_get_available.into(),
            job_get_available_limited: job_get_available_limited.into(),
            job_start_by_id: job_start_by_id.into(),
            job_complete_many: job_complete_many.into(),
            job_schedule: job_schedule.into(),
            job_return_orphans: job_return_orphans.into(),
            client: client::ClientQueries::new(&s, &job),
            periodic: fleet::PeriodicQueries::new(&s),
            persistent: fleet::PersistentQueries::new(&job, &cols),
            queue: queue::QueueQueries::new(&s),
            notification: notification::NotificationQueries::new(&s),
            migration: migration::MigrationQueries::new(&s),
            river_leader: LeaderQueries::new(&format!("{s}river_leader")),
            millrace_leader: LeaderQueries::new(&format!("{s}millrace_leader")),
            job_get_running_of_clients: job_get_running_of_clients.into(),
            job_get_stuck: job_get_stuck.into(),
            job_delete_finalized: job_delete_finalized.into(),
            job_merge_metadata: job_merge_metadata.into(),
            table_exists: table_exists.into(),
            schema,
        }
    }
}

impl Queries {
    pub(crate) fn leader(&self, table: LeaderTable) -> &LeaderQueries {
        match table {
            LeaderTable::River => &self.river_leader,
            LeaderTable::Millrace => &self.millrace_leader,
        }
    }
}
