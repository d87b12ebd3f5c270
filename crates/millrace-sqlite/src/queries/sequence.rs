//! The statements of sequences (issue 19) on SQLite: the insert's check, promotion, the
//! stranded sweep and the admin list.
//!
//! SQLite has one writer at a time, and every write of the driver runs in a `BEGIN
//! IMMEDIATE` transaction (or the caller's), so a check and the insert or promotion that
//! follows it cannot interleave with another's: no key locks are needed. Statements spell
//! the key expression and the predicate of `millrace_job_sequence_index` as the index does,
//! which is how SQLite matches an expression index.

use std::sync::Arc;

use millrace_driver::Schema;

use crate::time::NOW;

/// A job's sequence key, as the index spells it (for a table aliased `j`).
const KEY: &str = "j.metadata ->> '$.\"millrace:seq\"'";

/// The partial index's predicate: jobs with a key that are not completed.
const IN_INDEX: &str = "j.metadata ->> '$.\"millrace:seq\"' IS NOT NULL AND j.state <> 'completed'";

/// A job that holds its sequence: live or pending, or discarded or cancelled without the
/// continue mark (so that it blocks the rest).
const HOLDS: &str = "(j.state NOT IN ('cancelled', 'discarded') \
    OR (j.metadata -> '$.\"millrace:seq_continue\"') IS NOT 'true')";

/// The statements, with the schema filled in.
#[derive(Debug)]
pub(crate) struct SequenceQueries {
    pub(crate) occupied: Arc<str>,
    pub(crate) promote: Arc<str>,
    pub(crate) stranded: Arc<str>,
    pub(crate) list: Arc<str>,
}

impl SequenceQueries {
    pub(crate) fn new(schema: &Schema) -> Self {
        let s = schema.fill("/*schema*/");
        let job = format!("{s}river_job");
        // ?1: a JSON array of keys.
        let occupied = format!(
            r#"
SELECT k.value AS key FROM json_each(?1) AS k
WHERE EXISTS (
    SELECT 1 FROM {job} AS j
    WHERE {IN_INDEX} AND {KEY} = k.value AND {HOLDS}
)"#
        );
        let promote = format!(
            r#"
UPDATE {job} SET state = CASE WHEN scheduled_at > {NOW} THEN 'scheduled' ELSE 'available' END
WHERE state = 'pending' AND id IN (
    SELECT (
        SELECT j.id FROM {job} AS j
        WHERE {IN_INDEX} AND {KEY} = k.value AND j.state = 'pending'
        ORDER BY j.id LIMIT 1
    )
    FROM (SELECT DISTINCT value FROM json_each(?1)) AS k
    WHERE NOT EXISTS (
        SELECT 1 FROM {job} AS j
        WHERE {IN_INDEX} AND {KEY} = k.value
          AND j.state IN ('available', 'cancelled', 'discarded', 'retryable', 'running', 'scheduled')
          AND {HOLDS}
    )
)
RETURNING id, queue, state, metadata ->> '$."millrace:seq"' AS key"#
        );
        let stranded = format!(
            r#"
SELECT k.key FROM (
    SELECT DISTINCT {KEY} AS key FROM {job} AS j
    WHERE {IN_INDEX} AND j.state = 'pending'
) AS k
WHERE NOT EXISTS (
    SELECT 1 FROM {job} AS j
    WHERE {IN_INDEX} AND {KEY} = k.key
      AND j.state IN ('available', 'cancelled', 'discarded', 'retryable', 'running', 'scheduled')
      AND {HOLDS}
)
ORDER BY k.key
LIMIT ?1"#
        );
        // The head is the first job by id that is not pending (live, or the failed one that
        // blocks), else the first pending one.
        let list = format!(
            r#"
WITH s AS (
    SELECT {KEY} AS key, j.id, j.state, j.kind, j.queue,
           j.state IN ('cancelled', 'discarded') AS failed
    FROM {job} AS j
    WHERE {IN_INDEX} AND {HOLDS}
      AND (?1 IS NULL OR {KEY} > ?1)
      AND (?2 IS NULL OR {KEY} = ?2)
),
agg AS (
    SELECT key, sum(state = 'pending') AS pending, max(failed) AS blocked
    FROM s GROUP BY key
),
head AS (
    SELECT key, id, state, kind, queue FROM (
        SELECT s.*, row_number() OVER (PARTITION BY key ORDER BY state = 'pending', id) AS n
        FROM s
    ) WHERE n = 1
)
SELECT agg.key, head.id, head.state, head.kind, head.queue, agg.pending, agg.blocked
FROM agg JOIN head ON head.key = agg.key
WHERE NOT ?3 OR agg.blocked
ORDER BY agg.key
LIMIT ?4"#
        );
        SequenceQueries {
            occupied: occupied.into(),
            promote: promote.into(),
            stranded: stranded.into(),
            list: list.into(),
        }
    }
}
