//! The statements of `river_queue`: queue rows, their pause state and metadata.

use std::sync::Arc;

/// The queue rows' statements.
#[derive(Debug)]
pub(crate) struct QueueQueries {
    pub(crate) list: Arc<str>,
    pub(crate) update_metadata: Arc<str>,
    pub(crate) set_metadata_key: Arc<str>,
    pub(crate) delete_expired: Arc<str>,
    pub(crate) create_or_touch: Arc<str>,
    pub(crate) get: Arc<str>,
    pub(crate) set_paused: Arc<str>,
}

impl QueueQueries {
    pub(super) fn new(s: &str) -> Self {
        let queue = format!("{s}river_queue");
        let queue_cols = "name, created_at, metadata, paused_at, updated_at";
        let queue_create_or_touch = format!(
            r#"
INSERT INTO {queue} AS q (name, created_at, metadata, paused_at, updated_at)
VALUES ($1, now(), '{{}}', NULL, now())
ON CONFLICT (name) DO UPDATE SET updated_at = now()
RETURNING {queue_cols}"#
        );
        let queue_get = format!("SELECT {queue_cols} FROM {queue} WHERE name = $1");
        // A named queue without a row gets one, so a pause given before any client started the
        // queue holds when one does.
        let queue_set_paused = format!(
            r#"
WITH one AS (
    INSERT INTO {queue} AS q (name, created_at, metadata, paused_at, updated_at)
    SELECT $1, now(), '{{}}', CASE WHEN $2 THEN now() END, now() WHERE $1 <> '*'
    ON CONFLICT (name) DO UPDATE
        SET paused_at = CASE WHEN $2 THEN coalesce(q.paused_at, now()) END, updated_at = now()
    RETURNING name
),
every AS (
    UPDATE {queue} SET paused_at = CASE WHEN $2 THEN coalesce(paused_at, now()) END, updated_at = now()
    WHERE $1 = '*'
    RETURNING name
)
SELECT (SELECT count(*) FROM one) + (SELECT count(*) FROM every) AS changed, pg_notify($3, $4)"#
        );

        let queue_delete_expired = format!(
            r#"
WITH doomed AS (
    SELECT name FROM {queue} WHERE updated_at < $1 ORDER BY name LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM {queue} WHERE name IN (SELECT name FROM doomed) RETURNING name"#
        );
        let queue_list = format!(
            "SELECT {queue_cols} FROM {queue} WHERE ($1::text IS NULL OR name > $1) ORDER BY name LIMIT $2"
        );
        let queue_update_metadata = format!(
            r#"
WITH updated AS (
    INSERT INTO {queue} AS q (name, created_at, metadata, paused_at, updated_at)
    VALUES ($1, now(), $2::jsonb, NULL, now())
    ON CONFLICT (name) DO UPDATE SET metadata = $2::jsonb, updated_at = now()
    RETURNING {queue_cols}
)
SELECT {queue_cols},
       pg_notify($3, json_build_object('action', 'metadata_changed', 'metadata', metadata, 'queue', name)::text) AS notified
FROM updated"#
        );
        // $3 NULL removes key $2; otherwise it sets it, keeping the other keys.
        let queue_set_metadata_key = format!(
            r#"
WITH updated AS (
    INSERT INTO {queue} AS q (name, created_at, metadata, paused_at, updated_at)
    VALUES ($1, now(),
        CASE WHEN $3::jsonb IS NULL THEN '{{}}'::jsonb
             ELSE jsonb_build_object($2::text, $3::jsonb) END,
        NULL, now())
    ON CONFLICT (name) DO UPDATE
        SET metadata = CASE WHEN $3::jsonb IS NULL THEN q.metadata - $2::text
                        ELSE q.metadata || jsonb_build_object($2::text, $3::jsonb) END,
        updated_at = now()
    RETURNING {queue_cols}
)
SELECT {queue_cols},
       pg_notify($4, json_build_object('action', 'metadata_changed', 'metadata', metadata, 'queue', name)::text) AS notified
FROM updated"#
        );
        QueueQueries {
            list: queue_list.into(),
            update_metadata: queue_update_metadata.into(),
            set_metadata_key: queue_set_metadata_key.into(),
            delete_expired: queue_delete_expired.into(),
            create_or_touch: queue_create_or_touch.into(),
            get: queue_get.into(),
            set_paused: queue_set_paused.into(),
        }
    }
}
