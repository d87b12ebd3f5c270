//! Workers: the code that works jobs of one kind, and the registry a client runs them from.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use jiff::Timestamp;
use millrace_types::JobRow;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

// The one way up from the API floor: a job hands out the client working it.
use crate::error::{Error, Result};
use crate::job_args::JobArgs;
use crate::work_error::WorkError;

/// Works jobs of one kind.
///
/// Implementations write `async fn work`; the future must be `Send` because each job runs on
/// its own task.
///
/// ```
/// use std::time::Duration;
/// use millrace::{Job, JobArgs, WorkError, Worker};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Resize { image_id: i64 }
/// impl JobArgs for Resize { const KIND: &'static str = "resize"; }
///
/// struct ResizeWorker;
///
/// impl Worker for ResizeWorker {
///     type Args = Resize;
///
///     async fn work(&self, job: Job<Resize>) -> Result<(), WorkError> {
///         if job.row.attempt > 3 {
///             // Not worth retrying further.
///             return Err(WorkError::cancel("image keeps failing"));
///         }
///         println!("resizing image {}", job.args.image_id);
///         Ok(())
///     }
///
///     fn timeout(&self, _job: &Job<Resize>) -> Option<Duration> {
///         Some(Duration::from_secs(30))
///     }
/// }
/// ```
pub trait Worker: Send + Sync + 'static {
    /// The args this worker takes; their `KIND` selects the worker.
    type Args: JobArgs + DeserializeOwned;

    /// Works one job. `Ok` completes it; an error retries it (or discards it after its last
    /// attempt), unless it is [`WorkError::Cancel`] or [`WorkError::Snooze`].
    ///
    /// Long-running work should watch [`Job::cancelled`]: it fires on timeout, on
    /// [`Client::stop_and_cancel`](crate::Client::stop_and_cancel) and on a remote cancel.
    fn work(&self, job: Job<Self::Args>) -> impl Future<Output = Result<(), WorkError>> + Send;

    /// This job's timeout, over the client's. `None`, the default, keeps the client's;
    /// `Some(Duration::MAX)` turns the timeout off for this worker.
    fn timeout(&self, _job: &Job<Self::Args>) -> Option<Duration> {
        None
    }

    /// Middleware around this worker's jobs, inside the client's. Called once, when the worker
    /// is registered. Defaults to none.
    fn middleware(&self) -> Vec<Arc<dyn crate::middleware::WorkMiddleware>> {
        Vec::new()
    }

    /// When to retry this job after an error, over the client's retry policy. `None`, the
    /// default, keeps the policy's.
    fn next_retry(&self, _row: &JobRow) -> Option<Timestamp> {
        None
    }
}

/// A job handed to a worker: its decoded args, its row as fetched, and its context.
///
/// ```
/// # use millrace::{Job, JobArgs, WorkError};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct A {}
/// # impl JobArgs for A { const KIND: &'static str = "a"; }
/// async fn work(job: Job<A>) -> Result<(), WorkError> {
///     tokio::select! {
///         _ = job.cancelled() => Err(WorkError::msg("stopped before finishing")),
///         _ = tokio::time::sleep(std::time::Duration::from_millis(10)) => Ok(()),
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Job<A> {
    /// The decoded args.
    pub args: A,
    /// The row as fetched: state `running`, attempt already counted.
    pub row: JobRow,
    pub(crate) ctx: JobContext,
}

