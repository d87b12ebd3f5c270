//! The executor's queue verbs: `river_queue` rows, their pause state and metadata, each
//! change announced on `river_control`. The `Executor` impl in `executor.rs` delegates
//! to these.

use jiff::Timestamp;
use millrace_driver::{DriverError, QueueRow, Result, Topic};
use sqlx::Row;

use super::{PgExecutor, PgQuery, query};
use crate::db_error;
use crate::row::queue_row;

impl PgExecutor<'_> {
    pub(super) async fn queues_queue_list(
        &mut self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<QueueRow>> {
        let q = query(&self.driver.queries().queue.list)
            .bind(after.map(str::to_owned))
            .bind(limit);
        self.fetch_all(q).await?.iter().map(queue_row).collect()
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

    /// Runs a statement that writes a queue's metadata, returns its row and notifies
    /// `river_control` (the channel is its last parameter, bound here).
    async fn write_queue_metadata(&mut self, q: PgQuery) -> Result<QueueRow> {
        let channel = self
            .driver
            .queries()
            .schema
            .channel(Topic::Control.as_str());
        let row =
            self.fetch_optional(q.bind(channel))
                .await?
                .ok_or_else(|| DriverError::Decode {
                    column: "name",
                    message: "queue update returned no row".to_owned(),
                })?;
        queue_row(&row)
    }

    pub(super) async fn queues_queue_create_or_touch(&mut self, name: &str) -> Result<QueueRow> {
        let q = query(&self.driver.queries().queue.create_or_touch).bind(name.to_owned());
        let row = self
            .fetch_optional(q)
            .await?
            .ok_or_else(|| DriverError::Decode {
                column: "name",
                message: "queue upsert returned no row".to_owned(),
            })?;
        queue_row(&row)
    }

    pub(super) async fn queues_queue_get(&mut self, name: &str) -> Result<Option<QueueRow>> {
        let q = query(&self.driver.queries().queue.get).bind(name.to_owned());
        self.fetch_optional(q)
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
        let action = if paused { "pause" } else { "resume" };
        let payload = serde_json::json!({ "action": action, "queue": name }).to_string();
        let channel = self
            .driver
            .queries()
            .schema
            .channel(Topic::Control.as_str());
        let q = query(&self.driver.queries().queue.set_paused)
            .bind(name.to_owned())
            .bind(paused)
            .bind(channel)
            .bind(payload);
        let row = self.fetch_optional(q).await?;
        Ok(row.map_or(0, |r| r.get::<i64, _>("changed") as u64))
    }

    pub(super) async fn queues_queue_delete_expired(
        &mut self,
        before: Timestamp,
        max: i32,
    ) -> Result<Vec<String>> {
        let q = query(&self.driver.queries().queue.delete_expired)
            .bind(jiff_sqlx::Timestamp::from(before))
            .bind(i64::from(max));
        self.fetch_all(q)
            .await?
            .iter()
            .map(|r| r.try_get("name").map_err(db_error))
            .collect()
    }
}
