//! The client's inserts: resolve each job's options, run the insert middleware, fold
//! duplicates, store, and notify the queues that got work.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use millrace_driver::{Driver, Executor, JobInsertParams, Topic};
use millrace_types::JobState;

use super::Client;
use crate::error::{Error, Result};
use crate::insert_opts::InsertOpts;
use crate::insert_params::{InsertManyParams, InsertResult};
use crate::job_args::JobArgs;

/// The least time between two `river_insert` notifications for one queue, as River's
/// FetchCooldown.
const INSERT_NOTIFY_INTERVAL: Duration = Duration::from_millis(100);
impl<D: Driver> Client<D> {
    /// Inserts a job.
    ///
    /// `opts` win over the args type's [`JobArgs::insert_opts`], which win over the client's.
    /// A unique job whose key matches a live job is not inserted: the live job is returned
    /// with `unique_skipped_as_duplicate` set.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInsert`] or [`Error::ArgsEncode`] for invalid options or args (nothing
    /// is stored), [`Error::Driver`] when the database fails.
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
    pub async fn insert_many(
        &self,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<Vec<InsertResult>> {
        let jobs = self.resolve_all(params)?;
        self.insert_jobs(&mut self.inner.driver.executor(), jobs)
            .await
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
    pub async fn insert_many_tx(
        &self,
        conn: &mut D::Conn,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<Vec<InsertResult>> {
        let jobs = self.resolve_all(params)?;
        self.insert_jobs(&mut self.inner.driver.conn_executor(conn), jobs)
            .await
    }

    /// Inserts many jobs by the database's fastest path (COPY on PostgreSQL) and returns how
    /// many were stored, without returning rows.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInsert`] if any job has unique options (COPY cannot skip duplicates;
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
    pub async fn insert_many_fast(
        &self,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<u64> {
        let jobs = self.resolve_fast(params)?;
        let mut exec = self.inner.driver.executor();
        let count = exec.job_insert_fast(&jobs).await?;
        self.notify_inserted(&mut exec, &jobs).await?;
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
    pub async fn insert_many_fast_tx(
        &self,
        conn: &mut D::Conn,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<u64> {
        let jobs = self.resolve_fast(params)?;
        let mut exec = self.inner.driver.conn_executor(conn);
        let count = exec.job_insert_fast(&jobs).await?;
        self.notify_inserted(&mut exec, &jobs).await?;
        Ok(count)
    }

    /// Stores resolved jobs through the insert middleware, then notifies.
    async fn insert_jobs<E: Executor>(
        &self,
        exec: &mut E,
        jobs: Vec<JobInsertParams>,
    ) -> Result<Vec<InsertResult>> {
        let middleware = &self.inner.insert_middleware;
        if middleware.is_empty() {
            let results = insert_deduplicated(exec, &jobs).await?;
            self.notify_inserted(exec, &jobs).await?;
            return Ok(results);
        }
        crate::middleware::run_insert_chain(middleware, jobs, move |jobs| {
            Box::pin(async move {
                let results = insert_deduplicated(exec, &jobs).await?;
                self.notify_inserted(exec, &jobs).await?;
                Ok(results)
            })
        })
        .await
    }

    /// Resolves and validates each job's options, then lets the insert middleware see it.
    fn resolve_all(
        &self,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<Vec<JobInsertParams>> {
        let now = self.inner.config.now();
        let test_clock = self.inner.config.clock.is_some();
        params
            .into_iter()
            .map(|p| {
                let mut job = p.resolve(&self.inner.insert_opts, now)?;
                if test_clock {
                    // Stamped by the test clock rather than the database's, so the job is due
                    // by the clock the client fetches by, as River stamps inserts with its
                    // stubbed time.
                    job.created_at.get_or_insert(now);
                    job.scheduled_at.get_or_insert(now);
                }
                for m in &self.inner.insert_middleware {
                    m.insert_job(&mut job)?;
                }
                Ok(job)
            })
            .collect()
    }

    fn resolve_fast(
        &self,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<Vec<JobInsertParams>> {
        let jobs = self.resolve_all(params)?;
        if let Some(job) = jobs.iter().find(|j| j.unique_key.is_some()) {
            return Err(Error::InvalidInsert(format!(
                "a job of kind {:?} has unique options, which the fast (COPY) insert cannot \
                 honour; insert it with insert_many",
                job.kind
            )));
        }
        Ok(jobs)
    }

    /// Sends `river_insert` for each queue that got available jobs, at most once per queue per
    /// 100 ms from this client. On a transaction the notification is delivered at commit.
    async fn notify_inserted<E: Executor>(
        &self,
        exec: &mut E,
        jobs: &[JobInsertParams],
    ) -> Result<()> {
        let queues: std::collections::BTreeSet<&str> = jobs
            .iter()
            .filter(|j| j.state == JobState::Available)
            .map(|j| j.queue.as_str())
            .collect();
        if queues.is_empty() {
            return Ok(());
        }
        if self.inner.driver.supports_listen_notify() {
            let due: Vec<(Topic, String)> = {
                let now = Instant::now();
                let mut last = self.inner.insert_notified.lock().expect("lock poisoned");
                queues
                    .iter()
                    .filter(|queue| {
                        let recent = last
                            .get(**queue)
                            .is_some_and(|at| now.duration_since(*at) < INSERT_NOTIFY_INTERVAL);
                        if !recent {
                            last.insert((**queue).to_owned(), now);
                        }
                        !recent
                    })
                    .map(|queue| {
                        let payload = serde_json::json!({ "queue": queue }).to_string();
                        (Topic::Insert, payload)
                    })
                    .collect()
            };
            exec.notify_many(&due).await?;
        }
        // This client's own producers need no notification: wake them now, whatever the
        // 100 ms limit held back. (On a transaction this may be before commit; they then find
        // nothing, and the notification at commit or their poll wakes them again.)
        if let Ok(runtime) = self.inner.runtime.try_lock() {
            if let Some(runtime) = runtime.as_ref() {
                for queue in &queues {
                    runtime.shared.wake_queue(queue);
                }
            }
        }
        Ok(())
    }
}

/// Inserts a batch after folding jobs with equal unique keys into their first occurrence, since
/// PostgreSQL fails a statement that conflicts with itself. Repeats get the first job's row,
/// flagged as duplicates.
async fn insert_deduplicated<E: Executor>(
    exec: &mut E,
    jobs: &[JobInsertParams],
) -> Result<Vec<InsertResult>> {
    let mut first_of: HashMap<&[u8], usize> = HashMap::new();
    // For each input job: the index of the job actually sent that stands for it.
    let mut sent_index = Vec::with_capacity(jobs.len());
    let mut to_send: Vec<&JobInsertParams> = Vec::with_capacity(jobs.len());
    let mut is_repeat = Vec::with_capacity(jobs.len());
    for job in jobs {
        let live_key = job.unique_key.as_deref().filter(|_| {
            job.unique_states
                .is_some_and(|states| states.contains(job.state))
        });
        match live_key.and_then(|key| first_of.get(key).copied()) {
            Some(index) => {
                sent_index.push(index);
                is_repeat.push(true);
            }
            None => {
                if let Some(key) = live_key {
                    first_of.insert(key, to_send.len());
                }
                sent_index.push(to_send.len());
                is_repeat.push(false);
                to_send.push(job);
            }
        }
    }
    let stored = if to_send.len() == jobs.len() {
        exec.job_insert_many(jobs).await?
    } else {
        let owned: Vec<JobInsertParams> = to_send.into_iter().cloned().collect();
        exec.job_insert_many(&owned).await?
    };
    Ok(sent_index
        .into_iter()
        .zip(is_repeat)
        .map(|(index, repeat)| {
            let mut result = stored[index].clone();
            result.unique_skipped_as_duplicate |= repeat;
            result
        })
        .collect())
}
