use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use millrace_driver::{
    Driver, Executor, JobCompleteParams, JobInsertParams, JobInsertResult, JobOutcome, Topic,
};
use millrace_types::{JobId, JobState};
use tokio::sync::broadcast;

use crate::event::Event;
use crate::insert::InsertManyParams;
use crate::middleware::{ErrorHandler, InsertMiddleware, WorkMiddleware};
use crate::periodic::{PeriodicJob, PeriodicJobs, PeriodicRegistry};
use crate::persistent::{PersistentEntry, PersistentOpts, PersistentWorker};
use crate::runtime::{MaintenanceConfig, Runtime, RuntimeConfig};
use crate::{
    DefaultRetryPolicy, Error, InsertOpts, JobArgs, QueueConfig, Result, RetryPolicy, TestClock,
    Workers,
};

/// How long `start` waits for the notification listener.
const LISTEN_READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Events buffered per subscriber before a slow one starts losing them.
const EVENT_CAPACITY: usize = 4_096;
/// How often a producer refreshes its queue's `updated_at` and paused state.
const QUEUE_TOUCH_INTERVAL: Duration = Duration::from_secs(30);
/// Outcomes that make the completer store a batch at once.
const COMPLETER_FLUSH_AT: usize = 100;
/// The longest an outcome waits for its batch.
const COMPLETER_FLUSH_INTERVAL: Duration = Duration::from_millis(50);

fn validate_queue_config(name: &str, queue: &QueueConfig) -> Result<()> {
    crate::insert::validate_queue(name).map_err(|err| Error::Config(err.to_string()))?;
    if !(1..=QueueConfig::MAX_WORKERS_LIMIT).contains(&queue.max_workers) {
        return Err(Error::Config(format!(
            "queue {name:?}: max_workers must be between 1 and {}, got {}",
            QueueConfig::MAX_WORKERS_LIMIT,
            queue.max_workers
        )));
    }
    Ok(())
}

/// The least time between two `river_insert` notifications for one queue, as River's
/// FetchCooldown.
const INSERT_NOTIFY_INTERVAL: Duration = Duration::from_millis(100);

/// The result of inserting one job.
///
/// ```no_run
/// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
/// # #[derive(serde::Serialize)] struct Ping {}
/// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
/// let inserted = client.insert(Ping {}, None).await?;
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
/// struct Ping {}
/// impl JobArgs for Ping {
///     const KIND: &'static str = "ping";
/// }
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
/// let client = Client::builder(PgDriver::new(pool)).build()?;
/// let inserted = client.insert(Ping {}, None).await?;
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

pub(crate) struct ClientInner<D: Driver> {
    pub(crate) driver: D,
    pub(crate) insert_opts: InsertOpts,
    /// When each queue last had an insert notification sent, for the 100 ms limit.
    insert_notified: Mutex<HashMap<String, Instant>>,
    pub(crate) config: RuntimeConfig,
    pub(crate) workers: Workers,
    pub(crate) queues: Mutex<Vec<(String, QueueConfig)>>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) runtime: tokio::sync::Mutex<Option<Runtime<D>>>,
    pub(crate) periodic: Arc<PeriodicRegistry>,
    pub(crate) persistent: Vec<PersistentEntry>,
    pub(crate) insert_middleware: Vec<Arc<dyn InsertMiddleware>>,
}

