//! Reading and changing queues: get, list, update metadata. Pause and resume are on
//! [`Client::queue_pause`] and [`Client::queue_resume`].

use millrace_driver::{Driver, Executor};

pub use millrace_driver::QueueRow;

use super::Client;
use super::builder::validate_queue_config;
use crate::error::{Error, Result};
use crate::limits::ConcurrencyLimit;
use crate::queue_config::QueueConfig;

/// How long [`Client::queue_pause`] waits for this client's fetches that began before the
/// pause: a fetch takes milliseconds, unless the database is away.
const PAUSE_SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The most queues one [`Client::queue_list`] call returns.
pub const QUEUE_LIST_MAX_LIMIT: i64 = 10_000;

/// Changes to a queue, for [`Client::queue_update`].
///
/// ```
/// use millrace::QueueUpdateParams;
///
/// let params = QueueUpdateParams::new().metadata(serde_json::json!({ "owner": "billing" }));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct QueueUpdateParams {
    /// The queue's new metadata, a JSON object (replacing the old).
    pub metadata: Option<serde_json::Value>,
}

impl QueueUpdateParams {
    /// No changes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the queue's metadata.
    #[must_use]
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

impl<D: Driver> Client<D> {
    /// One queue by name.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`] when no client has worked or paused the queue.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// let queue = client.queue_get("default").await?;
    /// println!("paused: {}", queue.paused_at.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn queue_get(&self, name: &str) -> Result<QueueRow> {
        self.inner
            .driver
            .executor()
            .queue_get(name)
            .await?
            .ok_or_else(|| Error::QueueNotFound(name.to_owned()))
    }

    /// Queues by name, at most `limit` (1 to [`QUEUE_LIST_MAX_LIMIT`]), after `after` when
    /// given, for paging.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a limit out of range.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// for queue in client.queue_list(None, 100).await? {
    ///     println!("{} {}", queue.name, queue.metadata);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn queue_list(&self, after: Option<&str>, limit: i64) -> Result<Vec<QueueRow>> {
        if !(1..=QUEUE_LIST_MAX_LIMIT).contains(&limit) {
            return Err(Error::InvalidArgument(format!(
                "queue list limit must be between 1 and {QUEUE_LIST_MAX_LIMIT}, got {limit}"
            )));
        }
        Ok(self
            .inner
            .driver
            .executor()
            .queue_list(after, limit)
            .await?)
    }

    /// Updates a queue; a metadata change is announced on `river_control`
    /// (`metadata_changed`), so every client's subscribers see
    /// [`Event::QueueMetadataChanged`](crate::Event::QueueMetadataChanged).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid queue name, [`Error::InvalidArgument`] for metadata
    /// that is not a JSON object or is larger than [`QUEUE_METADATA_MAX_BYTES`] encoded.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// use millrace::QueueUpdateParams;
    /// client
    ///     .queue_update("email", QueueUpdateParams::new().metadata(serde_json::json!({ "owner": "growth" })))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_update(&self, name: &str, params: QueueUpdateParams) -> Result<QueueRow> {
        update(&mut self.inner.driver.executor(), name, params).await
    }

    /// [`Client::queue_update`] on the caller's connection or transaction; the change and its
    /// announcement take effect at commit.
    ///
    /// # Errors
    ///
    /// As [`Client::queue_update`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// client.queue_update_tx(&mut tx, "email", millrace::QueueUpdateParams::new()).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_update_tx(
        &self,
        conn: &mut D::Conn,
        name: &str,
        params: QueueUpdateParams,
    ) -> Result<QueueRow> {
        update(&mut self.inner.driver.conn_executor(conn), name, params).await
    }
}

