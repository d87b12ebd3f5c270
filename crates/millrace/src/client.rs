use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use millrace_driver::{Driver, Executor, JobInsertParams, JobInsertResult, Topic};
use millrace_types::JobState;

use crate::insert::InsertManyParams;
use crate::{Error, InsertOpts, JobArgs, Result};

/// The least time between two `river_insert` notifications for one queue, as River's
/// FetchCooldown.
const INSERT_NOTIFY_INTERVAL: Duration = Duration::from_millis(100);

/// The result of inserting one job.
///
/// ```no_run
/// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
/// # #[derive(serde::Serialize)] struct Ping;
/// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
/// let inserted = client.insert(Ping, None).await?;
/// if inserted.unique_skipped_as_duplicate {
///     println!("job {} was already there", inserted.job.id);
/// }
/// # Ok(()) }
/// ```
pub type InsertResult = JobInsertResult;

/// A Millrace client: inserts jobs, administers them, and (with workers) works them.
///
/// Cheap to clone; clones share one client.
///
/// ```no_run
/// use millrace::{Client, JobArgs};
/// use millrace_postgres::PgDriver;
///
/// #[derive(serde::Serialize)]
/// struct Ping;
/// impl JobArgs for Ping {
///     const KIND: &'static str = "ping";
/// }
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
/// let client = Client::builder(PgDriver::new(pool)).build()?;
/// let inserted = client.insert(Ping, None).await?;
/// println!("inserted job {}", inserted.job.id);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Client<D: Driver> {
    pub(crate) inner: Arc<ClientInner<D>>,
}

impl<D: Driver> Clone for Client<D> {
    fn clone(&self) -> Self {
        Client {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct ClientInner<D: Driver> {
    pub(crate) driver: D,
    pub(crate) insert_opts: InsertOpts,
    /// When each queue last had an insert notification sent, for the 100 ms limit.
    insert_notified: Mutex<HashMap<String, Instant>>,
}

/// Builds a [`Client`].
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// # let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
/// use millrace::{Client, InsertOpts};
/// let client = Client::builder(millrace_postgres::PgDriver::new(pool))
///     .insert_opts(InsertOpts::new().max_attempts(10))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use]
pub struct ClientBuilder<D: Driver> {
    driver: D,
    insert_opts: InsertOpts,
}

impl<D: Driver> ClientBuilder<D> {
    /// Insert options for every insert of this client, below the args type's and the
    /// insert's own.
    pub fn insert_opts(mut self, opts: InsertOpts) -> Self {
        self.insert_opts = opts;
        self
    }

    /// Validates the configuration and builds the client.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the invalid setting.
    pub fn build(self) -> Result<Client<D>> {
        if let Some(queue) = &self.insert_opts.queue {
            crate::insert::validate_queue(queue)
                .map_err(|err| Error::Config(format!("client insert_opts: {err}")))?;
        }
        Ok(Client {
            inner: Arc::new(ClientInner {
                driver: self.driver,
                insert_opts: self.insert_opts,
                insert_notified: Mutex::new(HashMap::new()),
            }),
        })
    }
}

impl<D: Driver> Client<D> {
    /// Starts building a client on a driver.
    pub fn builder(driver: D) -> ClientBuilder<D> {
        ClientBuilder {
            driver,
            insert_opts: InsertOpts::default(),
        }
    }

    /// The client's driver.
    pub fn driver(&self) -> &D {
        &self.inner.driver
    }

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
    /// # #[derive(serde::Serialize)] struct Ping;
    /// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// use millrace::InsertOpts;
    /// client.insert(Ping, Some(InsertOpts::new().priority(2))).await?;
    /// # Ok(()) }
    /// ```
    pub async fn insert<A: JobArgs>(&self, args: A, opts: Option<InsertOpts>) -> Result<InsertResult> {
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
    /// # #[derive(serde::Serialize)] struct Ping;
    /// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// let mut tx = pool.begin().await?;
    /// // ... write business rows on `tx` ...
    /// client.insert_tx(&mut tx, Ping, None).await?;
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
    /// # #[derive(serde::Serialize)] struct Ping;
    /// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// use millrace::InsertManyParams;
    /// let results = client.insert_many((0..100).map(|_| InsertManyParams::new(Ping))).await?;
    /// assert_eq!(results.len(), 100);
    /// # Ok(()) }
    /// ```
    pub async fn insert_many(
        &self,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<Vec<InsertResult>> {
        let jobs = self.resolve_all(params)?;
        let mut exec = self.inner.driver.executor();
        let results = insert_deduplicated(&mut exec, &jobs).await?;
        self.notify_inserted(&mut exec, &jobs).await?;
        Ok(results)
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
    /// # #[derive(serde::Serialize)] struct Ping;
    /// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// let mut tx = pool.begin().await?;
    /// client.insert_many_tx(&mut tx, [millrace::InsertManyParams::new(Ping)]).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn insert_many_tx(
        &self,
        conn: &mut D::Conn,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<Vec<InsertResult>> {
        let jobs = self.resolve_all(params)?;
        let mut exec = self.inner.driver.conn_executor(conn);
        let results = insert_deduplicated(&mut exec, &jobs).await?;
        self.notify_inserted(&mut exec, &jobs).await?;
        Ok(results)
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
    /// # #[derive(serde::Serialize)] struct Ping;
    /// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// let count = client
    ///     .insert_many_fast((0..10_000).map(|_| millrace::InsertManyParams::new(Ping)))
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
    /// # #[derive(serde::Serialize)] struct Ping;
    /// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// let mut tx = pool.begin().await?;
    /// client.insert_many_fast_tx(&mut tx, [millrace::InsertManyParams::new(Ping)]).await?;
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

    fn resolve_all(
        &self,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<Vec<JobInsertParams>> {
        let now = Timestamp::now();
        params
            .into_iter()
            .map(|p| p.resolve(&self.inner.insert_opts, now))
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
    async fn notify_inserted<E: Executor>(&self, exec: &mut E, jobs: &[JobInsertParams]) -> Result<()> {
        if !self.inner.driver.supports_listen_notify() {
            return Ok(());
        }
        let due: Vec<(Topic, String)> = {
            let now = Instant::now();
            let mut last = self.inner.insert_notified.lock().expect("lock poisoned");
            let mut due = Vec::new();
            for job in jobs.iter().filter(|j| j.state == JobState::Available) {
                let recent = last
                    .get(&job.queue)
                    .is_some_and(|at| now.duration_since(*at) < INSERT_NOTIFY_INTERVAL);
                if !recent {
                    last.insert(job.queue.clone(), now);
                    let payload = serde_json::json!({ "queue": job.queue }).to_string();
                    due.push((Topic::Insert, payload));
                }
            }
            due
        };
        exec.notify_many(&due).await?;
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
