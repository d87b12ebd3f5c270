//! The statements of `river_notification`: the outbox that stands in for PostgreSQL's
//! LISTEN/NOTIFY.

use std::sync::Arc;

/// The outbox's statements.
#[derive(Debug)]
pub(crate) struct NotificationQueries {
    pub(crate) insert_many: Arc<str>,
    pub(crate) delete_before: Arc<str>,
    pub(crate) last_id: Arc<str>,
    pub(crate) get_after: Arc<str>,
}

impl NotificationQueries {
    pub(super) fn new(s: &str) -> Self {
        let notification = format!("{s}river_notification");
        let notification_insert_many = format!(
            "INSERT INTO {notification} (topic, payload) \
             SELECT e.value ->> '$.topic', e.value ->> '$.payload' FROM json_each(?1) AS e \
             ORDER BY e.key"
        );
        let notification_delete_before = format!(
            "DELETE FROM {notification} \
             WHERE created_at < strftime('%Y-%m-%d %H:%M:%f', 'now', ?1)"
        );
        let notification_last_id = format!("SELECT coalesce(max(id), 0) FROM {notification}");
        let notification_get_after = format!(
            "SELECT id, topic, payload FROM {notification} WHERE id > ?1 ORDER BY id LIMIT ?2"
        );
        NotificationQueries {
            insert_many: notification_insert_many.into(),
            delete_before: notification_delete_before.into(),
            last_id: notification_last_id.into(),
            get_after: notification_get_after.into(),
        }
    }
}
