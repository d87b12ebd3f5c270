//! Building a client: every setting, its default and its validation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use millrace_driver::Driver;
use tokio::sync::broadcast;

use super::{Client, ClientInner};
use crate::clock::{Clock, TestClock};
use crate::error::{Error, Result};
use crate::insert::Inserter;
use crate::insert_opts::InsertOpts;
use crate::metric_hook::MetricHook;
use crate::middleware::{ErrorHandler, InsertMiddleware, WorkMiddleware};
use crate::periodic::{PeriodicJob, PeriodicJobs, PeriodicRegistry};
use crate::persistent::{PersistentEntry, PersistentOpts, PersistentWorker};
use crate::queue_config::QueueConfig;
use crate::retry_policy::{DefaultRetryPolicy, RetryPolicy};
use crate::runtime::config::{MaintenanceConfig, RuntimeConfig};
use crate::worker::Workers;

/// Events buffered per subscriber before a slow one starts losing them.
const EVENT_CAPACITY: usize = 4_096;
/// How often a producer refreshes its queue's `updated_at` and paused state.
const QUEUE_TOUCH_INTERVAL: Duration = Duration::from_secs(30);
/// Outcomes that make the completer store a batch at once.
const COMPLETER_FLUSH_AT: usize = 100;
/// The longest an outcome waits for its batch.
const COMPLETER_FLUSH_INTERVAL: Duration = Duration::from_millis(50);

pub(super) fn validate_queue_config(name: &str, queue: &QueueConfig) -> Result<()> {
    crate::names::validate_queue(name).map_err(|err| Error::Config(err.to_string()))?;
    if !(1..=QueueConfig::MAX_WORKERS_LIMIT).contains(&queue.max_workers) {
        return Err(Error::Config(format!(
            "queue {name:?}: max_workers must be between 1 and {}, got {}",
            QueueConfig::MAX_WORKERS_LIMIT,
            queue.max_workers
        )));
    }
    if let Some(limit) = &queue.concurrency {
        limit.validate().map_err(|source| Error::Limit {
            queue: name.to_owned(),
            source,
        })?;
    }
    if let Some(limit) = &queue.rate_limit {
        limit.validate().map_err(|source| Error::Limit {
            queue: name.to_owned(),
            source,
        })?;
    }
    Ok(())
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
    metric_hooks: Vec<Arc<dyn MetricHook>>,
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
    /// duration; see [`MetricHook`]. `millrace-otel` uses it for River's
    /// `river.job_get_available_duration`.
    pub fn metric_hook(mut self, hook: impl MetricHook) -> Self {
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
    /// [`Error::Config`] naming the invalid setting; [`Error::Limit`] for a queue's invalid
    /// concurrency limit. [`Error::InvalidInsert`] or
    /// [`Error::ArgsEncode`], as [`Client::insert`] returns them, naming the periodic job whose
    /// job an insert would refuse.
    pub fn build(self) -> Result<Client<D>> {
        if let Some(queue) = &self.insert_opts.queue {
            crate::names::validate_queue(queue)
                .map_err(|err| Error::Config(format!("client insert_opts: {err}")))?;
        }
        for (name, queue) in &self.queues {
            validate_queue_config(name, queue)?;
        }
        let id = self
            .id
            .unwrap_or_else(|| crate::client::client_id::default_client_id(Timestamp::now()));
        if id.is_empty() || id.len() > 100 {
            return Err(Error::Config(format!(
                "client id must be 1 to 100 bytes, got {} bytes",
                id.len()
            )));
        }
        // PostgreSQL's text cannot hold NUL: refused here rather than by the database at
        // start.
        if id.contains('\0') {
            return Err(Error::Config(format!(
                "client id {id:?} must not hold a NUL character"
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
        let clock = Clock::new(self.test_clock);
        let periodic = PeriodicJobs::new(Arc::new(PeriodicRegistry::new(
            self.insert_opts.clone(),
            clock.clone(),
        )));
        for job in self.periodic_jobs {
            periodic.add(job)?;
        }
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Ok(Client {
            inner: Arc::new(ClientInner {
                inserter: Arc::new(Inserter::new(
                    self.driver.clone(),
                    self.insert_opts,
                    clock.clone(),
                    self.insert_middleware,
                )),
                driver: self.driver,
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
                    clock,
                },
                workers: self.workers,
                queues: Mutex::new(self.queues),
                events,
                runtime: tokio::sync::Mutex::new(None),
                periodic: periodic.registry(),
                persistent,
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
}