impl<D: Driver> std::fmt::Debug for ClientInner<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.config.id)
            .field("driver", &self.driver.name())
            .field("schema", &self.driver.schema().name())
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
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
#[must_use]
pub struct ClientBuilder<D: Driver> {
    driver: D,
    insert_opts: InsertOpts,
    id: Option<String>,
    queues: Vec<(String, QueueConfig)>,
    workers: Workers,
    fetch_cooldown: Duration,
    fetch_poll_interval: Duration,
    poll_only: bool,
    job_timeout: Option<Duration>,
    cancel_grace: Duration,
    stop_database_timeout: Duration,
    retry_policy: Arc<dyn RetryPolicy>,
    schedule_interval: Duration,
    completer_batch_max: usize,
    heartbeat_lease: Duration,
    maintenance: MaintenanceConfig,
    periodic_jobs: Vec<PeriodicJob>,
    persistent: Vec<Result<PersistentEntry>>,
    insert_middleware: Vec<Arc<dyn InsertMiddleware>>,
    work_middleware: Vec<Arc<dyn WorkMiddleware>>,
    metric_hooks: Vec<Arc<dyn crate::MetricHook>>,
    error_handler: Option<Arc<dyn ErrorHandler>>,
    test_clock: Option<TestClock>,
}

impl<D: Driver> std::fmt::Debug for ClientBuilder<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("id", &self.id)
            .field("queues", &self.queues)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl<D: Driver> ClientBuilder<D> {
    /// The client's id, recorded in `attempted_by` of the jobs it works. Defaults to River's
    /// form: the host name and the start time.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Works a queue. Adding a queue twice replaces its configuration.
    pub fn queue(mut self, name: impl Into<String>, config: QueueConfig) -> Self {
        let name = name.into();
        self.queues.retain(|(n, _)| *n != name);
        self.queues.push((name, config));
        self
    }

    /// The workers this client runs. A client without workers inserts and administers jobs
    /// but cannot start.
    pub fn workers(mut self, workers: Workers) -> Self {
        self.workers = workers;
        self
    }

    /// The least time between two fetches of one queue. Defaults to 100 ms, as River's
    /// FetchCooldown; lower it for lower latency at the cost of more queries.
    pub fn fetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.fetch_cooldown = cooldown;
        self
    }

    /// How often each queue is polled when no notification arrives. Defaults to 1 s, as
    /// River's FetchPollInterval.
    pub fn fetch_poll_interval(mut self, interval: Duration) -> Self {
        self.fetch_poll_interval = interval;
        self
    }

    /// Polls only, without LISTEN (for poolers that do not support it). Defaults to false.
    pub fn poll_only(mut self, poll_only: bool) -> Self {
        self.poll_only = poll_only;
        self
    }

    /// The default job timeout; `None` turns timeouts off. Defaults to 1 minute, as River.
    /// A worker's [`Worker::timeout`](crate::Worker::timeout) overrides it.
    pub fn job_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.job_timeout = timeout;
        self
    }

    /// How long a job whose token fired (timeout, hard stop) may run on before its task is
    /// aborted. Defaults to 5 s.
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// How long a stop waits on the database once the client's jobs have ended: to store the
    /// outcomes still pending, give back the jobs of a fetch whose reply was lost, release
    /// persistent instances and leaderships, and delete the client's heartbeat. Past it the
    /// stop gives up on what is left and returns, whatever the database does (down, or a
    /// network path that drops packets): jobs whose outcome was not stored stay `running`
    /// until a rescuer returns them (the dead-client rescue, once the heartbeat lease runs
    /// out), and leaderships and persistent instances expire with their leases.
    ///
    /// A stop therefore takes at most the time the jobs take (see [`Client::stop`],
    /// [`Client::stop_with_timeout`] and [`Client::stop_and_cancel`], which adds the cancel
    /// grace) plus this timeout. Defaults to 5 s.
    ///
    /// ```
    /// # fn example(driver: millrace_postgres::PgDriver) -> millrace::Result<()> {
    /// use std::time::Duration;
    /// let client = millrace::Client::builder(driver)
    ///     .stop_database_timeout(Duration::from_secs(2))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn stop_database_timeout(mut self, timeout: Duration) -> Self {
        self.stop_database_timeout = timeout;
        self
    }

    /// The retry policy. Defaults to [`DefaultRetryPolicy`], River's.
    pub fn retry_policy(mut self, policy: impl RetryPolicy) -> Self {
        self.retry_policy = Arc::new(policy);
        self
    }

    /// How often due scheduled and retryable jobs are made available. Defaults to 5 s, as
    /// River's scheduler.
    pub fn schedule_interval(mut self, interval: Duration) -> Self {
        self.schedule_interval = interval;
        self
    }

    /// Adds a periodic job; see [`PeriodicJob`]. Periodic jobs are scheduled by one Millrace
    /// client of the fleet at a time (the holder of the Millrace lease).
    ///
    /// [`build`](ClientBuilder::build) checks the job each periodic job inserts as
    /// [`Client::insert`] would, so invalid options fail the build instead of every run.
    ///
    /// ```
    /// # fn example(driver: millrace_postgres::PgDriver) {
    /// use std::time::Duration;
    /// use millrace::{Client, Error, InsertOpts, JobArgs, PeriodicJob, Schedule};
    ///
    /// #[derive(serde::Serialize)]
    /// struct Report {}
    /// impl JobArgs for Report {
    ///     const KIND: &'static str = "report";
    /// }
    ///
    /// let every_minute = Schedule::interval(Duration::from_secs(60));
    /// let bad = PeriodicJob::new(every_minute, || (Report {}, Some(InsertOpts::new().priority(9))));
    /// let built = Client::builder(driver).periodic_job(bad).build();
    /// assert!(matches!(built, Err(Error::InvalidInsert(_))));
    /// # }
    /// ```
    pub fn periodic_job(mut self, job: PeriodicJob) -> Self {
        self.periodic_jobs.push(job);
        self
    }

    /// Adds insert middleware; see [`InsertMiddleware`]. Middleware run in the order added,
    /// the first outermost.
    pub fn insert_middleware(mut self, middleware: impl InsertMiddleware) -> Self {
        self.insert_middleware.push(Arc::new(middleware));
        self
    }

    /// Adds work middleware for every job; see [`WorkMiddleware`]. Middleware run in the
    /// order added, the first outermost, around each worker's own.
    pub fn work_middleware(mut self, middleware: impl WorkMiddleware) -> Self {
        self.work_middleware.push(Arc::new(middleware));
        self
    }

    /// Adds a hook that receives the client's own measurements, such as each fetch's
    /// duration; see [`MetricHook`](crate::MetricHook). `millrace-otel` uses it for River's
    /// `river.job_get_available_duration`.
    pub fn metric_hook(mut self, hook: impl crate::MetricHook) -> Self {
        self.metric_hooks.push(Arc::new(hook));
        self
    }

    /// Sets the error handler, which sees every worker error and panic and may cancel the
    /// job; see [`ErrorHandler`].
    pub fn error_handler(mut self, handler: impl ErrorHandler) -> Self {
        self.error_handler = Some(Arc::new(handler));
        self
    }

    /// Takes the time from a [`TestClock`] instead of the system clock, so a test can move
    /// time for retries, scheduled and snoozed jobs, unique periods and periodic jobs; see
    /// [`TestClock`] for what follows it. Defaults to the system clock.
    ///
    /// ```no_run
    /// # async fn example(driver: millrace_postgres::PgDriver) -> millrace::Result<()> {
    /// use std::time::Duration;
    /// use millrace::{Client, TestClock};
    ///
    /// let clock = TestClock::new(jiff::Timestamp::now());
    /// let client = Client::builder(driver)
    ///     .test_clock(clock.clone())
    ///     .schedule_interval(Duration::from_millis(100))
    ///     .build()?;
    /// clock.advance(Duration::from_secs(3600)); // an hour's schedules are due
    /// # Ok(()) }
    /// ```
    pub fn test_clock(mut self, clock: TestClock) -> Self {
        self.test_clock = Some(clock);
        self
    }

    /// Registers a persistent worker: one instance of it runs across every client that
    /// registers the same name, restarted after failures and taken over when its client dies.
    /// See [`PersistentWorker`].
    pub fn persistent_worker<W: PersistentWorker>(self, name: &str, worker: W) -> Self {
        self.persistent_worker_with(name, worker, PersistentOpts::default())
    }

    /// [`ClientBuilder::persistent_worker`] with settings.
    pub fn persistent_worker_with<W: PersistentWorker>(
        mut self,
        name: &str,
        worker: W,
        opts: PersistentOpts,
    ) -> Self {
        self.persistent
            .push(PersistentEntry::new(name, worker, opts));
        self
    }

    /// How long a client's heartbeat lease lasts. A client renews it every third of the lease;
    /// once it runs out (the process died, or lost the database), the Millrace leaseholder
    /// returns the client's running jobs to `available` within about a second. A client that
    /// cannot renew in time cancels its own running jobs first. Defaults to 15 s; a few seconds
    /// is fine on a healthy network.
    pub fn heartbeat_lease(mut self, lease: Duration) -> Self {
        self.heartbeat_lease = lease;
        self
    }

    /// River's RescueStuckJobsAfter: running jobs older than this, held by clients without a
    /// live Millrace heartbeat (River's clients), are rescued. Defaults to the job timeout
    /// plus an hour, or an hour without a timeout.
    pub fn rescue_stuck_jobs_after(mut self, after: Duration) -> Self {
        self.maintenance.rescue_stuck_jobs_after = Some(after);
        self
    }

    /// How long completed jobs are kept; `None` keeps them for ever. Defaults to 24 h.
    pub fn completed_job_retention(mut self, retention: Option<Duration>) -> Self {
        self.maintenance.completed_retention = retention;
        self
    }

    /// How long cancelled jobs are kept; `None` keeps them for ever. Defaults to 24 h.
    pub fn cancelled_job_retention(mut self, retention: Option<Duration>) -> Self {
        self.maintenance.cancelled_retention = retention;
        self
    }

    /// How long discarded jobs are kept; `None` keeps them for ever. Defaults to 7 days.
    pub fn discarded_job_retention(mut self, retention: Option<Duration>) -> Self {
        self.maintenance.discarded_retention = retention;
        self
    }

    /// Whether the leader rebuilds `river_job`'s GIN indexes daily at midnight UTC, as River
    /// does. Defaults to true.
    pub fn reindexer(mut self, enabled: bool) -> Self {
        self.maintenance.reindexer = enabled;
        self
    }

    /// How often the leader's rescuer and cleaners run. Defaults to 30 s, as River's.
    pub fn maintenance_interval(mut self, interval: Duration) -> Self {
        self.maintenance.rescuer_interval = interval;
        self.maintenance.cleaner_interval = interval;
        self
    }

    /// The most outcomes stored in one statement. Defaults to 5,000.
    pub fn completer_batch_max(mut self, max: usize) -> Self {
        self.completer_batch_max = max;
        self
    }

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
    /// [`Error::Config`] naming the invalid setting. [`Error::InvalidInsert`] or
    /// [`Error::ArgsEncode`], as [`Client::insert`] returns them, naming the periodic job whose
    /// job an insert would refuse.
    pub fn build(self) -> Result<Client<D>> {
        if let Some(queue) = &self.insert_opts.queue {
            crate::insert::validate_queue(queue)
                .map_err(|err| Error::Config(format!("client insert_opts: {err}")))?;
        }
        for (name, queue) in &self.queues {
            validate_queue_config(name, queue)?;
        }
        let id = self
            .id
            .unwrap_or_else(|| crate::client_id::default_client_id(Timestamp::now()));
        if id.is_empty() || id.len() > 100 {
            return Err(Error::Config(format!(
                "client id must be 1 to 100 bytes, got {} bytes",
                id.len()
            )));
        }
        let positive = [
            ("fetch_cooldown", self.fetch_cooldown, Duration::ZERO),
            (
                "fetch_poll_interval",
                self.fetch_poll_interval,
                Duration::from_millis(1),
            ),
            (
                "schedule_interval",
                self.schedule_interval,
                Duration::from_millis(1),
            ),
            (
                "heartbeat_lease",
                self.heartbeat_lease,
                Duration::from_secs(1),
            ),
            (
                "maintenance_interval",
                self.maintenance.rescuer_interval,
                Duration::from_millis(1),
            ),
        ];
        for (name, value, min) in positive {
            if value < min {
                return Err(Error::Config(format!("{name} must be at least {min:?}")));
            }
        }
        if self.completer_batch_max == 0 {
            return Err(Error::Config(
                "completer_batch_max must be at least 1".to_owned(),
            ));
        }
        let mut persistent: Vec<PersistentEntry> = Vec::new();
        for entry in self.persistent {
            let entry = entry?;
            if persistent.iter().any(|p| p.name == entry.name) {
                return Err(Error::Config(format!(
                    "persistent worker {:?} is registered twice",
                    entry.name
                )));
            }
            persistent.push(entry);
        }
        let periodic = PeriodicJobs::new(Arc::new(PeriodicRegistry::new(
            self.insert_opts.clone(),
            self.test_clock.clone(),
        )));
        for job in self.periodic_jobs {
            periodic.add(job)?;
        }
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Ok(Client {
            inner: Arc::new(ClientInner {
                driver: self.driver,
                insert_opts: self.insert_opts,
                insert_notified: Mutex::new(HashMap::new()),
                config: RuntimeConfig {
                    id,
                    fetch_cooldown: self.fetch_cooldown,
                    fetch_poll_interval: self.fetch_poll_interval,
                    poll_only: self.poll_only,
                    job_timeout: self.job_timeout,
                    cancel_grace: self.cancel_grace,
                    stop_database_timeout: self.stop_database_timeout,
                    retry_policy: self.retry_policy,
                    schedule_interval: self.schedule_interval,
                    queue_touch_interval: QUEUE_TOUCH_INTERVAL,
                    completer_batch_max: self.completer_batch_max,
                    completer_flush_at: COMPLETER_FLUSH_AT.min(self.completer_batch_max),
                    completer_flush_interval: COMPLETER_FLUSH_INTERVAL,
                    heartbeat_lease: self.heartbeat_lease,
                    maintenance: self.maintenance,
                    work_middleware: self.work_middleware,
                    metric_hooks: self.metric_hooks,
                    error_handler: self.error_handler,
                    clock: self.test_clock,
                },
                workers: self.workers,
                queues: Mutex::new(self.queues),
                events,
                runtime: tokio::sync::Mutex::new(None),
                periodic: periodic.registry(),
                persistent,
                insert_middleware: self.insert_middleware,
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
            id: None,
            queues: Vec::new(),
            workers: Workers::new(),
            fetch_cooldown: Duration::from_millis(100),
            fetch_poll_interval: Duration::from_secs(1),
            poll_only: false,
            job_timeout: Some(Duration::from_secs(60)),
            cancel_grace: Duration::from_secs(5),
            stop_database_timeout: Duration::from_secs(5),
            retry_policy: Arc::new(DefaultRetryPolicy),
            schedule_interval: Duration::from_secs(5),
            completer_batch_max: 5_000,
            heartbeat_lease: Duration::from_secs(15),
            maintenance: MaintenanceConfig {
                rescue_stuck_jobs_after: None,
                rescuer_interval: Duration::from_secs(30),
                cleaner_interval: Duration::from_secs(30),
                completed_retention: Some(Duration::from_secs(24 * 3600)),
                cancelled_retention: Some(Duration::from_secs(24 * 3600)),
                discarded_retention: Some(Duration::from_secs(7 * 24 * 3600)),
                reindexer: true,
            },
            periodic_jobs: Vec::new(),
            persistent: Vec::new(),
            insert_middleware: Vec::new(),
            work_middleware: Vec::new(),
            metric_hooks: Vec::new(),
            error_handler: None,
            test_clock: None,
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
        let jobs = self.resolve_all(params)?;
        tracing::Span::current().record("count", jobs.len());
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
    #[tracing::instrument(name = "insert_many", skip_all, fields(count = tracing::field::Empty))]
    pub async fn insert_many_tx(
        &self,
        conn: &mut D::Conn,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<Vec<InsertResult>> {
        let jobs = self.resolve_all(params)?;
        tracing::Span::current().record("count", jobs.len());
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
    #[tracing::instrument(name = "insert_many_fast", skip_all, fields(count = tracing::field::Empty))]
    pub async fn insert_many_fast(
        &self,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<u64> {
        let jobs = self.resolve_fast(params)?;
        tracing::Span::current().record("count", jobs.len());
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
    #[tracing::instrument(name = "insert_many_fast", skip_all, fields(count = tracing::field::Empty))]
    pub async fn insert_many_fast_tx(
        &self,
        conn: &mut D::Conn,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<u64> {
        let jobs = self.resolve_fast(params)?;
        tracing::Span::current().record("count", jobs.len());
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

impl<D: Driver> Client<D> {
    /// The client's id, as recorded in `attempted_by`.
    pub fn id(&self) -> &str {
        &self.inner.config.id
    }

    /// Starts working jobs: one producer per queue, the completer, the notifier and the
    /// scheduler. Returns once they are spawned.
    ///
    /// # Errors
    ///
    /// [`Error::NoWorkers`] for a client without workers, [`Error::Config`] for a client
    /// with workers but no queue, [`Error::AlreadyStarted`] when it runs already.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// client.start().await?;
    /// // ... until shutdown:
    /// client.stop().await?;
    /// # Ok(()) }
    /// ```
    pub async fn start(&self) -> Result<()> {
        if self.inner.workers.is_empty() && self.inner.persistent.is_empty() {
            return Err(Error::NoWorkers);
        }
        let queues = self.inner.queues.lock().expect("lock poisoned").clone();
        if queues.is_empty() && !self.inner.workers.is_empty() {
            return Err(Error::Config(
                "a client with workers needs at least one queue".to_owned(),
            ));
        }
        let mut runtime = self.inner.runtime.lock().await;
        if runtime.is_some() {
            return Err(Error::AlreadyStarted);
        }
        // The first heartbeat before the first fetch, so every job this client takes is
        // covered by its lease; this also fails early on an unreachable or unmigrated database.
        self.inner
            .driver
            .executor()
            .client_heartbeat(&self.inner.config.id, self.inner.config.heartbeat_lease)
            .await?;
        let (started, listening) = Runtime::start(
            self.inner.driver.clone(),
            self.inner.config.clone(),
            self.inner.workers.clone(),
            &queues,
            &self.inner.persistent,
            self.inner.events.clone(),
            Arc::new(self.clone()),
        );
        *runtime = Some(started);
        drop(runtime);
        if let Some(listening) = listening {
            // Remote cancels and pauses only arrive through LISTEN: wait until it is in place,
            // but not for ever, since polling keeps the client correct without it.
            if tokio::time::timeout(LISTEN_READY_TIMEOUT, listening)
                .await
                .is_err()
            {
                tracing::warn!("notification listener not ready yet; polling until it is");
            }
        }
        Ok(())
    }

    /// Stops softly: no new jobs are fetched, running jobs finish, their outcomes are stored,
    /// then the client's tasks end.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] when the client is not running.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// client.stop().await?;
    /// # Ok(()) }
    /// ```
    pub async fn stop(&self) -> Result<()> {
        self.stop_inner(false, None).await
    }

    /// Stops softly, but after `timeout` cancels the jobs still running, as
    /// [`Client::stop_and_cancel`] does.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] when the client is not running.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// client.stop_with_timeout(std::time::Duration::from_secs(30)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn stop_with_timeout(&self, timeout: Duration) -> Result<()> {
        self.stop_inner(false, Some(timeout)).await
    }

    /// Stops hard: every running job's token fires; tasks still running after the cancel grace
    /// period are aborted, and only then do their jobs return to `available` without spending
    /// an attempt. Outcomes of jobs that finished are stored as usual.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] when the client is not running.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// client.stop_and_cancel().await?;
    /// # Ok(()) }
    /// ```
    pub async fn stop_and_cancel(&self) -> Result<()> {
        self.stop_inner(true, None).await
    }

    async fn stop_inner(&self, hard: bool, timeout: Option<Duration>) -> Result<()> {
        let runtime = self.inner.runtime.lock().await.take();
        match runtime {
            Some(runtime) => {
                runtime.stop(hard, timeout).await;
                Ok(())
            }
            None => Err(Error::NotStarted),
        }
    }

    /// The client's periodic jobs, to add and remove them, also while it runs.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
    /// println!("{} periodic jobs", client.periodic_jobs().len());
    /// # }
    /// ```
    pub fn periodic_jobs(&self) -> PeriodicJobs {
        PeriodicJobs::new(self.inner.periodic.clone())
    }

    /// Subscribes to the client's events: job outcomes (after they are stored) and queue
    /// pauses. A subscriber that falls more than 4,096 events behind loses the oldest and is
    /// told so by [`broadcast::error::RecvError::Lagged`]; the runtime never waits for it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
    /// let mut events = client.subscribe();
    /// while let Ok(event) = events.recv().await {
    ///     println!("{event:?}");
    /// }
    /// # }
    /// ```
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Works another queue from now on (and after the next start).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid name or configuration, or a queue already worked.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// client.queue_add("reports", millrace::QueueConfig::new().max_workers(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_add(&self, name: impl Into<String>, config: QueueConfig) -> Result<()> {
        let name = name.into();
        validate_queue_config(&name, &config)?;
        {
            let mut queues = self.inner.queues.lock().expect("lock poisoned");
            if queues.iter().any(|(n, _)| *n == name) {
                return Err(Error::Config(format!("queue {name:?} is already worked")));
            }
            queues.push((name.clone(), config.clone()));
        }
        if let Some(runtime) = self.inner.runtime.lock().await.as_mut() {
            runtime.add_queue(&name, &config);
        }
        Ok(())
    }

    /// Pauses a queue fleet-wide, or every queue for `"*"`: clients stop fetching from it
    /// (running jobs finish). Recorded in `river_queue`, so clients started later honour it,
    /// and announced on `river_control`, which River's clients follow too.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid queue name; [`Error::Driver`] when the database fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// client.queue_pause("email").await?;
    /// client.queue_resume("email").await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_pause(&self, name: &str) -> Result<()> {
        self.set_paused(name, true).await
    }

    /// Resumes a paused queue fleet-wide, or every queue for `"*"`.
    ///
    /// # Errors
    ///
    /// As [`Client::queue_pause`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// client.queue_resume("*").await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_resume(&self, name: &str) -> Result<()> {
        self.set_paused(name, false).await
    }

    async fn set_paused(&self, name: &str, paused: bool) -> Result<()> {
        if name != "*" {
            crate::insert::validate_queue(name).map_err(|err| Error::Config(err.to_string()))?;
        }
        self.inner
            .driver
            .executor()
            .queue_set_paused(name, paused)
            .await?;
        // Applied here at once; other clients follow the notification (or their next refresh).
        if let Some(runtime) = self.inner.runtime.lock().await.as_ref() {
            runtime.shared.told_paused(name, paused);
        }
        Ok(())
    }

    /// Completes a running job on the caller's connection, fenced on its attempt; see
    /// [`Job::complete_tx`](crate::Job::complete_tx).
    pub(crate) async fn complete_tx(
        &self,
        conn: &mut D::Conn,
        id: JobId,
        attempt: i16,
    ) -> Result<()> {
        let done = self
            .inner
            .driver
            .conn_executor(conn)
            .job_complete_many(&[JobCompleteParams {
                id,
                attempt,
                outcome: JobOutcome::Completed,
                metadata_merge: None,
            }])
            .await?;
        if done.is_empty() {
            return Err(Error::JobNotRunning(id));
        }
        Ok(())
    }
}

/// The result of [`Client::work_one_tx`]: how the attempt ended and the job's row after it.
#[derive(Debug, Clone)]
pub struct WorkedJob {
    /// How the attempt ended.
    pub kind: crate::EventKind,
    /// The job's row after its outcome was stored.
    pub job: millrace_types::JobRow,
}

impl<D: Driver> Client<D> {
    /// Inserts one job and works it with `worker` on the caller's connection or transaction,
    /// without starting the client: the test harness of River's `rivertest.Worker`. The
    /// insert, the attempt and its outcome are all in the caller's transaction, so a test can
    /// roll everything back. The client's timeout and retry policy apply.
    ///
    /// # Errors
    ///
    /// As [`Client::insert_tx`], and [`Error::Driver`] when the database fails. A failing or
    /// panicking worker is not an error here: its outcome is in the returned [`WorkedJob`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use millrace::{Job, JobArgs, WorkError, Worker, EventKind};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct A {}
    /// # impl JobArgs for A { const KIND: &'static str = "a"; }
    /// # struct AWorker;
    /// # impl Worker for AWorker {
    /// #     type Args = A;
    /// #     async fn work(&self, _job: Job<A>) -> Result<(), WorkError> { Ok(()) }
    /// # }
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// let worked = client.work_one_tx(&mut tx, AWorker, A {}, None).await?;
    /// assert_eq!(worked.kind, EventKind::JobCompleted);
    /// tx.rollback().await?;
    /// # Ok(()) }
    /// ```
    pub async fn work_one_tx<W: crate::Worker>(
        &self,
        conn: &mut D::Conn,
        worker: W,
        args: W::Args,
        opts: Option<InsertOpts>,
    ) -> Result<WorkedJob> {
        let inserted = self.insert_tx(&mut *conn, args, opts).await?;
        let id = inserted.job.id;
        let row = self
            .inner
            .driver
            .conn_executor(&mut *conn)
            .job_start_by_id(id, &self.inner.config.id)
            .await?
            .ok_or(Error::JobNotRunning(id))?;
        let mut workers = Workers::new();
        workers.register(worker)?;
        let hard_stop = tokio_util::sync::CancellationToken::new();
        let client_any: Arc<dyn std::any::Any + Send + Sync> = Arc::new(self.clone());
        let env = crate::job_executor::ExecEnv {
            workers: &workers,
            config: &self.inner.config,
            hard_stop: &hard_stop,
            client_any: &client_any,
        };
        let run = Arc::new(crate::worker::JobRunState::default());
        let (outcome, _) =
            crate::job_executor::execute(&env, &row, hard_stop.child_token(), run.clone()).await;
        let snoozed = matches!(outcome, JobOutcome::Snoozed { .. });
        let returned = matches!(outcome, JobOutcome::Returned);
        self.inner
            .driver
            .conn_executor(&mut *conn)
            .job_complete_many(&[JobCompleteParams {
                id,
                attempt: row.attempt,
                outcome,
                metadata_merge: crate::job_executor::output_merge(&run),
            }])
            .await?;
        let job = self
            .inner
            .driver
            .conn_executor(conn)
            .job_get_by_id(id)
            .await?
            .ok_or(Error::JobNotFound(id))?;
        Ok(WorkedJob {
            kind: crate::EventKind::from_state(job.state, snoozed, returned),
            job,
        })
    }
}
