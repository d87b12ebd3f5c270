//! The soak's ledger: what each driver writes of the jobs it inserts and works, and the
//! work a job commits with its completion.

use std::future::Future;

use millrace::{Driver, Job, JobId, Schema, WorkError};
use millrace_postgres::PgDriver;
use millrace_sqlite::SqliteDriver;
use sqlx::AssertSqlSafe;

/// What each driver writes to the ledger. Every statement binds its values; only the
/// validated schema name is formatted in.
pub(crate) trait Ledger: Driver + Clone {
    /// Records the start of an attempt; retried under one `run_id`, so it is one row.
    fn record_attempt(
        &self,
        run_id: &str,
        job_id: JobId,
        attempt: i16,
        kind: &str,
        process: &str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Commits the job's work and its completion in one transaction.
    fn complete_with_effect<A: Send + Sync>(
        &self,
        job: &Job<A>,
        process: &str,
    ) -> impl Future<Output = Result<(), WorkError>> + Send;

    /// Records an inserted job on the insert's transaction.
    fn record_inserted(
        conn: &mut Self::Conn,
        schema: &Schema,
        job_id: JobId,
        kind: &str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

impl Ledger for PgDriver {
    async fn record_attempt(
        &self,
        run_id: &str,
        job_id: JobId,
        attempt: i16,
        kind: &str,
        process: &str,
    ) -> Result<(), sqlx::Error> {
        let sql = format!(
            "INSERT INTO {} (run_id, job_id, attempt, kind, process) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (run_id) DO NOTHING",
            self.schema().qualify("soak_attempts")
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(run_id)
            .bind(job_id.0)
            .bind(i32::from(attempt))
            .bind(kind)
            .bind(process)
            .execute(self.pool())
            .await
            .map(drop)
    }

    async fn complete_with_effect<A: Send + Sync>(
        &self,
        job: &Job<A>,
        process: &str,
    ) -> Result<(), WorkError> {
        let sql = format!(
            "INSERT INTO {} (job_id, attempt, process) VALUES ($1, $2, $3)",
            self.schema().qualify("soak_effects")
        );
        let mut tx = self.pool().begin().await?;
        sqlx::query(AssertSqlSafe(sql))
            .bind(job.row.id.0)
            .bind(i32::from(job.row.attempt))
            .bind(process)
            .execute(&mut *tx)
            .await?;
        job.complete_tx::<PgDriver>(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_inserted(
        conn: &mut sqlx::PgConnection,
        schema: &Schema,
        job_id: JobId,
        kind: &str,
    ) -> Result<(), sqlx::Error> {
        let sql = format!(
            "INSERT INTO {} (job_id, kind) VALUES ($1, $2) ON CONFLICT (job_id) DO NOTHING",
            schema.qualify("soak_inserted")
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(job_id.0)
            .bind(kind)
            .execute(conn)
            .await
            .map(drop)
    }
}

impl Ledger for SqliteDriver {
    async fn record_attempt(
        &self,
        run_id: &str,
        job_id: JobId,
        attempt: i16,
        kind: &str,
        process: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO soak_attempts (run_id, job_id, attempt, kind, process) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
        )
        .bind(run_id)
        .bind(job_id.0)
        .bind(i32::from(attempt))
        .bind(kind)
        .bind(process)
        .execute(self.pool())
        .await
        .map(drop)
    }

    async fn complete_with_effect<A: Send + Sync>(
        &self,
        job: &Job<A>,
        process: &str,
    ) -> Result<(), WorkError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("INSERT INTO soak_effects (job_id, attempt, process) VALUES (?, ?, ?)")
            .bind(job.row.id.0)
            .bind(i32::from(job.row.attempt))
            .bind(process)
            .execute(&mut *tx)
            .await?;
        job.complete_tx::<SqliteDriver>(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_inserted(
        conn: &mut sqlx::SqliteConnection,
        _schema: &Schema,
        job_id: JobId,
        kind: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO soak_inserted (job_id, kind) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(job_id.0)
            .bind(kind)
            .execute(conn)
            .await
            .map(drop)
    }
}
