//! The statements of rate limits (issue 19) on SQLite: the rate-limited fetch, the log of
//! what it let through in `millrace_rate_limit_fetch`, and the producer's wait.
//!
//! The fetch runs in the driver's `BEGIN IMMEDIATE` write transaction (or the caller's), so
//! no other fetch commits between the count of the window and the log's insert. The window
//! is sliding: a fetch at time `t` (Unix microseconds, read once the write transaction is
//! held) counts the partition's rows logged in `(t - period, t]`.

use std::sync::Arc;

use millrace_driver::Schema;

use super::sql::attempted_by_appended;
use crate::row::job_columns;
use crate::time::NOW;

/// The statements of rate-limited fetches.
#[derive(Debug, Clone)]
pub(crate) struct RateQueries {
    /// The fetch: every due row ranked within its concurrency partition, then the survivors
    /// within their rate partition.
    pub(crate) fetch: Arc<str>,
    /// Deletes a queue's rows that left the window.
    pub(crate) prune: Arc<str>,
    /// Logs the fetched rows, each with its rate partition's key.
    pub(crate) log: Arc<str>,
    /// The time until the first full partition of a queue has room, in microseconds.
    pub(crate) wait: Arc<str>,
}

/// A partition key as the concurrency limits' fetch builds it: a JSON array of the kind
/// (when `kind`) and the values of the args fields named in the JSON array `fields`.
fn key(t: &str, kind: &str, fields: &str) -> String {
    format!(
        "json_array(CASE WHEN {kind} THEN {t}.kind END, \
         (SELECT json_group_array({t}.args -> ('$.\"' || e.value || '\"') ORDER BY e.key) \
          FROM json_each({fields}) AS e))"
    )
}

impl RateQueries {
    pub(crate) fn new(schema: &Schema) -> Self {
        let s = schema.fill("/*schema*/");
        let job = format!("{s}river_job");
        let log = format!("{s}millrace_rate_limit_fetch");
        let cols = job_columns("");
        // ?1 queue, ?2 now (null: the server's), ?3 the most rows, ?4 the client id, ?5 and
        // ?6 the global and local concurrency limits (null: none), ?7 and ?8 the concurrency
        // partition's kind flag and fields, ?9 the rate limit, ?10 the window's start, ?11
        // and ?12 the rate partition's kind flag and fields. The rate rank is taken among
        // the rows the concurrency limit lets through, so rows it holds back take no room.
        let (running_key, ckey, rkey) = (
            key("r", "?7", "?8"),
            key("a", "?7", "?8"),
            key("a", "?11", "?12"),
        );
        let fetch = format!(
            r#"
WITH running AS (
    SELECT {running_key} AS pkey, count(*) AS total,
           coalesce(sum(r.attempted_by ->> '$[#-1]' = ?4), 0) AS mine
    FROM {job} AS r
    WHERE r.state = 'running' AND r.queue = ?1 AND (?5 IS NOT NULL OR ?6 IS NOT NULL)
    GROUP BY 1
),
recent AS (
    SELECT partition_key AS rkey, sum(fetched) AS fetched
    FROM {log} WHERE queue = ?1 AND fetched_at > ?10
    GROUP BY 1
),
allowed AS (
    SELECT k.id, k.priority, k.scheduled_at, k.rkey
    FROM (
        SELECT w.*, row_number() OVER (PARTITION BY w.pkey ORDER BY w.priority, w.scheduled_at, w.id) AS n
        FROM (
            SELECT a.id, a.priority, a.scheduled_at, {ckey} AS pkey, {rkey} AS rkey
            FROM {job} AS a
            WHERE a.state = 'available' AND a.queue = ?1 AND a.scheduled_at <= coalesce(?2, {NOW})
        ) AS w
    ) AS k
    LEFT JOIN running AS u ON u.pkey = k.pkey
    WHERE (?5 IS NULL OR k.n <= ?5 - coalesce(u.total, 0))
      AND (?6 IS NULL OR k.n <= ?6 - coalesce(u.mine, 0))
),
chosen AS (
    SELECT t.id
    FROM (
        SELECT a.*, row_number() OVER (PARTITION BY a.rkey ORDER BY a.priority, a.scheduled_at, a.id) AS m
        FROM allowed AS a
    ) AS t
    LEFT JOIN recent AS e ON e.rkey = t.rkey
    WHERE t.m <= ?9 - coalesce(e.fetched, 0)
    ORDER BY t.priority ASC, t.scheduled_at ASC, t.id ASC
    LIMIT ?3
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
        let prune = format!("DELETE FROM {log} WHERE queue = ?1 AND fetched_at <= ?2");
        // ?1 queue, ?2 the fetch's time, ?3 the fetched ids (a JSON array), ?4 and ?5 the
        // rate partition's kind flag and fields.
        let log_key = key("a", "?4", "?5");
        let log_insert = format!(
            r#"
INSERT INTO {log} (queue, partition_key, fetched_at, fetched)
SELECT ?1, {log_key}, ?2, count(*) FROM {job} AS a
WHERE a.id IN (SELECT value FROM json_each(?3))
GROUP BY 2"#
        );
        // ?1 queue, ?2 the period, ?3 the limit, ?4 now; all times in microseconds.
        let wait = format!(
            r#"
SELECT min(oldest) + ?2 - ?4
FROM (
    SELECT min(fetched_at) AS oldest FROM {log}
    WHERE queue = ?1 AND fetched_at > ?4 - ?2
    GROUP BY partition_key
    HAVING sum(fetched) >= ?3
)"#
        );
        RateQueries {
            fetch: fetch.into(),
            prune: prune.into(),
            log: log_insert.into(),
            wait: wait.into(),
        }
    }
}
