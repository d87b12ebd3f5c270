//! The statements of `millrace_client`: each client's heartbeat row and its declared limits.

use std::sync::Arc;

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
        let client_heartbeat = format!(
            r#"
INSERT INTO {client} (id, started_at, heartbeat_at, lease_expires_at)
VALUES ($1, now(), now(), now() + make_interval(secs => $2::float8))
ON CONFLICT (id) DO UPDATE
    SET heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => $2::float8)"#
        );
        let client_declare_queues = format!("UPDATE {client} SET queues = $2::jsonb WHERE id = $1");
        let client_get_expired = format!(
            "SELECT id FROM {client} WHERE lease_expires_at < now() ORDER BY lease_expires_at LIMIT $1"
        );
        let client_delete = format!("DELETE FROM {client} WHERE id = ANY($1::text[])");
        let client_delete_expired = format!(
            r#"
DELETE FROM {client} AS c
WHERE c.id = ANY($1::text[]) AND c.lease_expires_at < now()
  AND NOT EXISTS (
      SELECT 1 FROM {job}
      WHERE state = 'running' AND attempted_by[cardinality(attempted_by)] = c.id
        AND NOT starts_with(kind, $2)
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
