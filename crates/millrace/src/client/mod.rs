pub(crate) mod builder;
pub(crate) mod client_id;
pub(crate) mod handle;
pub(crate) mod harness;
pub(crate) mod health;
pub(crate) mod insert;
pub(crate) mod inspect;
pub(crate) mod job_admin;
pub(crate) mod queue_admin;
pub(crate) mod sequence_admin;
pub(crate) mod shutdown;

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use millrace_driver::{Driver, Executor};
use tokio::sync::broadcast;

use self::handle::ClientHandle;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::insert::{Inserter, LocalQueues};
use crate::periodic::{PeriodicJobs, PeriodicRegistry};
use crate::persistent::PersistentEntry;
use crate::queue_config::QueueConfig;
use crate::runtime::config::RuntimeConfig;
use crate::runtime::{Runtime, StartArgs};
use crate::worker::Workers;

/// How long `start` waits for the notification listener.
const LISTEN_READY_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The insert pipeline, shared with the runtime for its own inserts.
    pub(crate) inserter: Arc<Inserter<D>>,
    pub(crate) config: RuntimeConfig,
    pub(crate) workers: Workers,
    pub(crate) queues: Mutex<Vec<(String, QueueConfig)>>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) runtime: tokio::sync::Mutex<Option<Runtime<D>>>,
    pub(crate) periodic: Arc<PeriodicRegistry>,
    pub(crate) persistent: Vec<PersistentEntry>,
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
impl<D: Driver> Client<D> {
    /// The client's driver.
    pub fn driver(&self) -> &D {
        &self.inner.driver
    }

    /// The client's id, as recorded in `attempted_by`.
    pub fn id(&self) -> &str {
        &self.inner.config.id
    }

    /// The queues this client works and how: each queue's name and [`QueueConfig`] (its
    /// `max_workers` and concurrency limit), in the order they were added. Empty for an
    /// insert-only client. Other clients' settings are not stored in the database, so this
    /// is only this client's view (the dashboard shows it as such).
    ///
    /// ```
    /// # fn example<D: millrace::Driver>(client: &millrace::Client<D>) {
    /// for (queue, config) in client.queue_configs() {
    ///     println!("{queue}: up to {} workers", config.max_workers);
    /// }
    /// # }
    /// ```
    pub fn queue_configs(&self) -> Vec<(String, QueueConfig)> {
        self.inner.queues.lock().expect("lock poisoned").clone()
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
        let (started, listening) = Runtime::start(StartArgs {
            driver: self.inner.driver.clone(),
            config: self.inner.config.clone(),
            workers: self.inner.workers.clone(),
            queues: &queues,
            persistent: &self.inner.persistent,
            events: self.inner.events.clone(),
            client_any: ClientHandle::erased(self),
            inserter: self.inner.inserter.clone(),
            periodic: self.inner.periodic.clone(),
        });
        // This client's inserts wake its own producers and keepers from now on.
        let local: Weak<dyn LocalQueues> = Arc::downgrade(&started.shared) as Weak<dyn LocalQueues>;
        self.inner.inserter.set_local(Some(local));
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
        let runtime = self.take_runtime().await;
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
}

impl<D: Driver> Client<D> {
    /// Takes the running runtime to stop it; inserts no longer wake it.
    pub(crate) async fn take_runtime(&self) -> Option<Runtime<D>> {
        let runtime = self.inner.runtime.lock().await.take();
        if runtime.is_some() {
            self.inner.inserter.set_local(None);
        }
        runtime
    }
}
