//! The statements of River's and Millrace's leader tables.

use std::sync::Arc;

use crate::time::NOW;

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
    /// the leader extends its own unexpired row; resigning deletes it. `?2` is the lease as a
    /// SQLite time modifier (`+15.000 seconds`). Election times are compared as instants, not
    /// as text, since River's clients may write them with fewer fraction digits.
    pub(super) fn new(table: &str) -> Self {
        let cols = "leader_id, elected_at, expires_at";
        LeaderQueries {
            delete_expired: format!("DELETE FROM {table} WHERE expires_at < {NOW}").into(),
            elect: format!(
                r#"
INSERT INTO {table} (leader_id, elected_at, expires_at)
VALUES (?1, {NOW}, strftime('%Y-%m-%d %H:%M:%f', 'now', ?2))
ON CONFLICT (name) DO NOTHING
RETURNING {cols}"#
            )
            .into(),
            reelect: format!(
                r#"
UPDATE {table} SET expires_at = strftime('%Y-%m-%d %H:%M:%f', 'now', ?2)
WHERE leader_id = ?1 AND unixepoch(elected_at, 'subsec') = unixepoch(?3, 'subsec')
  AND expires_at > {NOW}
RETURNING {cols}"#
            )
            .into(),
            resign: format!("DELETE FROM {table} WHERE leader_id = ?1 RETURNING leader_id").into(),
            get: format!("SELECT {cols} FROM {table}").into(),
        }
    }
}
