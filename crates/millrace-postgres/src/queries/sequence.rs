//! The statements of sequences (issue 19): key locks, the insert's check, promotion, the
//! stranded sweep and the admin list.
//!
//! Every statement that reads a key's jobs repeats the predicate of
//! `millrace_job_sequence_index` word for word ([`IN_INDEX`]), so the planner uses that
//! partial index without having to prove anything about it.

use std::sync::Arc;

use millrace_driver::Schema;

/// A job's sequence key, as the index spells it.
const KEY: &str = "(j.metadata ->> 'millrace:seq')";

/// The partial index's predicate: jobs with a key that are not completed.
const IN_INDEX: &str = "(j.metadata ->> 'millrace:seq') IS NOT NULL AND j.state <> 'completed'";

/// A job that holds its sequence: live or pending, or discarded or cancelled without the
/// continue mark (so that it blocks the rest).
const HOLDS: &str = "(j.state NOT IN ('cancelled', 'discarded') \
    OR (j.metadata -> 'millrace:seq_continue') IS DISTINCT FROM 'true'::jsonb)";

/// The statements, with the schema filled in.
#[derive(Debug)]
pub(crate) struct SequenceQueries {
    /// The text every key lock's hash starts with: the schema, so that two schemas' equal
    /// keys do not wait on each other.
    pub(crate) lock_prefix: String,
    pub(crate) lock: Arc<str>,
    pub(crate) try_lock: Arc<str>,
    pub(crate) occupied: Arc<str>,
    pub(crate) promote: Arc<str>,
    pub(crate) stranded: Arc<str>,
    pub(crate) list: Arc<str>,
}

impl SequenceQueries {
    pub(crate) fn new(schema: &Schema) -> Self {
        let s = schema.fill("/*schema*/");
        let job = format!("{s}river_job");
        // Transaction-scoped locks, one per key, taken in the order of the (sorted) array:
        // two transactions that lock overlapping keys take them in the same order.
        let lock = "SELECT count(pg_advisory_xact_lock(hashtextextended($2 || t.k, 0))) \
                    FROM unnest($1::text[]) WITH ORDINALITY AS t(k, o)"
            .to_owned();
        let try_lock = "SELECT t.k AS key FROM unnest($1::text[]) WITH ORDINALITY AS t(k, o) \
                        WHERE pg_try_advisory_xact_lock(hashtextextended($2 || t.k, 0)) \
                        ORDER BY t.o"
            .to_owned();
        let occupied = format!(
            r#"
SELECT t.k AS key FROM unnest($1::text[]) AS t(k)
WHERE EXISTS (
    SELECT 1 FROM {job} AS j
    WHERE {IN_INDEX} AND {KEY} = t.k AND {HOLDS}
)"#
        );
        // The next pending job of each key whose sequence nothing holds any more. A
        // candidate another transaction has locked (an operator cancelling or deleting it) is
        // skipped rather than waited for, so a promotion never waits on a row while it holds
        // key locks; that transaction promotes in turn once it has the key's lock.
        let promote = format!(
            r#"
WITH keys AS (
    SELECT DISTINCT t.k FROM unnest($1::text[]) AS t(k)
),
next AS (
    SELECT (
        SELECT j.id FROM {job} AS j
        WHERE {IN_INDEX} AND {KEY} = keys.k AND j.state = 'pending'
        ORDER BY j.id LIMIT 1
    ) AS id
    FROM keys
    WHERE NOT EXISTS (
        SELECT 1 FROM {job} AS j
        WHERE {IN_INDEX} AND {KEY} = keys.k
          AND j.state IN ('available', 'cancelled', 'discarded', 'retryable', 'running', 'scheduled')
          AND {HOLDS}
    )
),
locked AS (
    SELECT j.id FROM {job} AS j JOIN next ON j.id = next.id
    WHERE j.state = 'pending'
    FOR UPDATE OF j SKIP LOCKED
),
promoted AS (
    UPDATE {job} AS j
    SET state = (CASE WHEN j.scheduled_at > now() THEN 'scheduled' ELSE 'available' END)::{s}river_job_state
    FROM locked WHERE j.id = locked.id
    RETURNING j.id, j.queue, j.state::text AS state, {KEY} AS key
),
notified AS (
    SELECT count(pg_notify($2, json_build_object('queue', q.queue)::text)) AS n
    FROM (SELECT DISTINCT queue FROM promoted WHERE state = 'available') AS q
)
SELECT promoted.id, promoted.queue, promoted.state, promoted.key FROM promoted, notified"#
        );
        // Keys with pending jobs and nothing ahead of them. Read without locks: the promotion
        // that follows checks again under each key's lock.
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
LIMIT $1"#
        );
        // The head is the first job by id that is not pending (live, or the failed one that
        // blocks), else the first pending one (a sequence about to be promoted).
        let list = format!(
            r#"
WITH s AS (
    SELECT {KEY} AS key, j.id, j.state, j.kind, j.queue,
           j.state IN ('cancelled', 'discarded') AS failed
    FROM {job} AS j
    WHERE {IN_INDEX} AND {HOLDS}
      AND ($1::text IS NULL OR {KEY} > $1)
      AND ($2::text IS NULL OR {KEY} = $2)
),
agg AS (
    SELECT key, count(*) FILTER (WHERE state = 'pending') AS pending, bool_or(failed) AS blocked
    FROM s GROUP BY key
),
head AS (
    SELECT DISTINCT ON (key) key, id, state::text AS state, kind, queue
    FROM s ORDER BY key, state = 'pending', id
)
SELECT agg.key, head.id, head.state, head.kind, head.queue, agg.pending, agg.blocked
FROM agg JOIN head ON head.key = agg.key
WHERE NOT $3::boolean OR agg.blocked
ORDER BY agg.key
LIMIT $4"#
        );
        SequenceQueries {
            lock_prefix: format!("{s}millrace:seq:"),
            lock: lock.into(),
            try_lock: try_lock.into(),
            occupied: occupied.into(),
            promote: promote.into(),
            stranded: stranded.into(),
            list: list.into(),
        }
    }
}