impl<A> Job<A> {
    /// A token that fires when the job should stop: on timeout, on a hard stop of the client,
    /// and on a remote cancel.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.ctx.token
    }

    /// Waits until the job should stop; see [`Job::cancellation_token`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn cancelled(&self) {
        self.ctx.token.cancelled().await;
    }

    /// Whether the job should stop.
    pub fn is_cancelled(&self) -> bool {
        self.ctx.token.is_cancelled()
    }

    /// Records the job's output, stored in its metadata under `output` with its outcome (River's
    /// `RecordOutput`). Recording again replaces it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the output does not encode to JSON, is larger than
    /// [`MAX_OUTPUT_BYTES`] or holds a NUL character (`\u0000`, which PostgreSQL's `jsonb`
    /// refuses; it would fail the completion of the job's whole batch).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use millrace::{Job, JobArgs, WorkError};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct A {}
    /// # impl JobArgs for A { const KIND: &'static str = "a"; }
    /// async fn work(job: Job<A>) -> Result<(), WorkError> {
    ///     job.set_output(&serde_json::json!({ "rows": 42 }))?;
    ///     Ok(())
    /// }
    /// ```
    pub fn set_output<T: serde::Serialize + ?Sized>(&self, output: &T) -> Result<()> {
        let encoded = serde_json::to_string(output).map_err(|err| {
            Error::InvalidArgument(format!("job output does not encode to JSON: {err}"))
        })?;
        if encoded.len() > MAX_OUTPUT_BYTES {
            return Err(Error::InvalidArgument(format!(
                "job output is {} bytes; the limit is {MAX_OUTPUT_BYTES}",
                encoded.len()
            )));
        }
        if crate::insert_params::json_holds_nul(&encoded) {
            return Err(Error::InvalidArgument(
                "job output must not hold a NUL character (\\u0000), which PostgreSQL's jsonb \
                 refuses"
                    .to_owned(),
            ));
        }
        *self.ctx.run.output.lock().expect("lock poisoned") = Some(encoded);
        Ok(())
    }

    /// Merges a JSON object into the job's metadata now, while it runs (fenced on its
    /// attempt), for progress others can read.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a value that is not an object or holds a NUL character
    /// (`\u0000`, which PostgreSQL's `jsonb` refuses); [`Error::JobNotRunning`]
    /// when the job is no longer running at this attempt; [`Error::Config`] in the
    /// `work_one_tx` test harness, where the row is only in the test's transaction.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use millrace::{Job, JobArgs, WorkError};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct A {}
    /// # impl JobArgs for A { const KIND: &'static str = "a"; }
    /// async fn work(job: Job<A>) -> Result<(), WorkError> {
    ///     job.merge_metadata(serde_json::json!({ "progress": 0.5 })).await?;
    ///     Ok(())
    /// }
    /// ```
    pub async fn merge_metadata(&self, metadata: serde_json::Value) -> Result<()> {
        if !metadata.is_object() {
            return Err(Error::InvalidArgument(format!(
                "metadata to merge must be a JSON object, not {metadata}"
            )));
        }
        let encoded = metadata.to_string();
        if crate::insert_params::json_holds_nul(&encoded) {
            return Err(Error::InvalidArgument(
                "metadata to merge must not hold a NUL character (\\u0000), which PostgreSQL's \
                 jsonb refuses"
                    .to_owned(),
            ));
        }
        let Some(merge) = &self.ctx.run.merge else {
            return Err(Error::Config(
                "merge_metadata is not available in the work_one_tx harness".to_owned(),
            ));
        };
        if merge(encoded).await? {
            Ok(())
        } else {
            Err(Error::JobNotRunning(self.row.id))
        }
    }
}

/// What a job's worker sees besides its args and row.
#[derive(Clone)]
pub(crate) struct JobContext {
    pub(crate) token: CancellationToken,
    pub(crate) client: Arc<dyn Any + Send + Sync>,
    pub(crate) run: Arc<JobRunState>,
}

/// Writes a metadata merge to the running job's row, fenced; `false` when the row was lost.
pub(crate) type MergeFn = Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn Future<Output = Result<bool>> + Send>> + Send + Sync,
>;

/// What a job's run collects besides its result.
#[derive(Default)]
pub(crate) struct JobRunState {
    /// The worker completed the job in its own transaction.
    pub(crate) completed_in_tx: AtomicBool,
    /// The output the worker recorded, encoded.
    pub(crate) output: std::sync::Mutex<Option<String>>,
    /// Writes metadata while the job runs; `None` in the test harness.
    pub(crate) merge: Option<MergeFn>,
}

/// The most bytes of output a job may record, as River's limit.
pub const MAX_OUTPUT_BYTES: usize = 32 * 1024 * 1024;

