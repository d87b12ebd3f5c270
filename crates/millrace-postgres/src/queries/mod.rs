//! Every statement of the driver, with the schema filled in once when the driver is built.

use std::sync::Arc;

use millrace_driver::{REPLACED_METADATA_KEY, Schema};

use crate::row::{fetch_columns, job_columns};

mod client;
mod fleet;
mod leader;
mod migration;
mod queue;
mod rate;
mod sequence;

pub(crate) use leader::LeaderQueries;

/// [`millrace_driver::PERSISTENT_FENCE_KEY`] as a SQL string literal: the one place this driver
/// spells the persistent fence's metadata key (a test checks the two agree).
pub(crate) const FENCE_KEY: &str = "'millrace:fence'";

/// `metadata` (a jsonb expression) as an object to merge keys into. `jsonb ||` on an array,
/// a string, a number or `null` appends instead of merging, so every merge would grow the
/// value and the merged key could never be read back; such a value is kept whole under
/// [`REPLACED_METADATA_KEY`] instead.
pub(crate) fn metadata_object(metadata: &str) -> String {
    format!(
        "(CASE WHEN jsonb_typeof({metadata}) = 'object' THEN {metadata} \
         ELSE jsonb_build_object('{REPLACED_METADATA_KEY}', {metadata}) END)"
    )
}

/// The driver's SQL for one schema. Strings are `Arc<str>` so handing one to sqlx is a
/// reference-count bump, not a copy.
#[derive(Debug)]
pub(crate) struct Queries {
    pub(crate) schema: Schema,
    pub(crate) inspect: crate::executor::InspectQueries,
    pub(crate) sequence: sequence::SequenceQueries,
    pub(crate) rate: rate::RateQueries,
    pub(crate) job_table: String,
    pub(crate) job_insert_many: Arc<str>,
    pub(crate) job_insert_many_unique: Arc<str>,
    pub(crate) job_get_by_id: Arc<str>,
    pub(crate) job_list_asc: Arc<str>,
    pub(crate) job_delete_many_asc: Arc<str>,
    pub(crate) job_delete_many_desc: Arc<str>,
    pub(crate) job_update_metadata: Arc<str>,
    pub(crate) job_list_desc: Arc<str>,
    pub(crate) job_cancel: Arc<str>,
    pub(crate) job_retry: Arc<str>,
    pub(crate) job_delete: Arc<str>,
    pub(crate) notify_many: Arc<str>,
    pub(crate) river_leader: LeaderQueries,
    pub(crate) client: client::ClientQueries,
    pub(crate) periodic: fleet::PeriodicQueries,
    pub(crate) persistent: fleet::PersistentQueries,
    pub(crate) queue: queue::QueueQueries,
    pub(crate) migration: migration::MigrationQueries,
    pub(crate) millrace_leader: LeaderQueries,
    pub(crate) job_get_running_of_clients: Arc<str>,
    pub(crate) job_get_stuck: Arc<str>,
    pub(crate) job_delete_finalized: Arc<str>,
    pub(crate) job_merge_metadata: Arc<str>,
    pub(crate) job_get_available: Arc<str>,
    pub(crate) job_get_available_capped: Arc<str>,
    pub(crate) job_get_available_loose: Arc<str>,
    pub(crate) job_get_available_partitioned: Arc<str>,
    pub(crate) limit_lock: Arc<str>,
    pub(crate) job_complete_many: Arc<str>,
    pub(crate) job_complete_completed: Arc<str>,
    pub(crate) job_start_by_id: Arc<str>,
    pub(crate) job_schedule: Arc<str>,
    pub(crate) job_return_orphans: Arc<str>,
}

