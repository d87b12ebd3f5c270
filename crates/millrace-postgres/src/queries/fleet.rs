//! The statements of durable periodic schedules (`millrace_periodic_job`) and of persistent
//! workers' instances (rows of `river_job` fenced by a metadata counter).

use std::sync::Arc;

use super::FENCE_KEY;

/// The durable periodic schedules' statements.
#[derive(Debug)]
pub(crate) struct PeriodicQueries {
    pub(crate) get: Arc<str>,
    pub(crate) insert: Arc<str>,
    pub(crate) update: Arc<str>,
}

impl PeriodicQueries {
    pub(super) fn new(s: &str) -> Self {
        let periodic = format!("{s}millrace_periodic_job");
        let periodic_job_get =
            format!("SELECT id, next_run_at FROM {periodic} WHERE id = ANY($1::text[])");
        let periodic_job_insert = format!(
            "INSERT INTO {periodic} (id, next_run_at, updated_at) VALUES ($1, $2, now()) \
             ON CONFLICT (id) DO NOTHING"
        );
        let periodic_job_update = format!(
            "UPDATE {periodic} SET next_run_at = $3, updated_at = now() \
             WHERE id = $1 AND next_run_at = $2"
        );

        PeriodicQueries {
            get: periodic_job_get.into(),
            insert: periodic_job_insert.into(),
            update: periodic_job_update.into(),
        }
    }
}

/// The persistent instances' statements.
#[derive(Debug)]
pub(crate) struct PersistentQueries {
    pub(crate) claim: Arc<str>,
    pub(crate) renew: Arc<str>,
    pub(crate) merge_metadata: Arc<str>,
    pub(crate) release: Arc<str>,
}

impl PersistentQueries {
    pub(super) fn new(job: &str, j_cols: &str) -> Self {
        // A persistent worker's instance is one row; the holder refreshes attempted_at, so a
        // row running without a refresh for a whole lease belongs to a dead holder.
        let persistent_claim = format!(
            r#"
WITH target AS (
    SELECT id FROM {job}
    WHERE kind = $1 AND queue = $2
      AND (
          (state IN ('available', 'retryable', 'scheduled') AND scheduled_at <= now())
          OR (state = 'running' AND attempted_at < now() - make_interval(secs => $4::float8))
      )
    ORDER BY id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE {job} AS j SET
    state = 'running',
    attempt = least(j.attempt, 32766) + 1,
    attempted_at = now(),
    attempted_by = array_append(j.attempted_by[greatest(cardinality(j.attempted_by) - 98, 1):], $3::text),
    metadata = jsonb_set(j.metadata, ARRAY[{FENCE_KEY}],
        to_jsonb(coalesce((j.metadata ->> {FENCE_KEY})::bigint, 0) + 1))
FROM target
WHERE j.id = target.id
RETURNING {j_cols}"#
        );
        let fenced = format!("state = 'running' AND (metadata ->> {FENCE_KEY})::bigint = $2");
        let persistent_renew =
            format!("UPDATE {job} SET attempted_at = now() WHERE id = $1 AND {fenced}");
        let persistent_merge_metadata =
            format!("UPDATE {job} SET metadata = metadata || $3::jsonb WHERE id = $1 AND {fenced}");
        let persistent_release = format!(
            r#"
UPDATE {job} AS j SET
    state = 'available',
    scheduled_at = $3,
    errors = CASE WHEN $4::jsonb IS NULL THEN j.errors
                  ELSE (SELECT array_agg(e ORDER BY n) FROM (
                            SELECT e, n FROM unnest(array_append(j.errors, $4::jsonb)) WITH ORDINALITY AS u(e, n)
                            ORDER BY n DESC LIMIT $5
                        ) AS recent) END
WHERE j.id = $1 AND j.state = 'running' AND (j.metadata ->> {FENCE_KEY})::bigint = $2"#
        );
        PersistentQueries {
            claim: persistent_claim.into(),
            renew: persistent_renew.into(),
            merge_metadata: persistent_merge_metadata.into(),
            release: persistent_release.into(),
        }
    }
}