impl<D: Driver> Client<D> {
    /// Overrides a queue's concurrency limit across the fleet, or removes the override with
    /// `None`: sets the `concurrency` key of the queue's metadata in River Pro's shape
    /// ([`ConcurrencyLimit::to_queue_metadata`]), keeping its other keys, in one statement
    /// (creating the queue's row if missing). Every client's producer of the queue applies it
    /// at once on PostgreSQL (the `metadata_changed` notification) and at its next refresh
    /// (30 s) on SQLite; a client applies only a limit it can enforce, as
    /// [`ConcurrencyLimit::from_queue_metadata`] reads it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid queue name, [`Error::Limit`] for an invalid limit
    /// (checked before anything is written), [`Error::Driver`] when the database fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// use millrace::ConcurrencyLimit;
    ///
    /// // At most 2 billing jobs at once per customer, fleet-wide, until removed.
    /// let limit = ConcurrencyLimit::global(2).partition_by_args(["customer_id"]);
    /// client.queue_set_concurrency("billing", Some(&limit)).await?;
    /// client.queue_set_concurrency("billing", None).await?;
    /// # Ok(()) }
    /// ```
    pub async fn queue_set_concurrency(
        &self,
        name: &str,
        limit: Option<&ConcurrencyLimit>,
    ) -> Result<QueueRow> {
        crate::names::validate_queue(name).map_err(|err| Error::Config(err.to_string()))?;
        let value = match limit {
            None => None,
            Some(limit) => {
                limit.validate().map_err(|source| Error::Limit {
                    queue: name.to_owned(),
                    source,
                })?;
                Some(limit.to_metadata_value().to_string())
            }
        };
        Ok(self
            .inner
            .driver
            .executor()
            .queue_set_metadata_key(name, ConcurrencyLimit::METADATA_KEY, value.as_deref())
            .await?)
    }
}

/// The largest queue metadata, encoded: it travels in the `metadata_changed` notification,
/// and PostgreSQL refuses payloads of 8,000 bytes or more.
pub const QUEUE_METADATA_MAX_BYTES: usize = 7_000;

async fn update<E: Executor>(
    exec: &mut E,
    name: &str,
    params: QueueUpdateParams,
) -> Result<QueueRow> {
    crate::names::validate_queue(name).map_err(|err| Error::Config(err.to_string()))?;
    match params.metadata {
        None => exec
            .queue_get(name)
            .await?
            .ok_or_else(|| Error::QueueNotFound(name.to_owned())),
        Some(value @ serde_json::Value::Object(_)) => {
            let encoded = value.to_string();
            if encoded.len() > QUEUE_METADATA_MAX_BYTES {
                return Err(Error::InvalidArgument(format!(
                    "queue metadata is {} bytes encoded; the limit is {QUEUE_METADATA_MAX_BYTES}, \
                     since every client is told of it in one notification",
                    encoded.len()
                )));
            }
            Ok(exec.queue_update_metadata(name, &encoded).await?)
        }
        Some(other) => Err(Error::InvalidArgument(format!(
            "queue metadata must be a JSON object, not {other}"
        ))),
    }
}

impl<D: Driver> Client<D> {
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
    /// Once this returns, this client fetches nothing more from the queue: a fetch of its own
    /// that began before the pause is waited for (up to 5 s, should the database hang).
    /// Other clients stop once the notification reaches them, or at their next queue
    /// refresh when notifications are off; a fetch of theirs already under way may still
    /// take jobs.
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
            crate::names::validate_queue(name).map_err(|err| Error::Config(err.to_string()))?;
        }
        self.inner
            .driver
            .executor()
            .queue_set_paused(name, paused)
            .await?;
        // Applied here at once; other clients follow the notification (or their next refresh).
        let gates = match self.inner.runtime.lock().await.as_ref() {
            Some(runtime) => {
                runtime.shared.told_paused(name, paused);
                if paused {
                    runtime.shared.fetch_gates(name)
                } else {
                    Vec::new()
                }
            }
            None => Vec::new(),
        };
        // A fetch of this client that began before the pause may still take a job inserted
        // since: wait it out, so that once this returns this client takes nothing more from
        // the queue. Bounded, as a fetch may hang while the database is away; the pause
        // itself is recorded already.
        let settle = async {
            for gate in gates {
                drop(gate.lock().await);
            }
        };
        let _ = tokio::time::timeout(PAUSE_SETTLE_TIMEOUT, settle).await;
        Ok(())
    }
}
