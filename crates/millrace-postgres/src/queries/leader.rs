//! The statements of River's and Millrace's leader tables.

use std::sync::Arc;

/// The statements of one leader table.
#[derive(Debug)]
pub(crate) struct LeaderQueries {
    pub(crate) delete_expired: Arc<str>,
    pub(crate) elect: Arc<str>,
    pub(crate) reelect: Arc<str>,
    pub(crate) resign: Arc<str>,
    pub(crate) get: Arc<str>,
}

impl LeaderQueries {
    /// Mirrors River's leader election: an expired row is deleted, then the first insert wins;
    /// the leader extends its own unexpired row; resigning deletes it and (for River's row)
    /// tells the others, so they elect within moments rather than at their next attempt.
    pub(super) fn new(table: &str, notify_resigned: bool) -> Self {
        let cols = "leader_id, elected_at, expires_at";
        let resign = if notify_resigned {
            format!(
                r#"
WITH deleted AS (DELETE FROM {table} WHERE leader_id = $1 RETURNING leader_id)
SELECT count(*) AS n, count(pg_notify($2, json_build_object('action', 'resigned', 'leader_id', leader_id)::text))
FROM deleted"#
            )
        } else {
            format!(
                "WITH deleted AS (DELETE FROM {table} WHERE leader_id = $1 RETURNING leader_id) \
                 SELECT count(*) AS n FROM deleted"
            )
        };
        LeaderQueries {
            delete_expired: format!("DELETE FROM {table} WHERE expires_at < now()").into(),
            elect: format!(
                r#"
INSERT INTO {table} (leader_id, elected_at, expires_at)
VALUES ($1, now(), now() + make_interval(secs => $2::float8))
ON CONFLICT (name) DO NOTHING
RETURNING {cols}"#
            )
            .into(),
            reelect: format!(
                r#"
UPDATE {table} SET expires_at = now() + make_interval(secs => $2::float8)
WHERE leader_id = $1 AND elected_at = $3 AND expires_at > now()
RETURNING {cols}"#
            )
            .into(),
            resign: resign.into(),
            get: format!("SELECT {cols} FROM {table}").into(),
        }
    }
}
