//! Persistent workers: one long-running instance of a loop across the whole fleet.
//!
//! An instance is an ordinary row of `river_job` (kind `millrace_persistent:<name>`, a queue of
//! its own, unique while live), so every River tool shows it. Every client with the worker
//! registered runs a keeper that claims the row in one conditional UPDATE when it is available
//! or when its holder stopped renewing it for a whole lease; no leader is involved. The holder
//! renews the row's `attempted_at` (so no River rescuer takes it for stuck) and fences itself:
//! when a renewal finds the row no longer running at its attempt, or renewals fail for most of
//! the lease, it fires the instance's token and, shortly after, aborts it, before any other
//! client could claim it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use millrace_types::{JobId, JobRow, JobState};
use tokio_util::sync::CancellationToken;

// The one way up from the API floor: an instance hands out the client running it.
use crate::error::{Error, Result};
use crate::insert_opts::{InsertOpts, UniqueOpts};
use crate::insert_params::InsertManyParams;
use crate::work_error::BoxError;

pub use millrace_driver::PERSISTENT_KIND_PREFIX;

/// The queue persistent workers use unless configured otherwise: no River client serving
/// `default` ever fetches them.
pub const PERSISTENT_QUEUE_DEFAULT: &str = "millrace_persistent";

/// A long-running loop that runs as exactly one instance across every client that registers
/// it.
///
/// `run` should loop until [`PersistentContext::cancelled`] fires (on shutdown and on lease
/// loss). Returning `Ok` or an error ends the instance; it is started again, after a capped
/// exponential backoff when it failed. Cancellation is cooperative: code that blocks without
/// awaiting cannot be stopped, so keep blocking work in `spawn_blocking` and watch the token.
///
/// ```
/// use millrace::{BoxError, PersistentContext, PersistentWorker};
///
/// struct OrderStream;
///
/// impl PersistentWorker for OrderStream {
///     async fn run(&self, ctx: PersistentContext) -> Result<(), BoxError> {
///         let mut cursor = 0u64;
///         while !ctx.is_cancelled() {
///             cursor += 1; // consume the next batch of the stream
///             ctx.record_progress(serde_json::json!({ "cursor": cursor })).await?;
///             tokio::select! {
///                 _ = ctx.cancelled() => break,
///                 _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
///             }
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait PersistentWorker: Send + Sync + 'static {
    /// Runs one instance until its token fires.
    fn run(
        &self,
        ctx: PersistentContext,
    ) -> impl Future<Output = std::result::Result<(), BoxError>> + Send;
}

/// Settings of one persistent worker.
///
/// ```
/// use std::time::Duration;
/// use millrace::PersistentOpts;
///
/// let opts = PersistentOpts::new().lease(Duration::from_secs(5)).restart_backoff(
///     Duration::from_millis(500),
///     Duration::from_secs(30),
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PersistentOpts {
    /// The queue of the instance's row. Defaults to [`PERSISTENT_QUEUE_DEFAULT`].
    pub queue: String,
    /// How long a holder that stopped renewing keeps the instance before another client may
    /// take it over. Defaults to 15 s.
    pub lease: Duration,
    /// The first restart delay after a failure; it doubles per consecutive failure, and each
    /// delay gets random jitter of up to as much again (capped at the longest), so that
    /// instances failing together do not restart in lockstep. Defaults to 1 s.
    pub backoff_min: Duration,
    /// The longest restart delay. Defaults to 60 s.
    pub backoff_max: Duration,
    /// How many of the most recent errors the row keeps. Defaults to 10.
    pub keep_errors: i32,
}

impl Default for PersistentOpts {
    fn default() -> Self {
        PersistentOpts {
            queue: PERSISTENT_QUEUE_DEFAULT.to_owned(),
            lease: Duration::from_secs(15),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            keep_errors: 10,
        }
    }
}

impl PersistentOpts {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the queue.
    #[must_use]
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Sets the lease (at least one second).
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets the restart backoff bounds.
    #[must_use]
    pub fn restart_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max;
        self
    }

    /// Sets how many recent errors the row keeps (at least 1).
    #[must_use]
    pub fn keep_errors(mut self, keep: i32) -> Self {
        self.keep_errors = keep;
        self
    }
}

type RunFn = Arc<
    dyn Fn(
            PersistentContext,
        ) -> Pin<Box<dyn Future<Output = std::result::Result<(), BoxError>> + Send>>
        + Send
        + Sync,
>;

/// A registered persistent worker, type-erased.
#[derive(Clone)]
pub(crate) struct PersistentEntry {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) opts: PersistentOpts,
    pub(crate) run: RunFn,
}

