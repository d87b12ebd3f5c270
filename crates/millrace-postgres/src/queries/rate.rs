//! The statements of rate limits (issue 19): the rate-limited fetches, which log what they
//! let through in `millrace_rate_limit_fetch`, and the producer's wait for a full window.
//!
//! Each fetch runs after the queue's limit lock (see `job_get_available_limited`), in the
//! same transaction, so the log rows it counts are every other limited fetch's committed
//! result. The window is sliding: a fetch at time `t` counts the partition's rows logged in
//! `(t - period, t]`. `t` is `statement_timestamp()`, taken after the lock was granted, so
//! times in the log rise in the order the fetches were serialized (`now()` would be the
//! transaction's start, from before a racing fetch committed).

use std::sync::Arc;

use millrace_driver::Schema;

use crate::row::fetch_columns;

/// The statements of rate-limited fetches.
#[derive(Debug, Clone)]
pub(crate) struct RateQueries {
    /// A rate limit without partitions, with no concurrency limit or an unpartitioned one:
    /// the plain fetch with its LIMIT lowered to what every limit leaves room for.
    pub(crate) fetch_capped: Arc<str>,
    /// Any other combination: the due rows ranked within their concurrency partition, then
    /// the survivors within their rate partition.
    pub(crate) fetch_partitioned: Arc<str>,
    /// The time until the first full partition of a queue has room, in microseconds.
    pub(crate) wait: Arc<str>,
}