impl Queries {
    pub(crate) fn new(schema: Schema) -> Self {
        let s = schema.fill("/*schema*/");
        let job = format!("{s}river_job");
        let cols = job_columns("");
        let j_cols = job_columns("j.");
        let fetch_cols = fetch_columns("j.");

        // Rows go in as parallel arrays, one element per job. Tags travel as one comma-joined
        // string per job because PostgreSQL cannot unnest an array of arrays; tags never hold
        // commas (validated at insert).
        let insert_head = format!(
            r#"
INSERT INTO {job} AS j
    (args, created_at, kind, max_attempts, metadata, priority, queue, scheduled_at, state, tags,
     unique_key, unique_states)
SELECT
    p.args,
    coalesce(p.created_at, now()),
    p.kind,
    p.max_attempts,
    p.metadata,
    p.priority,
    p.queue,
    coalesce(p.scheduled_at, now()),
    p.state::{s}river_job_state,
    string_to_array(p.tags, ','),
    p.unique_key,
    p.unique_states::bit(8)
FROM unnest(
    $1::jsonb[], $2::timestamptz[], $3::text[], $4::smallint[], $5::jsonb[], $6::smallint[],
    $7::text[], $8::timestamptz[], $9::text[], $10::text[], $11::bytea[], $12::int[]
) AS p(args, created_at, kind, max_attempts, metadata, priority, queue, scheduled_at, state,
       tags, unique_key, unique_states)"#
        );
        // Without unique keys every row is new and holds what was sent, so only the values
        // PostgreSQL chose come back; the executor builds the rest of each row from its
        // params. Sending back and decoding every column cost about a fifth of the statement.
        let job_insert_many =
            format!("{insert_head}\nRETURNING j.id, j.created_at, j.scheduled_at");
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
        // Every filter is always present, off when its parameter is empty or NULL, so one
        // prepared statement serves any combination.
        let filters = format!(
            r#"
WHERE (cardinality($1::text[]) = 0 OR state = ANY($1::text[]::{s}river_job_state[]))
  AND (cardinality($2::text[]) = 0 OR kind = ANY($2::text[]))
  AND (cardinality($3::text[]) = 0 OR queue = ANY($3::text[]))
  AND (cardinality($6::bigint[]) = 0 OR id = ANY($6::bigint[]))
  AND (cardinality($7::smallint[]) = 0 OR priority = ANY($7::smallint[]))
  AND (cardinality($8::text[]) = 0 OR tags @> $8::varchar(255)[])
  AND ($9::jsonb IS NULL OR metadata @> $9::jsonb)
  AND ($10::jsonb IS NULL OR args @> $10::jsonb)
  AND ($11::bigint IS NULL OR id >= $11::bigint)
  AND ($12::bigint IS NULL OR id <= $12::bigint)
  AND ($13::timestamptz IS NULL OR created_at >= $13::timestamptz)
  AND ($14::timestamptz IS NULL OR finalized_at >= $14::timestamptz)"#
        );
        let job_list = |cmp: &str, order: &str| -> Arc<str> {
            format!(
                r#"
SELECT {cols} FROM {job}{filters}
  AND ($4::bigint IS NULL OR id {cmp} $4::bigint)
ORDER BY id {order}
LIMIT $5"#
            )
            .into()
        };
        let job_delete_many = |cmp: &str, order: &str| -> Arc<str> {
            format!(
                r#"
WITH doomed AS (
    SELECT id FROM {job}{filters}
      AND state <> 'running'
      AND ($4::bigint IS NULL OR id {cmp} $4::bigint)
    ORDER BY id {order}
    LIMIT $5
    FOR UPDATE SKIP LOCKED
),
deleted AS (
    DELETE FROM {job} WHERE id IN (SELECT id FROM doomed) RETURNING {cols}
)
SELECT * FROM deleted ORDER BY id {order}"#
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
        metadata = {j_metadata}
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
SELECT {cols} FROM {job} WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM updated)"#,
            j_metadata = metadata_object("j.metadata"),
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

        // Mirrors River's JobGetAvailable. The attempt never passes smallint's range, and
        // attempted_by keeps its last 100 entries.
        let job_get_available = format!(
            r#"
WITH locked AS (
    SELECT id FROM {job}
    WHERE state = 'available' AND queue = $1 AND scheduled_at <= coalesce($2::timestamptz, now())
    ORDER BY priority ASC, scheduled_at ASC, id ASC
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE {job} AS j SET
    state = 'running',
    attempt = least(j.attempt, 32766) + 1,
    attempted_at = coalesce($2::timestamptz, now()),
    attempted_by = array_append(j.attempted_by[greatest(cardinality(j.attempted_by) - 98, 1):], $4::text)
FROM locked
WHERE j.id = locked.id
RETURNING {fetch_cols}, j.unique_states"#
        );

        // The fetch of a queue with an unpartitioned concurrency limit: the same as above,
        // with the LIMIT lowered to what the limits leave room for. It runs after
        // `limit_lock`, in the same transaction, so the running rows it counts are every
        // other limited fetch's committed result (see `job_get_available_limited`).
        // $5 is the global limit and $6 the local one (the fetching client's own running
        // rows: those whose last `attempted_by` entry is $4); null means none.
        let update_fetched = format!(
            r#"
UPDATE {job} AS j SET
    state = 'running',
    attempt = least(j.attempt, 32766) + 1,
    attempted_at = coalesce($2::timestamptz, now()),
    attempted_by = array_append(j.attempted_by[greatest(cardinality(j.attempted_by) - 98, 1):], $4::text)
FROM locked
WHERE j.id = locked.id
RETURNING {fetch_cols}, j.unique_states"#
        );
        let mine = "r.attempted_by[cardinality(r.attempted_by)] = $4::text";
        // A fetch of the head of the queue whose LIMIT is `limit`, an expression over the
        // queue's running rows (`total`) and this client's (`mine`).
        let head_fetch = |limit: &str| {
            format!(
                r#"
WITH running AS (
    SELECT count(*) AS total, count(*) FILTER (WHERE {mine}) AS mine
    FROM {job} AS r
    WHERE r.state = 'running' AND r.queue = $1
),
locked AS (
    SELECT id FROM {job}
    WHERE state = 'available' AND queue = $1 AND scheduled_at <= coalesce($2::timestamptz, now())
    ORDER BY priority ASC, scheduled_at ASC, id ASC
    LIMIT (SELECT {limit} FROM running)
    FOR UPDATE SKIP LOCKED
){update_fetched}"#
            )
        };
        let job_get_available_capped = head_fetch(
            "greatest(0, least($3::bigint,
                                    coalesce($5::bigint - total, $3::bigint),
                                    coalesce($6::bigint - mine, $3::bigint)))",
        );
        // The first pass of a partitioned fetch: the capped fetch when the queue's running
        // rows and the whole batch together stay within the limits, since then no partition
        // can pass them whatever the batch holds, and nothing otherwise (the partitioned
        // passes follow). A limit that does not bind thus costs one count of the running
        // rows, as an unpartitioned one does, and ranks nothing.
        let job_get_available_loose = head_fetch(
            "CASE WHEN ($5::bigint IS NULL OR total + $3::bigint <= $5::bigint)
                        AND ($6::bigint IS NULL OR mine + $3::bigint <= $6::bigint)
                       THEN $3::bigint ELSE 0 END",
        );
        // The partitioned fetch: the due available rows of the queue are ranked within their
        // partition, and a partition gives no more rows than its running count leaves room
        // for. $9 bounds how many rows, in fetch order, are ranked: the executor first ranks
        // a window (cheap: the head of the fetch index), and only when that window cannot
        // fill the batch ranks every waiting row (`LIMIT NULL`), which is what keeps a
        // saturated partition at the head of the queue from starving the others. The
        // partition key is a JSON array: the kind (when $7) and the values of the args
        // fields named in $8, in order; a missing field is null. Both CTEs are materialized:
        // inlined, the planner (which sees one row where there are hundreds) joined them in
        // a nested loop that recomputed every partition key per pair, a second per fetch.
        let pkey = |t: &str| {
            format!(
                "jsonb_build_array(CASE WHEN $7::boolean THEN {t}.kind END, \
                 (SELECT coalesce(jsonb_agg({t}.args -> f ORDER BY n), '[]'::jsonb) \
                  FROM unnest($8::text[]) WITH ORDINALITY AS u(f, n)))"
            )
        };
        let (running_key, ranked_key) = (pkey("r"), pkey("a"));
        let job_get_available_partitioned = format!(
            r#"
WITH running AS MATERIALIZED (
    SELECT {running_key} AS pkey, count(*) AS total, count(*) FILTER (WHERE {mine}) AS mine
    FROM {job} AS r
    WHERE r.state = 'running' AND r.queue = $1
    GROUP BY 1
),
ranked AS MATERIALIZED (
    SELECT id, priority, scheduled_at, pkey,
           row_number() OVER (PARTITION BY pkey ORDER BY priority, scheduled_at, id) AS n
    FROM (
        SELECT a.id, a.priority, a.scheduled_at, {ranked_key} AS pkey
        FROM {job} AS a
        WHERE a.state = 'available' AND a.queue = $1
          AND a.scheduled_at <= coalesce($2::timestamptz, now())
        ORDER BY a.priority ASC, a.scheduled_at ASC, a.id ASC
        LIMIT $9::bigint
    ) AS waiting
),
chosen AS (
    SELECT k.id FROM ranked AS k LEFT JOIN running AS u ON u.pkey = k.pkey
    WHERE ($5::int IS NULL OR k.n <= $5::int - coalesce(u.total, 0))
      AND ($6::int IS NULL OR k.n <= $6::int - coalesce(u.mine, 0))
    ORDER BY k.priority ASC, k.scheduled_at ASC, k.id ASC
    LIMIT $3
),
locked AS (
    SELECT c.id FROM {job} AS c
    WHERE c.id IN (SELECT id FROM chosen) AND c.state = 'available'
    FOR UPDATE SKIP LOCKED
){update_fetched}"#
        );
        // Serializes the limited fetches of one queue in one schema until their transaction
        // ends. The key is a hash of a bound string, so no name is spliced into SQL.
        let limit_lock = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))".to_owned();

        // The common case, a batch of successes, without the general statement's CASEs and
        // metadata rewrite: less work per row for PostgreSQL on the hot path. Rows are found
        // through the primary key, and the attempt fence is one value per statement (the
        // executor groups a batch by attempt; nearly always there is one group). Measured with
        // `EXPLAIN ANALYZE` on 2,000 to 5,000 jobs, every shape that fences per row depends on
        // the plan: a join with the unnested pairs becomes a seq-scan hash join (38 ms) or,
        // on a table without statistics, a nested loop that compares every pair with every
        // row (1.7 s); `id * 65536 + attempt = ANY(keys)` is hashed only in a custom plan, and
        // the generic plan a prepared statement settles on searches the array for every row.
        let job_complete_completed = format!(
            r#"
UPDATE {job} AS j SET state = 'completed', finalized_at = now()
WHERE j.id = ANY($1::bigint[]) AND j.state = 'running' AND j.attempt = $2::smallint
RETURNING j.id, j.metadata ->> 'millrace:seq' AS seq"#
        );
        let job_start_by_id = format!(
            r#"
UPDATE {job} AS j SET
    state = 'running',
    attempt = least(j.attempt, 32766) + 1,
    attempted_at = now(),
    attempted_by = array_append(j.attempted_by[greatest(cardinality(j.attempted_by) - 98, 1):], $2::text)
WHERE j.id = $1 AND j.state IN ('available', 'pending', 'retryable', 'scheduled')
RETURNING {j_cols}"#
        );

        // The state a completion ends in: a job whose cancel was requested is cancelled rather
        // than retried, snoozed or returned; a retry or snooze due within 5 s is available at
        // once (the fetch still waits for its time), as in River.
        let end_state = "CASE \
            WHEN p.state IN ('retryable', 'scheduled', 'available') AND jsonb_typeof(j.metadata) = 'object' \
                 AND j.metadata ? 'cancel_attempted_at' THEN 'cancelled' \
            WHEN p.state IN ('retryable', 'scheduled') AND p.scheduled_at <= now() + interval '5 seconds' THEN 'available' \
            ELSE p.state END";
        // Metadata is rewritten only by outcomes that write a key (a snooze's count, output,
        // a rescue's count), so a retry leaves a foreign value as it is. The count starts
        // again at 1 when `snoozes` is not a number, rather than failing the whole batch on
        // a cast.
        let metadata = metadata_object("j.metadata");
        let job_complete_many = format!(
            r#"
UPDATE {job} AS j SET
    state = ({end_state})::{s}river_job_state,
    finalized_at = CASE WHEN ({end_state}) IN ('cancelled', 'completed', 'discarded') THEN now() END,
    scheduled_at = CASE WHEN p.scheduled_at IS NOT NULL THEN p.scheduled_at
                        WHEN p.state = 'available' THEN now()
                        ELSE j.scheduled_at END,
    errors = CASE WHEN p.error IS NULL THEN j.errors ELSE array_append(j.errors, p.error) END,
    attempt = CASE WHEN p.give_back THEN greatest(j.attempt - 1, 0) ELSE j.attempt END,
    metadata = CASE WHEN p.snooze
                    THEN {metadata} || jsonb_build_object('snoozes',
                        CASE WHEN jsonb_typeof(j.metadata -> 'snoozes') = 'number'
                             THEN (j.metadata ->> 'snoozes')::numeric ELSE 0 END + 1)
                         || coalesce(p.metadata_merge, '{{}}'::jsonb)
                    WHEN p.metadata_merge IS NOT NULL THEN {metadata} || p.metadata_merge
                    ELSE j.metadata END
FROM unnest($1::bigint[], $2::smallint[], $3::text[], $4::timestamptz[], $5::jsonb[],
            $6::boolean[], $7::boolean[], $8::jsonb[])
    AS p(id, attempt, state, scheduled_at, error, give_back, snooze, metadata_merge)
WHERE j.id = p.id AND j.state = 'running' AND j.attempt = p.attempt
RETURNING j.id, j.state::text AS state, j.metadata ->> 'millrace:seq' AS seq"#
        );

        // Mirrors River's JobScheduler: due jobs become available, except that one whose
        // unique key another live job took meanwhile is discarded and marked.
        let job_schedule = format!(
            r#"
WITH due AS (
    SELECT id, unique_key, unique_states FROM {job}
    WHERE state IN ('retryable', 'scheduled') AND scheduled_at <= coalesce($1::timestamptz, now())
    ORDER BY priority, scheduled_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
conflicts AS (
    SELECT d.id FROM due AS d
    WHERE d.unique_key IS NOT NULL AND d.unique_states IS NOT NULL
      AND {s}river_job_state_in_bitmask(d.unique_states, 'available')
      AND EXISTS (
          SELECT 1 FROM {job} AS o
          WHERE o.unique_key = d.unique_key AND o.id <> d.id
            AND o.unique_states IS NOT NULL
            AND {s}river_job_state_in_bitmask(o.unique_states, o.state)
      )
)
UPDATE {job} AS j SET
    state = CASE WHEN c.id IS NULL THEN 'available' ELSE 'discarded' END::{s}river_job_state,
    finalized_at = CASE WHEN c.id IS NULL THEN NULL ELSE now() END,
    metadata = CASE WHEN c.id IS NULL THEN j.metadata
                    ELSE {metadata} || '{{"unique_key_conflict": "scheduler_discarded"}}'::jsonb END
FROM due AS d LEFT JOIN conflicts AS c ON c.id = d.id
WHERE j.id = d.id
RETURNING j.id, j.queue, j.state::text AS state"#
        );

        let job_return_orphans = format!(
            r#"
UPDATE {job} SET state = 'available', attempt = greatest(attempt - 1, 0), scheduled_at = now()
WHERE state = 'running' AND queue = $2
  AND attempted_by[cardinality(attempted_by)] = $1
  AND NOT (id = ANY($3::bigint[]))"#
        );

        let client = format!("{s}millrace_client");
        let job_get_running_of_clients = format!(
            r#"
SELECT {cols} FROM {job}
WHERE state = 'running' AND attempted_by[cardinality(attempted_by)] = ANY($1::text[])
  AND NOT starts_with(kind, $3)
ORDER BY id
LIMIT $2"#
        );
        let job_get_stuck = format!(
            r#"
SELECT {cols} FROM {job} AS j
WHERE state = 'running' AND attempted_at < $1
  AND NOT EXISTS (
      SELECT 1 FROM {client} AS c
      WHERE c.id = j.attempted_by[cardinality(j.attempted_by)] AND c.lease_expires_at > now()
  )
ORDER BY id
LIMIT $2"#
        );
        let job_delete_finalized = format!(
            r#"
WITH doomed AS (
    SELECT id FROM {job}
    WHERE (state = 'completed' AND finalized_at < $1)
       OR (state = 'cancelled' AND finalized_at < $2)
       OR (state = 'discarded' AND finalized_at < $3)
    ORDER BY id
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
DELETE FROM {job} WHERE id IN (SELECT id FROM doomed)"#
        );
        let job_merge_metadata = format!(
            "UPDATE {job} AS j SET metadata = {metadata} || $3::jsonb \
             WHERE j.id = $1 AND j.state = 'running' AND j.attempt = $2"
        );

        Queries {
            inspect: crate::executor::InspectQueries::new(&s, &filters),
            sequence: sequence::SequenceQueries::new(&schema),
            rate: rate::RateQueries::new(&schema),
            job_merge_metadata: job_merge_metadata.into(),
            client: client::ClientQueries::new(&s, &job),
            periodic: fleet::PeriodicQueries::new(&s),
            persistent: fleet::PersistentQueries::new(&job, &j_cols),
            queue: queue::QueueQueries::new(&s),
            migration: migration::MigrationQueries::new(&s),
            river_leader: LeaderQueries::new(&format!("{s}river_leader"), true),
            millrace_leader: LeaderQueries::new(&format!("{s}millrace_leader"), false),
            job_get_running_of_clients: job_get_running_of_clients.into(),
            job_get_stuck: job_get_stuck.into(),
            job_delete_finalized: job_delete_finalized.into(),
            job_get_available: job_get_available.into(),
            job_get_available_capped: job_get_available_capped.into(),
            job_get_available_loose: job_get_available_loose.into(),
            job_get_available_partitioned: job_get_available_partitioned.into(),
            limit_lock: limit_lock.into(),
            job_complete_many: job_complete_many.into(),
            job_complete_completed: job_complete_completed.into(),
            job_start_by_id: job_start_by_id.into(),
            job_schedule: job_schedule.into(),
            job_return_orphans: job_return_orphans.into(),
            job_insert_many: job_insert_many.into(),
            job_insert_many_unique: job_insert_many_unique.into(),
            job_get_by_id: job_get_by_id.into(),
            job_list_asc: job_list(">", "ASC"),
            job_delete_many_asc: job_delete_many(">", "ASC"),
            job_delete_many_desc: job_delete_many("<", "DESC"),
            job_update_metadata: format!(
                "UPDATE {job} AS j SET metadata = {metadata} || $2::jsonb WHERE j.id = $1 RETURNING {j_cols}"
            )
            .into(),
            job_list_desc: job_list("<", "DESC"),
            job_cancel: job_cancel.into(),
            job_retry: job_retry.into(),
            job_delete: job_delete.into(),
            notify_many: notify_many.into(),
            job_table: job,
            schema,
        }
    }
}

impl Queries {
    pub(crate) fn leader(&self, table: millrace_driver::LeaderTable) -> &LeaderQueries {
        match table {
            millrace_driver::LeaderTable::River => &self.river_leader,
            millrace_driver::LeaderTable::Millrace => &self.millrace_leader,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fence_key_literal_spells_the_drivers_constant() {
        let quoted = format!("'{}'", millrace_driver::PERSISTENT_FENCE_KEY);
        assert_eq!(super::FENCE_KEY, quoted);
    }
}
