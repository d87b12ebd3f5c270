//! The statements of durable periodic schedules (`millrace_periodic_job`) and of persistent
//! workers' instances (rows of `river_job` fenced by a metadata counter).

use std::sync::Arc;

use super::{FENCE_PATH, attempted_by_appended, shallow_merge};
use crate::time::NOW;

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
        let periodic_job_get = format!(
            "SELECT id, next_run_at FROM {periodic} WHERE id IN (SELECT value FROM json_each(?1))"
        );
        let periodic_job_insert = format!(
            "INSERT INTO {periodic} (id, next_run_at, updated_at) VALUES (?1, ?2, {NOW}) \
             ON CONFLICT (id) DO NOTHING"
        );
        let periodic_job_update = format!(
            "UPDATE {periodic} SET next_run_at = ?3, updated_at = {NOW} \
             WHERE id = ?1 AND unixepoch(next_run_at, 'subsec') = unixepoch(?2, 'subsec')"
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
    pub(super) fn new(job: &str, cols: &str) -> Self {
        // A persistent worker's instance is one row; its holder refreshes attempted_at, so a
        // row running without a refresh for a whole lease (?4, as a negative SQLite time
        // modifier) belongs to a dead holder.
        let persistent_claim = format!(
            r#"
UPDATE {job} AS j SET
    state = 'running',
    attempt = min(j.attempt, 32766) + 1,
    attempted_at = {NOW},
    attempted_by = {appended},
    metadata = jsonb_set(j.metadata, {FENCE_PATH},
        coalesce(json_extract(j.metadata, {FENCE_PATH}), 0) + 1)
WHERE j.id = (
    SELECT id FROM {job}
    WHERE kind = ?1 AND queue = ?2
      AND (
          (state IN ('available', 'retryable', 'scheduled') AND scheduled_at <= {NOW})
          OR (state = 'running' AND attempted_at < strftime('%Y-%m-%d %H:%M:%f', 'now', ?4))
      )
    ORDER BY id
    LIMIT 1
)
RETURNING {cols}"#,
            appended = attempted_by_appended("j", "?3"),
        );
        let fenced = format!("state = 'running' AND json_extract(metadata, {FENCE_PATH}) = ?2");
        let persistent_renew =
            format!("UPDATE {job} SET attempted_at = {NOW} WHERE id = ?1 AND {fenced}");
        let persistent_merge_metadata = format!(
            "UPDATE {job} AS j SET metadata = {merged} WHERE j.id = ?1 AND j.{fenced}",
            merged = shallow_merge("j.metadata", "?3"),
        );
        // ?4 is the error (JSON text) or null; with an error, only the ?5 most recent stay.
        let persistent_release = format!(
            r#"
UPDATE {job} AS j SET
    state = 'available',
    scheduled_at = ?3,
    errors = CASE WHEN ?4 IS NULL THEN j.errors
                  ELSE (SELECT jsonb_group_array(json(e.value) ORDER BY e.key)
                        FROM json_each(jsonb_insert(coalesce(j.errors, jsonb('[]')), '$[#]', json(?4))) AS e
                        WHERE e.key > json_array_length(coalesce(j.errors, jsonb('[]'))) - ?5) END
WHERE j.id = ?1 AND j.{fenced}"#
        );
        PersistentQueries {
            claim: persistent_claim.into(),
            renew: persistent_renew.into(),
            merge_metadata: persistent_merge_metadata.into(),
            release: persistent_release.into(),
        }
    }
}
