//! The executor's queue verbs: `river_queue` rows, their pause state and metadata, each
//! change announced through the notification outbox. The `Executor` impl in
//! `executor.rs` delegates to these.

use jiff::Timestamp;
use millrace_driver::{QueueRow, Result, Topic};
use sqlx::Row;

use super::{SqliteExecutor, SqliteQuery, missing_row, query};
use crate::error::db_error;
use crate::row::queue_row;
use crate::time::encode;

impl SqliteExecutor<'_> {
    pub(super) async fn queues_queue_list(
        &mut self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<QueueRow>> {
        let q = query(&self.driver.queries().queue.list)
            .bind(after.map(str::to_owned))
            .bind(limit.max(0));
        self.read_all(q).await?.iter().map(queue_row).collect()
    }

    pub(super) async fn queues_queue_update_metadata(
        &mut self,
        name: &str,
        metadata: &str,
    ) -> Result<QueueRow> {
        let q = query(&self.driver.queries().queue.update_metadata)
            .bind(name.to_owned())
            .bind(metadata.to_owned());
        self.write_queue_metadata(q).await
    }

    pub(super) async fn queues_queue_set_metadata_key(
        &mut self,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<QueueRow> {
        let q = query(&self.driver.queries().queue.set_metadata_key)
            .bind(name.to_owned())
            .bind(key.to_owned())
            .bind(value.map(str::to_owned));
        self.write_queue_metadata(q).await
    }

    /// Runs a statement that writes a queue's metadata and returns its row, and announces
    /// the change through the outbox in the same transaction.
    async fn write_queue_metadata(&mut self, q: SqliteQuery) -> Result<QueueRow> {
        let driver = self.driver;
        let own = self.conn.is_none();
        let mut scope = self.scope().await?;
        let row = scope
            .fetch_optional(q)
            .await?
            .ok_or_else(|| missing_row("queue metadata update"))?;
        let queue = queue_row(&row)?;
        // The same payload as PostgreSQL's, keys in the same order.
        let payload = serde_json::json!({
            "action": "metadata_changed",
            "metadata": queue.metadata,
            "queue": queue.name,
        })
        .to_string();
        Self::notify_in_scope(driver, &mut scope, &[(Topic::Control, payload)], own).await?;
        scope.finish().await?;
        Ok(queue)
    }

    pub(super) async fn queues_queue_create_or_touch(&mut self, name: &str) -> Result<QueueRow> {
        let q = query(&self.driver.queries().queue.create_or_touch).bind(name.to_owned());
        let mut scope = self.scope().await?;
        let row = scope
            .fetch_optional(q)
            .await?
            .ok_or_else(|| missing_row("queue upsert"))?;
        let queue = queue_row(&row)?;
        scope.finish().await?;
        Ok(queue)
    }

    pub(super) async fn queues_queue_get(&mut self, name: &str) -> Result<Option<QueueRow>> {
        let q = query(&self.driver.queries().queue.get).bind(name.to_owned());
        self.read_optional(q)
            .await?
            .as_ref()
            .map(queue_row)
            .transpose()
    }

    pub(super) async fn queues_queue_set_paused(
        &mut self,
        name: &str,
        paused: bool,
    ) -> Result<u64> {
        let driver = self.driver;
        let own = self.conn.is_none();
        let q = if name == "*" {
            query(&driver.queries().queue.set_paused_all).bind(paused)
        } else {
            query(&driver.queries().queue.create_paused)
                .bind(name.to_owned())
                .bind(paused)
        };
        let action = if paused { "pause" } else { "resume" };
        let payload = serde_json::json!({ "action": action, "queue": name }).to_string();
        let mut scope = self.scope().await?;
        let changed = scope.execute(q).await?;
        Self::notify_in_scope(driver, &mut scope, &[(Topic::Control, payload)], own).await?;
        scope.finish().await?;
        Ok(changed)
    }

    pub(super) async fn queues_queue_delete_expired(
        &mut self,
        before: Timestamp,
        max: i32,
    ) -> Result<Vec<String>> {
        if max <= 0 {
            return Ok(Vec::new());
        }
        let q = query(&self.driver.queries().queue.delete_expired)
            .bind(encode(before))
            .bind(max);
        let mut scope = self.scope().await?;
        let names = scope
            .fetch_all(q)
            .await?
            .iter()
            .map(|r| r.try_get("name").map_err(db_error))
            .collect::<Result<Vec<String>>>()?;
        scope.finish().await?;
        Ok(names)
    }
}
