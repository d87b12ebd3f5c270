//! The client's insert verbs, each with its `_tx` twin; the work is the insert pipeline's
//! (`crate::insert`).

use millrace_driver::{Driver, Executor};

use super::Client;
use crate::error::Result;
use crate::insert_opts::InsertOpts;
use crate::insert_params::{InsertManyParams, InsertResult};
use crate::job_args::JobArgs;

impl<D: Driver> Client<D> {
    /// Inserts a job.
    ///
    /// `opts` win over the args type's [`JobArgs::insert_opts`], which win over the client's.
    /// A unique job whose key matches a live job is not inserted: the live job is returned
    /// with `unique_skipped_as_duplicate` set.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInsert`](crate::Error::InvalidInsert) or [`Error::ArgsEncode`](crate::Error::ArgsEncode) for invalid options or args (nothing
    /// is stored), [`Error::Driver`](crate::Error::Driver) when the database fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// # #[derive(serde::Serialize)] struct Ping {}
    /// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// use millrace::InsertOpts;
    /// client.insert(Ping {}, Some(InsertOpts::new().priority(2))).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "insert", skip_all, fields(kind = A::KIND))]
    pub async fn insert<A: JobArgs>(
        &self,
        args: A,
        opts: Option<InsertOpts>,
    ) -> Result<InsertResult> {
        let params = vec![InsertManyParams::new(args).opts(opts.unwrap_or_default())];
        let mut results = self.insert_many(params).await?;
        Ok(results.remove(0))
    }

    /// Inserts a job on the caller's connection or transaction: it is stored, and worked, only
    /// once the transaction commits, and not at all if it rolls back.
    ///
    /// # Errors
    ///
    /// As [`Client::insert`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// # #[derive(serde::Serialize)] struct Ping {}
    /// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// let mut tx = pool.begin().await?;
    /// // ... write business rows on `tx` ...
    /// client.insert_tx(&mut tx, Ping {}, None).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "insert", skip_all, fields(kind = A::KIND))]
    pub async fn insert_tx<A: JobArgs>(
        &self,
        conn: &mut D::Conn,
        args: A,
        opts: Option<InsertOpts>,
    ) -> Result<InsertResult> {
        let params = vec![InsertManyParams::new(args).opts(opts.unwrap_or_default())];
        let mut results = self.insert_many_tx(conn, params).await?;
        Ok(results.remove(0))
    }

    /// Inserts many jobs in one statement, returning each stored row in input order.
    ///
    /// Jobs with the same unique key in one batch are inserted once; the repeats return the
    /// first one's row with `unique_skipped_as_duplicate` set.
    ///
    /// # Errors
    ///
    /// As [`Client::insert`]: one invalid job fails the batch, and nothing is stored.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// # #[derive(serde::Serialize)] struct Ping {}
    /// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// use millrace::InsertManyParams;
    /// let results = client.insert_many((0..100).map(|_| InsertManyParams::new(Ping {}))).await?;
    /// assert_eq!(results.len(), 100);
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "insert_many", skip_all, fields(count = tracing::field::Empty))]
    pub async fn insert_many(
        &self,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<Vec<InsertResult>> {
        self.inner.inserter.insert_many(params).await
    }

    /// [`Client::insert_many`] on the caller's connection or transaction.
    ///
    /// # Errors
    ///
    /// As [`Client::insert_many`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// # #[derive(serde::Serialize)] struct Ping {}
    /// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// let mut tx = pool.begin().await?;
    /// client.insert_many_tx(&mut tx, [millrace::InsertManyParams::new(Ping {})]).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "insert_many", skip_all, fields(count = tracing::field::Empty))]
    pub async fn insert_many_tx(
        &self,
        conn: &mut D::Conn,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<Vec<InsertResult>> {
        let inserter = &self.inner.inserter;
        inserter
            .insert_many_on(&mut self.inner.driver.conn_executor(conn), params)
            .await
    }

    /// Inserts many jobs by the database's fastest path (COPY on PostgreSQL) and returns how
    /// many were stored, without returning rows.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInsert`](crate::Error::InvalidInsert) if any job has unique options (COPY cannot skip duplicates;
    /// use [`Client::insert_many`]), and as [`Client::insert`] otherwise.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// # #[derive(serde::Serialize)] struct Ping {}
    /// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// let count = client
    ///     .insert_many_fast((0..10_000).map(|_| millrace::InsertManyParams::new(Ping {})))
    ///     .await?;
    /// assert_eq!(count, 10_000);
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "insert_many_fast", skip_all, fields(count = tracing::field::Empty))]
    pub async fn insert_many_fast(
        &self,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<u64> {
        let jobs = self.inner.inserter.resolve_fast(params)?;
        tracing::Span::current().record("count", jobs.len());
        let mut exec = self.inner.driver.executor();
        let started = std::time::Instant::now();
        let stored = exec.job_insert_fast(&jobs).await;
        self.emit_insert_fast(jobs.len(), started, stored.is_ok());
        let count = stored?;
        self.inner
            .inserter
            .notify_inserted(&mut exec, &jobs)
            .await?;
        Ok(count)
    }

    /// [`Client::insert_many_fast`] on the caller's connection or transaction.
    ///
    /// # Errors
    ///
    /// As [`Client::insert_many_fast`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// # #[derive(serde::Serialize)] struct Ping {}
    /// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// let mut tx = pool.begin().await?;
    /// client.insert_many_fast_tx(&mut tx, [millrace::InsertManyParams::new(Ping {})]).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "insert_many_fast", skip_all, fields(count = tracing::field::Empty))]
    pub async fn insert_many_fast_tx(
        &self,
        conn: &mut D::Conn,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<u64> {
        let jobs = self.inner.inserter.resolve_fast(params)?;
        tracing::Span::current().record("count", jobs.len());
        let mut exec = self.inner.driver.conn_executor(conn);
        let started = std::time::Instant::now();
        let stored = exec.job_insert_fast(&jobs).await;
        self.emit_insert_fast(jobs.len(), started, stored.is_ok());
        let count = stored?;
        self.inner
            .inserter
            .notify_inserted(&mut exec, &jobs)
            .await?;
        Ok(count)
    }

    /// Tells the metric hooks of a batch sent by the fast path, which no insert middleware
    /// sees (so the OpenTelemetry insert counts include COPY inserts).
    fn emit_insert_fast(&self, count: usize, started: std::time::Instant, ok: bool) {
        let metric = crate::metric_hook::Metric::InsertManyFast {
            count,
            duration: started.elapsed(),
            ok,
        };
        for hook in &self.inner.config.metric_hooks {
            hook.emit(&metric);
        }
    }
}
