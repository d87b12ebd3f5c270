//! The statements of `millrace_client`: each client's heartbeat row and its declared limits.

use std::sync::Arc;

use crate::time::NOW;

/// The heartbeat rows' statements.
#[derive(Debug)]
pub(crate) struct ClientQueries {
    pub(crate) heartbeat: Arc<str>,
    pub(crate) declare_queues: Arc<str>,
    pub(crate) get_expired: Arc<str>,
    pub(crate) delete: Arc<str>,
    pub(crate) delete_expired: Arc<str>,
}

impl ClientQueries {
    pub(super) fn new(s: &str, job: &str) -> Self {
        let client = format!("{s}millrace_client");
        // ?2 is the lease as a SQLite time modifier.
        let client_heartbeat = format!(
            r#"
INSERT INTO {client} (id, started_at, heartbeat_at, lease_expires_at)
VALUES (?1, {NOW}, {NOW}, strftime('%Y-%m-%d %H:%M:%f', 'now', ?2))
ON CONFLICT (id) DO UPDATE
    SET heartbeat_at = excluded.heartbeat_at, lease_expires_at = excluded.lease_expires_at"#
        );
        let client_declare_queues = format!("UPDATE {client} SET queues = json(?2) WHERE id = ?1");
        let client_get_expired = format!(
            "SELECT id FROM {client} WHERE lease_expires_at < {NOW} \
             ORDER BY lease_expires_at LIMIT ?1"
        );
        let client_delete =
            format!("DELETE FROM {client} WHERE id IN (SELECT value FROM json_each(?1))");
        let client_delete_expired = format!(
            r#"
DELETE FROM {client} AS c
WHERE c.id IN (SELECT value FROM json_each(?1)) AND c.lease_expires_at < {NOW}
  AND NOT EXISTS (
      SELECT 1 FROM {job}
      WHERE state = 'running' AND attempted_by ->> '$[#-1]' = c.id
        AND substr(kind, 1, length(?2)) <> ?2
  )"#
        );
        ClientQueries {
            heartbeat: client_heartbeat.into(),
            declare_queues: client_declare_queues.into(),
            get_expired: client_get_expired.into(),
            delete: client_delete.into(),
            delete_expired: client_delete_expired.into(),
        }
    }
}