/// The `tracing` target of the span each job runs in (named `job`, with the job's id, kind,
/// queue and attempt, and its `outcome` and `duration_ms` once it ends).
///
/// A fixed name, not the module the span is made in, so a log filter keeps working whatever
/// file the runtime keeps it in. At `warn` the span is left out, and so are its few hundred
/// nanoseconds a job under a formatting subscriber; the outcome logs of failed jobs keep their
/// own target and stay.
///
/// ```
/// let filter = format!("warn,millrace=info,{}=warn", millrace::JOB_SPAN_TARGET);
/// assert_eq!(filter, "warn,millrace=info,millrace::job=warn");
/// ```
pub const JOB_SPAN_TARGET: &str = "millrace::job";

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("cancelled", &self.token.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// A prepared run of one job: its timeout override and its future.
pub(crate) struct PreparedJob {
    pub(crate) timeout: Option<Duration>,
    pub(crate) work: Pin<Box<dyn Future<Output = Result<(), WorkError>> + Send>>,
}

/// A worker with its args type erased, so one registry holds every kind.
pub(crate) trait ErasedWorker: Send + Sync {
    /// Decodes the args and builds the job's future; `Err` holds the decode error's message.
    fn prepare(&self, row: JobRow, ctx: JobContext) -> std::result::Result<PreparedJob, String>;

    /// The worker's own middleware.
    fn middleware(&self) -> &[Arc<dyn crate::middleware::WorkMiddleware>];

    fn next_retry(&self, row: &JobRow) -> Option<Timestamp>;

    /// The worker's timeout override for a job, without running it (for the rescuer).
    fn timeout_for(&self, row: &JobRow) -> Option<Duration>;
}

struct Erased<W>(Arc<W>, Vec<Arc<dyn crate::middleware::WorkMiddleware>>);

impl<W: Worker> ErasedWorker for Erased<W> {
    fn middleware(&self) -> &[Arc<dyn crate::middleware::WorkMiddleware>] {
        &self.1
    }

    fn prepare(&self, row: JobRow, ctx: JobContext) -> std::result::Result<PreparedJob, String> {
        let args = <W::Args as serde::Deserialize>::deserialize(&row.args).map_err(|err| {
            format!(
                "failed to decode args of kind {:?} into {}: {err}",
                row.kind,
                std::any::type_name::<W::Args>()
            )
        })?;
        let job = Job { args, row, ctx };
        let timeout = self.0.timeout(&job);
        let worker = self.0.clone();
        Ok(PreparedJob {
            timeout,
            work: Box::pin(async move { worker.work(job).await }),
        })
    }

    fn next_retry(&self, row: &JobRow) -> Option<Timestamp> {
        self.0.next_retry(row)
    }

    fn timeout_for(&self, row: &JobRow) -> Option<Duration> {
        let args = <W::Args as serde::Deserialize>::deserialize(&row.args).ok()?;
        let job = Job {
            args,
            row: row.clone(),
            ctx: JobContext {
                token: CancellationToken::new(),
                client: Arc::new(()),
                run: Arc::new(JobRunState::default()),
            },
        };
        self.0.timeout(&job)
    }
}

/// The workers a client runs, by kind.
///
/// ```
/// # use millrace::{Job, JobArgs, WorkError, Worker, Workers};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct A {}
/// # impl JobArgs for A { const KIND: &'static str = "a_job"; }
/// # struct AWorker;
/// # impl Worker for AWorker {
/// #     type Args = A;
/// #     async fn work(&self, _job: Job<A>) -> Result<(), WorkError> { Ok(()) }
/// # }
/// let mut workers = Workers::new();
/// workers.register(AWorker).unwrap();
/// assert!(workers.register(AWorker).is_err()); // one worker per kind
/// ```
#[derive(Default, Clone)]
pub struct Workers {
    by_kind: HashMap<String, Arc<dyn ErasedWorker>>,
}

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_kind.keys()).finish()
    }
}

impl Workers {
    /// No workers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a worker for its args' kind.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the kind already has a worker.
    ///
    /// The worker also works rows of the args' [`JobArgs::KIND_ALIASES`].
    pub fn register<W: Worker>(&mut self, worker: W) -> Result<&mut Self> {
        let kinds = std::iter::once(<W::Args as JobArgs>::KIND)
            .chain(<W::Args as JobArgs>::KIND_ALIASES.iter().copied());
        let kinds: Vec<&str> = kinds.collect();
        for kind in &kinds {
            crate::names::validate_kind(kind).map_err(|err| Error::Config(err.to_string()))?;
            if self.by_kind.contains_key(*kind) {
                return Err(Error::Config(format!(
                    "a worker for kind {kind:?} is already registered"
                )));
            }
        }
        let middleware = worker.middleware();
        let erased: Arc<dyn ErasedWorker> = Arc::new(Erased(Arc::new(worker), middleware));
        for kind in kinds {
            self.by_kind.insert(kind.to_owned(), erased.clone());
        }
        Ok(self)
    }

    /// Whether a kind has a worker.
    pub fn contains(&self, kind: &str) -> bool {
        self.by_kind.contains_key(kind)
    }

    /// The number of registered kinds.
    pub fn len(&self) -> usize {
        self.by_kind.len()
    }

    /// Whether no worker is registered.
    pub fn is_empty(&self) -> bool {
        self.by_kind.is_empty()
    }

    pub(crate) fn get(&self, kind: &str) -> Option<&Arc<dyn ErasedWorker>> {
        self.by_kind.get(kind)
    }
}