impl RateQueries {
    pub(crate) fn new(schema: &Schema) -> Self {
        let s = schema.fill("/*schema*/");
        let job = format!("{s}river_job");
        let log = format!("{s}millrace_rate_limit_fetch");
        let fetch_cols = fetch_columns("j.");
        let mine = "r.attempted_by[cardinality(r.attempted_by)] = $4::text";
        // $1 queue, $2 now (None: the server's), $3 the most rows, $4 the client id, $5 and
        // $6 the global and local concurrency limits (null: none), $7 the rate limit, $8 its
        // period in microseconds.
        let at = "coalesce($2::timestamptz, statement_timestamp())";
        let start = format!("({at} - $8::bigint * interval '1 microsecond')");
        let head = format!(
            r#"
WITH pruned AS (
    DELETE FROM {log} WHERE queue = $1 AND fetched_at <= {start}
)"#
        );
        let update = format!(
            r#"
updated AS (
    UPDATE {job} AS j SET
        state = 'running',
        attempt = least(j.attempt, 32766) + 1,
        attempted_at = coalesce($2::timestamptz, now()),
        attempted_by = array_append(j.attempted_by[greatest(cardinality(j.attempted_by) - 98, 1):], $4::text)
    FROM locked
    WHERE j.id = locked.id
    RETURNING {fetch_cols}, j.unique_states
)"#
        );
        // Unpartitioned, every row of the log counts: rows left by a partitioned
        // configuration count too, which errs on the side of the limit.
        let fetch_capped = format!(
            r#"{head},
running AS (
    SELECT count(*) AS total, count(*) FILTER (WHERE {mine}) AS mine
    FROM {job} AS r
    WHERE r.state = 'running' AND r.queue = $1
      AND ($5::bigint IS NOT NULL OR $6::bigint IS NOT NULL)
),
recent AS (
    SELECT coalesce(sum(fetched), 0) AS fetched FROM {log} WHERE queue = $1 AND fetched_at > {start}
),
locked AS (
    SELECT id FROM {job}
    WHERE state = 'available' AND queue = $1 AND scheduled_at <= coalesce($2::timestamptz, now())
    ORDER BY priority ASC, scheduled_at ASC, id ASC
    LIMIT (SELECT greatest(0, least($3::bigint,
                                    coalesce($5::bigint - total, $3::bigint),
                                    coalesce($6::bigint - mine, $3::bigint),
                                    $7::bigint - fetched))
           FROM running, recent)
    FOR UPDATE SKIP LOCKED
),{update},
logged AS (
    INSERT INTO {log} (queue, partition_key, fetched_at, fetched)
    SELECT $1, jsonb_build_array(NULL, '[]'::jsonb), {at}, count(*) FROM updated
    HAVING count(*) > 0
)
SELECT * FROM updated"#
        );
        // Partition keys as the concurrency limits' fetch builds them: a JSON array of the
        // kind (when the flag) and the values of the named args fields, null when missing.
        let key = |t: &str, kind: &str, fields: &str| {
            format!(
                "jsonb_build_array(CASE WHEN {kind}::boolean THEN {t}.kind END, \
                 (SELECT coalesce(jsonb_agg({t}.args -> f ORDER BY n), '[]'::jsonb) \
                  FROM unnest({fields}::text[]) WITH ORDINALITY AS u(f, n)))"
            )
        };
        // $9 and $10 the concurrency partition's kind flag and fields, $11 how many waiting
        // rows to rank (null: all, as the concurrency limits' second pass), $12 and $13 the
        // rate partition's kind flag and fields. The rate rank is taken among the rows the
        // concurrency limit lets through, so rows it holds back take no rate room.
        let running_key = key("r", "$9", "$10");
        let (ckey, rkey) = (key("a", "$9", "$10"), key("a", "$12", "$13"));
        let fetch_partitioned = format!(
            r#"{head},
running AS MATERIALIZED (
    SELECT {running_key} AS pkey, count(*) AS total, count(*) FILTER (WHERE {mine}) AS mine
    FROM {job} AS r
    WHERE r.state = 'running' AND r.queue = $1
      AND ($5::int IS NOT NULL OR $6::int IS NOT NULL)
    GROUP BY 1
),
recent AS MATERIALIZED (
    SELECT partition_key AS rkey, sum(fetched) AS fetched
    FROM {log} WHERE queue = $1 AND fetched_at > {start}
    GROUP BY 1
),
waiting AS MATERIALIZED (
    SELECT a.id, a.priority, a.scheduled_at, {ckey} AS pkey, {rkey} AS rkey
    FROM {job} AS a
    WHERE a.state = 'available' AND a.queue = $1
      AND a.scheduled_at <= coalesce($2::timestamptz, now())
    ORDER BY a.priority ASC, a.scheduled_at ASC, a.id ASC
    LIMIT $11::bigint
),
allowed AS (
    SELECT k.id, k.priority, k.scheduled_at, k.rkey
    FROM (
        SELECT w.*, row_number() OVER (PARTITION BY w.pkey ORDER BY w.priority, w.scheduled_at, w.id) AS n
        FROM waiting AS w
    ) AS k
    LEFT JOIN running AS u ON u.pkey = k.pkey
    WHERE ($5::int IS NULL OR k.n <= $5::int - coalesce(u.total, 0))
      AND ($6::int IS NULL OR k.n <= $6::int - coalesce(u.mine, 0))
),
chosen AS MATERIALIZED (
    SELECT t.id, t.rkey
    FROM (
        SELECT a.*, row_number() OVER (PARTITION BY a.rkey ORDER BY a.priority, a.scheduled_at, a.id) AS m
        FROM allowed AS a
    ) AS t
    LEFT JOIN recent AS e ON e.rkey = t.rkey
    WHERE t.m <= $7::int - coalesce(e.fetched, 0)
    ORDER BY t.priority ASC, t.scheduled_at ASC, t.id ASC
    LIMIT $3
),
locked AS (
    SELECT c.id FROM {job} AS c
    WHERE c.id IN (SELECT id FROM chosen) AND c.state = 'available'
    FOR UPDATE SKIP LOCKED
),{update},
logged AS (
    INSERT INTO {log} (queue, partition_key, fetched_at, fetched)
    SELECT $1, c.rkey, {at}, count(*) FROM updated AS u JOIN chosen AS c ON c.id = u.id
    GROUP BY c.rkey
)
SELECT * FROM updated"#
        );
        // $1 queue, $2 the period in microseconds, $3 the limit. A partition is full when its
        // rows within the period sum to `limit`; it has room again when its oldest leaves.
        let wait = format!(
            r#"
SELECT (extract(epoch FROM min(oldest) + $2::bigint * interval '1 microsecond' - clock_timestamp())
        * 1000000)::bigint
FROM (
    SELECT min(fetched_at) AS oldest FROM {log}
    WHERE queue = $1 AND fetched_at > clock_timestamp() - $2::bigint * interval '1 microsecond'
    GROUP BY partition_key
    HAVING sum(fetched) >= $3::bigint
) AS full_partitions"#
        );
        RateQueries {
            fetch_capped: fetch_capped.into(),
            fetch_partitioned: fetch_partitioned.into(),
            wait: wait.into(),
        }
    }
}
