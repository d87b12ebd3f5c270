//! Sequences on PostgreSQL (issue 19): inserts that check their keys under the keys' locks,
//! promotion of the next pending job, the promoter's sweep and the admin list.

use millrace_driver::{
    JobInsertParams, JobInsertResult, Result, SequenceListParams, SequencePromoted, SequenceRow,
    Topic, sequence_key, sequence_states, sorted_keys,
};
use millrace_types::JobId;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use super::{PgExecutor, query};
use crate::db_error;
use crate::row::parse_state;

/// The sorted keys of a batch's sequence jobs, if it has any.
pub(super) fn batch_keys(jobs: &[JobInsertParams]) -> Option<Vec<String>> {
    let keys = sorted_keys(jobs.iter().filter_map(|j| sequence_key(&j.metadata)));
    (!keys.is_empty()).then_some(keys)
}

impl PgExecutor<'_> {
    /// A transaction of its own on the pool, or a savepoint inside the caller's transaction
    /// (whose end then releases the key locks, as it should: the caller's rows are what the
    /// locks protect until they commit).
    async fn sequence_begin(&mut self) -> Result<Transaction<'_, Postgres>> {
        match self.conn.as_deref_mut() {
            Some(conn) => sqlx::Connection::begin(conn).await,
            None => self.driver.pool().begin().await,
        }
        .map_err(db_error)
    }

    /// Takes the keys' locks (sorted), waiting for them.
    async fn sequence_lock(&mut self, keys: &[String]) -> Result<()> {
        let queries = &self.driver.queries().sequence;
        let q = query(&queries.lock)
            .bind(keys.to_vec())
            .bind(queries.lock_prefix.clone());
        self.fetch_all(q).await.map(|_| ())
    }

    /// Promotes the next job of each key; the caller holds the keys' locks.
    async fn sequence_promote_locked(&mut self, keys: &[String]) -> Result<Vec<SequencePromoted>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let queries = self.driver.queries();
        let q = query(&queries.sequence.promote)
            .bind(keys.to_vec())
            .bind(queries.schema.channel(Topic::Insert.as_str()));
        self.fetch_all(q).await?.iter().map(promoted).collect()
    }

    /// Inserts a batch that holds sequence jobs: locks their keys, reads which sequences have
    /// unfinished work, and inserts each job `pending` behind it, all in one transaction.
    pub(super) async fn sequence_insert(
        &mut self,
        jobs: &[JobInsertParams],
        keys: Vec<String>,
    ) -> Result<Vec<JobInsertResult>> {
        let driver = self.driver;
        let mut tx = self.sequence_begin().await?;
        let mut inner = PgExecutor::conn(driver, &mut tx);
        inner.sequence_lock(&keys).await?;
        let q = query(&driver.queries().sequence.occupied).bind(keys);
        let occupied = inner
            .fetch_all(q)
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>("key").map_err(db_error))
            .collect::<Result<Vec<_>>>()?;
        let jobs = sequence_states(jobs, &occupied);
        let results = inner.insert_rows(&jobs).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(results)
    }

    /// Locks the keys (sorted), promotes, commits.
    pub(super) async fn sequence_promote_keys(
        &mut self,
        keys: Vec<String>,
    ) -> Result<Vec<SequencePromoted>> {
        let keys = sorted_keys(keys);
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let driver = self.driver;
        let mut tx = self.sequence_begin().await?;
        let mut inner = PgExecutor::conn(driver, &mut tx);
        inner.sequence_lock(&keys).await?;
        let promoted = inner.sequence_promote_locked(&keys).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(promoted)
    }

    /// Promotes after an action that has already taken effect (on the pool, committed):
    /// a failure is logged rather than returned, since failing would tell the caller that
    /// the action itself failed, and the sequence promoter moves such sequences on within
    /// about a second.
    pub(super) async fn sequence_promote_after(&mut self, keys: Vec<String>) {
        if let Err(err) = self.sequence_promote_keys(keys).await {
            tracing::warn!(%err, "promoting the next jobs of sequences failed; the sequence promoter will");
        }
    }

    /// The promoter's sweep: candidate keys read without locks, then those whose lock is
    /// free promoted under it.
    pub(super) async fn sequence_sweep(&mut self, max: i32) -> Result<Vec<SequencePromoted>> {
        let driver = self.driver;
        let queries = &driver.queries().sequence;
        let candidates = self
            .fetch_all(query(&queries.stranded).bind(max))
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>("key").map_err(db_error))
            .collect::<Result<Vec<_>>>()?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.sequence_begin().await?;
        let mut inner = PgExecutor::conn(driver, &mut tx);
        let q = query(&queries.try_lock)
            .bind(candidates)
            .bind(queries.lock_prefix.clone());
        let locked = inner
            .fetch_all(q)
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>("key").map_err(db_error))
            .collect::<Result<Vec<_>>>()?;
        let promoted = inner.sequence_promote_locked(&locked).await?;
        tx.commit().await.map_err(db_error)?;
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
            .bind(params.limit);
        self.fetch_all(q)
            .await?
            .iter()
            .map(|row| {
                Ok(SequenceRow {
                    key: row.try_get("key").map_err(db_error)?,
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

fn promoted(row: &PgRow) -> Result<SequencePromoted> {
    Ok(SequencePromoted {
        id: JobId(row.try_get("id").map_err(db_error)?),
        key: row.try_get("key").map_err(db_error)?,
        queue: row.try_get("queue").map_err(db_error)?,
        state: parse_state(row)?,
    })
}