impl fmt::Debug for PersistentEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentWorker")
            .field("name", &self.name)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl PersistentEntry {
    pub(crate) fn new<W: PersistentWorker>(
        name: &str,
        worker: W,
        opts: PersistentOpts,
    ) -> Result<Self> {
        let kind = format!("{PERSISTENT_KIND_PREFIX}{name}");
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !valid_name || crate::names::validate_kind(&kind).is_err() {
            return Err(Error::Config(format!(
                "persistent worker name {name:?} is invalid: use letters, digits, '_', '-' and '.'"
            )));
        }
        crate::names::validate_queue(&opts.queue)
            .map_err(|err| Error::Config(format!("persistent worker {name:?}: {err}")))?;
        if opts.lease < Duration::from_secs(1) {
            return Err(Error::Config(format!(
                "persistent worker {name:?}: the lease must be at least 1 s"
            )));
        }
        if opts.backoff_min.is_zero() || opts.backoff_max < opts.backoff_min {
            return Err(Error::Config(format!(
                "persistent worker {name:?}: restart backoff needs 0 < min <= max"
            )));
        }
        let worker = Arc::new(worker);
        Ok(PersistentEntry {
            name: name.to_owned(),
            kind,
            opts,
            run: Arc::new(move |ctx| {
                let worker = worker.clone();
                Box::pin(async move { worker.run(ctx).await })
            }),
        })
    }

    /// The unique insert that keeps one live row for the worker: blocking in every state
    /// but the final ones, so a cancelled or finished row is replaced.
    pub(crate) fn ensure_params(&self) -> InsertManyParams {
        let opts = InsertOpts::new()
            .queue(self.opts.queue.clone())
            .max_attempts(i32::from(i16::MAX))
            .unique(UniqueOpts::new().by_state([
                JobState::Available,
                JobState::Pending,
                JobState::Retryable,
                JobState::Running,
                JobState::Scheduled,
            ]));
        let args = serde_json::json!({ "name": self.name }).to_string();
        InsertManyParams::raw(self.kind.clone(), args, opts)
    }
}

/// What an instance of a persistent worker sees.
#[derive(Clone)]
pub struct PersistentContext {
    name: Arc<str>,
    job: JobId,
    attempt: i16,
    fence: i64,
    token: CancellationToken,
    pub(crate) client: Arc<dyn std::any::Any + Send + Sync>,
    progress: ProgressFn,
}

/// Writes a metadata merge to the instance's row, fenced; `false` when the row was lost.
pub(crate) type ProgressFn =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<bool>> + Send>> + Send + Sync>;

impl fmt::Debug for PersistentContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentContext")
            .field("name", &self.name)
            .field("job", &self.job)
            .field("attempt", &self.attempt)
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

impl PersistentContext {
    /// The context of one held instance: the keeper builds it with the instance's fence and a
    /// way to write progress under it.
    pub(crate) fn new(
        name: &str,
        row: &JobRow,
        fence: i64,
        token: CancellationToken,
        client: Arc<dyn std::any::Any + Send + Sync>,
        progress: ProgressFn,
    ) -> Self {
        PersistentContext {
            name: name.into(),
            job: row.id,
            attempt: row.attempt,
            fence,
            token,
            client,
            progress,
        }
    }

    /// The persistent worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The id of the instance's row in `river_job`.
    pub fn job_id(&self) -> JobId {
        self.job
    }

    /// The instance's fencing token, to pass on to what the instance writes: a store that
    /// refuses writes with a lower token than it has seen never takes a stale instance's
    /// write.
    ///
    /// It grows by one with every start, anywhere in the fleet (restarts after a failure and
    /// handovers included), is never given back, and is the token the instance's own lease,
    /// [`record_progress`](Self::record_progress) and release are fenced on. It is kept in the
    /// row's metadata under `millrace:fence`.
    ///
    /// ```
    /// use millrace::{BoxError, PersistentContext, PersistentWorker};
    ///
    /// struct Consumer;
    ///
    /// impl PersistentWorker for Consumer {
    ///     async fn run(&self, ctx: PersistentContext) -> Result<(), BoxError> {
    ///         let token: i64 = ctx.fencing_token();
    ///         // Hand `token` to every write; the store refuses a lower one than it has seen.
    ///         # let _ = token;
    ///         ctx.cancelled().await;
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn fencing_token(&self) -> i64 {
        self.fence
    }

    /// The row's attempt number when this instance started.
    ///
    /// It grows with every start as the fencing token does, but stops at 32,767 (River
    /// stores it as a smallint) and is not what the instance's writes are fenced on.
    #[deprecated(note = "use `fencing_token`, the one token a persistent instance is fenced on")]
    pub fn attempt(&self) -> i16 {
        self.attempt
    }

    /// Fires on shutdown and when the instance is lost (its lease could not be renewed, or
    /// another client holds it).
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Waits until the instance should stop.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// Whether the instance should stop.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Records progress in the row's metadata under `progress`, fenced on the token.
    ///
    /// # Errors
    ///
    /// [`Error::JobNotRunning`] when this instance no longer holds the row (stop at once);
    /// [`Error::Driver`] when the database fails.
    pub async fn record_progress(&self, progress: serde_json::Value) -> Result<()> {
        let merge = serde_json::json!({ "progress": progress }).to_string();
        if (self.progress)(merge).await? {
            Ok(())
        } else {
            self.token.cancel();
            Err(Error::JobNotRunning(self.job))
        }
    }
}
