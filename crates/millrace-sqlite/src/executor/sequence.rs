//! Sequences on SQLite (issue 19): the insert's check and the promotion, each inside the write
//! transaction of the verb that needs it, the promoter's sweep and the admin list.

use millrace_driver::{
    JobInsertParams, Result, SequenceListParams, SequencePromoted, SequenceRow, Topic,
    sequence_key, sorted_keys,
};
use millrace_types::JobId;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Scope, SqliteExecutor, query};
use crate::SqliteDriver;
use crate::error::db_error;
use crate::row::parse_state;

/// The sorted keys of a batch's sequence jobs, if it has any.
pub(super) fn batch_keys(jobs: &[JobInsertParams]) -> Option<Vec<String>> {
    let keys = sorted_keys(jobs.iter().filter_map(|j| sequence_key(&j.metadata)));
    (!keys.is_empty()).then_some(keys)
}

fn keys_json(keys: &[String]) -> String {
    serde_json::to_string(keys).expect("strings always encode")
}

fn key_column(row: &SqliteRow) -> Result<String> {
    row.try_get("key").map_err(db_error)
}

impl SqliteExecutor<'_> {
    /// The keys among `keys` whose sequence has unfinished work, read in the insert's write
    /// transaction.
    pub(super) async fn sequence_occupied_in_scope(
        driver: &SqliteDriver,
        scope: &mut Scope<'_>,
        keys: &[String],
    ) -> Result<Vec<String>> {
        let q = query(&driver.queries().sequence.occupied).bind(keys_json(keys));
        scope.fetch_all(q).await?.iter().map(key_column).collect()
    }

    /// Promotes the next job of each key in the caller's write transaction, and notifies
    /// `river_insert` for the queues that got available jobs.
    pub(super) async fn sequence_promote_in_scope(
        driver: &SqliteDriver,
        scope: &mut Scope<'_>,
        keys: &[String],
        own: bool,
    ) -> Result<Vec<SequencePromoted>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let q = query(&driver.queries().sequence.promote)
            .bind(keys_json(&sorted_keys(keys.iter().cloned())));
        let promoted = scope
            .fetch_all(q)
            .await?
            .iter()
            .map(promoted)
            .collect::<Result<Vec<_>>>()?;
        let mut queues: Vec<&str> = promoted
            .iter()
            .filter(|p| p.state == millrace_types::JobState::Available)
            .map(|p| p.queue.as_str())
            .collect();
        queues.sort_unstable();
        queues.dedup();
        let notifications: Vec<(Topic, String)> = queues
            .into_iter()
            .map(|queue| {
                (
                    Topic::Insert,
                    serde_json::json!({ "queue": queue }).to_string(),
                )
            })
            .collect();
        if !notifications.is_empty() {
            Self::notify_in_scope(driver, scope, &notifications, own).await?;
        }
        Ok(promoted)
    }

    /// Promotes the keys' next jobs in a write transaction of their own.
    pub(super) async fn sequence_promote_keys(
        &mut self,
        keys: &[String],
    ) -> Result<Vec<SequencePromoted>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let driver = self.driver;
        let own = self.conn.is_none();
        let mut scope = self.scope().await?;
        let promoted = Self::sequence_promote_in_scope(driver, &mut scope, keys, own).await?;
        scope.finish().await?;
        Ok(promoted)
    }

    /// The promoter's sweep, in one write transaction.
    pub(super) async fn sequence_sweep(&mut self, max: i32) -> Result<Vec<SequencePromoted>> {
        let driver = self.driver;
        let own = self.conn.is_none();
        let mut scope = self.scope().await?;
        let q = query(&driver.queries().sequence.stranded).bind(max.max(0));
        let keys = scope
            .fetch_all(q)
            .await?
            .iter()
            .map(key_column)
            .collect::<Result<Vec<_>>>()?;
        let promoted = Self::sequence_promote_in_scope(driver, &mut scope, &keys, own).await?;
        scope.finish().await?;
        Ok(promoted)
    }

    pub(super) async fn sequence_rows(
        &mut self,
        params: &SequenceListParams,
    ) -> Result<Vec<SequenceRow>> {
        let q = query(&self.driver.queries().sequence.list)
            .bind(params.after.clone())
            .bind(params.key.clone())
            .bind(params.blocked_only)
            .bind(params.limit.max(0));
        self.read_all(q)
            .await?
            .iter()
            .map(|row| {
                Ok(SequenceRow {
                    key: key_column(row)?,
                    head_id: JobId(row.try_get("id").map_err(db_error)?),
                    head_state: parse_state(row)?,
                    head_kind: row.try_get("kind").map_err(db_error)?,
                    head_queue: row.try_get("queue").map_err(db_error)?,
                    pending: row.try_get("pending").map_err(db_error)?,
                    blocked: row.try_get("blocked").map_err(db_error)?,
                })
            })
            .collect()
    }
}

fn promoted(row: &SqliteRow) -> Result<SequencePromoted> {
    Ok(SequencePromoted {
        id: JobId(row.try_get("id").map_err(db_error)?),
        key: key_column(row)?,
        queue: row.try_get("queue").map_err(db_error)?,
        state: parse_state(row)?,
    })
}
