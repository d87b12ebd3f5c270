//! The statements of `river_queue`: queue rows, their pause state and metadata.

use std::sync::Arc;

use crate::time::NOW;

/// The queue rows' statements.
#[derive(Debug)]
pub(crate) struct QueueQueries {
    pub(crate) create_or_touch: Arc<str>,
    pub(crate) get: Arc<str>,
    pub(crate) list: Arc<str>,
    pub(crate) update_metadata: Arc<str>,
    pub(crate) set_metadata_key: Arc<str>,
    pub(crate) create_paused: Arc<str>,
    pub(crate) set_paused_all: Arc<str>,
    pub(crate) delete_expired: Arc<str>,
}

impl QueueQueries {
    pub(super) fn new(s: &str) -> Self {
        let queue = format!("{s}river_queue");
        let queue_cols = "name, created_at, json(metadata) AS metadata, paused_at, updated_at";
        let queue_create_or_touch = format!(
            r#"
INSERT INTO {queue} (name, created_at, metadata, paused_at, updated_at)
VALUES (?1, {NOW}, jsonb('{{}}'), NULL, {NOW})
ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at
RETURNING {queue_cols}"#
        );
        let queue_get = format!("SELECT {queue_cols} FROM {queue} WHERE name = ?1");
        let queue_list = format!(
            "SELECT {queue_cols} FROM {queue} WHERE (?1 IS NULL OR name > ?1) ORDER BY name LIMIT ?2"
        );
        let queue_update_metadata = format!(
            r#"
INSERT INTO {queue} (name, created_at, metadata, paused_at, updated_at)
VALUES (?1, {NOW}, jsonb(?2), NULL, {NOW})
ON CONFLICT (name) DO UPDATE
    SET metadata = excluded.metadata, updated_at = excluded.updated_at
RETURNING {queue_cols}"#
        );
        // ?3 NULL removes key ?2; otherwise it sets it, keeping the other keys. The key is
        // the caller's constant of letters, digits and `_`, quoted into the JSON path.
        let queue_set_metadata_key = format!(
            r#"
INSERT INTO {queue} (name, created_at, metadata, paused_at, updated_at)
VALUES (?1, {NOW},
        CASE WHEN ?3 IS NULL THEN jsonb('{{}}') ELSE jsonb_object(?2, json(?3)) END,
        NULL, {NOW})
ON CONFLICT (name) DO UPDATE
    SET metadata = CASE WHEN ?3 IS NULL THEN jsonb_remove(metadata, '$.' || json_quote(?2))
                        ELSE jsonb_set(metadata, '$.' || json_quote(?2), json(?3)) END,
        updated_at = excluded.updated_at
RETURNING {queue_cols}"#
        );
        // A named queue without a row gets one, so a pause given before any client started the
        // queue holds when one does.
        let queue_create_paused = format!(
            r#"
INSERT INTO {queue} (name, created_at, metadata, paused_at, updated_at)
VALUES (?1, {NOW}, jsonb('{{}}'), CASE WHEN ?2 THEN {NOW} END, {NOW})
ON CONFLICT (name) DO UPDATE
    SET paused_at = CASE WHEN ?2 THEN coalesce(paused_at, excluded.paused_at) END,
        updated_at = excluded.updated_at"#
        );
        let queue_set_paused_all = format!(
            "UPDATE {queue} SET paused_at = CASE WHEN ?1 THEN coalesce(paused_at, {NOW}) END, \
             updated_at = {NOW}"
        );
        let queue_delete_expired = format!(
            r#"
DELETE FROM {queue} WHERE name IN (
    SELECT name FROM {queue} WHERE updated_at < ?1 ORDER BY name LIMIT ?2
)
RETURNING name"#
        );
        QueueQueries {
            create_or_touch: queue_create_or_touch.into(),
            get: queue_get.into(),
            list: queue_list.into(),
            update_metadata: queue_update_metadata.into(),
            set_metadata_key: queue_set_metadata_key.into(),
            create_paused: queue_create_paused.into(),
            set_paused_all: queue_set_paused_all.into(),
            delete_expired: queue_delete_expired.into(),
        }
    }
}
