//! Hooks and middleware around inserts and work, and the error handler.
//!
//! Middleware run in the order they were added, the first outermost: each sees what the next
//! one (and finally Millrace) will get, may change it, and sees the result coming back. Work
//! middleware can be registered on the client (every job) or per worker
//! ([`Worker::middleware`](crate::Worker::middleware)); client middleware wrap worker
//! middleware.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use millrace_driver::JobInsertParams;
use millrace_types::JobRow;

use crate::error::Result;
use crate::insert_params::InsertResult;
use crate::work_error::WorkError;

/// A boxed future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One job on its way to the database, options resolved and validated. A hook may change any
/// field (for example add metadata); what it leaves is stored.
pub type InsertParams = JobInsertParams;

/// The inner end of an insert chain, boxed.
type InsertFn<'a> =
    Box<dyn FnOnce(Vec<InsertParams>) -> BoxFuture<'a, Result<Vec<InsertResult>>> + Send + 'a>;

/// The rest of an insert chain: call [`InsertNext::run`] to go on.
pub struct InsertNext<'a> {
    inner: InsertFn<'a>,
}

impl<'a> InsertNext<'a> {
    pub(crate) fn new(
        inner: impl FnOnce(Vec<InsertParams>) -> BoxFuture<'a, Result<Vec<InsertResult>>> + Send + 'a,
    ) -> Self {
        InsertNext {
            inner: Box::new(inner),
        }
    }

    /// Inserts `jobs` through the rest of the chain.
    pub async fn run(self, jobs: Vec<InsertParams>) -> Result<Vec<InsertResult>> {
        (self.inner)(jobs).await
    }
}

/// Middleware around inserts.
///
/// ```
/// use millrace::{BoxFuture, InsertMiddleware, InsertNext, InsertParams, InsertResult};
///
/// /// Stamps every job with the service that inserted it.
/// struct Origin;
///
/// impl InsertMiddleware for Origin {
///     fn insert_job(&self, job: &mut InsertParams) -> millrace::Result<()> {
///         let mut meta: serde_json::Map<String, serde_json::Value> =
///             serde_json::from_str(&job.metadata).unwrap_or_default();
///         meta.insert("origin".into(), "billing".into());
///         job.metadata = serde_json::Value::Object(meta).to_string();
///         Ok(())
///     }
/// }
/// ```
pub trait InsertMiddleware: Send + Sync + 'static {
    /// Sees and may change each job before it is stored; an error refuses the whole batch and
    /// nothing is stored. Runs for the fast (COPY) insert too. Defaults to nothing.
    ///
    /// # Errors
    ///
    /// Any error refuses the batch.
    fn insert_job(&self, job: &mut InsertParams) -> Result<()> {
        let _ = job;
        Ok(())
    }

    /// Wraps each batch insert: call `next.run(jobs)` to store them (possibly changed) and get
    /// the stored rows back. Not called for the fast (COPY) insert, which returns no rows.
    /// Defaults to passing the batch on.
    fn insert_many<'a>(
        &'a self,
        jobs: Vec<InsertParams>,
        next: InsertNext<'a>,
    ) -> BoxFuture<'a, Result<Vec<InsertResult>>> {
        Box::pin(next.run(jobs))
    }
}

/// The rest of a work chain: await it to run the worker (and any inner middleware).
pub struct WorkNext<'a> {
    inner: BoxFuture<'a, std::result::Result<(), WorkError>>,
}

impl<'a> WorkNext<'a> {
    pub(crate) fn new(inner: BoxFuture<'a, std::result::Result<(), WorkError>>) -> Self {
        WorkNext { inner }
    }
}

impl Future for WorkNext<'_> {
    type Output = std::result::Result<(), WorkError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// Middleware around each job's work: time it, open a tracing span, change its result.
///
/// ```
/// use millrace::{BoxFuture, JobRow, WorkError, WorkMiddleware, WorkNext};
///
/// /// Logs how long each job took.
/// struct Timing;
///
/// impl WorkMiddleware for Timing {
///     fn work<'a>(&'a self, job: &'a JobRow, next: WorkNext<'a>) -> BoxFuture<'a, Result<(), WorkError>> {
///         Box::pin(async move {
///             let started = std::time::Instant::now();
///             let result = next.await;
///             println!("job {} took {:?}", job.id, started.elapsed());
///             result
///         })
///     }
/// }
/// ```
pub trait WorkMiddleware: Send + Sync + 'static {
    /// Wraps one job's work; awaiting `next` runs it.
    fn work<'a>(
        &'a self,
        job: &'a JobRow,
        next: WorkNext<'a>,
    ) -> BoxFuture<'a, std::result::Result<(), WorkError>>;
}

/// What the error handler decides for a failed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ErrorHandling {
    /// Retry, or discard after the last attempt, as usual.
    #[default]
    Default,
    /// Cancel the job: no more attempts.
    Cancel,
}

/// Sees every worker error and panic, and may cancel the job (River's `ErrorHandler`).
///
/// ```
/// use millrace::{ErrorHandler, ErrorHandling, JobRow};
///
/// struct StopOnPanic;
///
/// impl ErrorHandler for StopOnPanic {
///     fn handle_panic(&self, job: &JobRow, message: &str, _trace: &str) -> ErrorHandling {
///         eprintln!("job {} panicked: {message}", job.id);
///         ErrorHandling::Cancel
///     }
/// }
/// ```
pub trait ErrorHandler: Send + Sync + 'static {
    /// A worker returned an error (or timed out). Defaults to [`ErrorHandling::Default`].
    fn handle_error(&self, job: &JobRow, error: &str) -> ErrorHandling {
        let _ = (job, error);
        ErrorHandling::Default
    }

    /// A worker panicked. Defaults to [`ErrorHandling::Default`].
    fn handle_panic(&self, job: &JobRow, message: &str, trace: &str) -> ErrorHandling {
        let _ = (job, message, trace);
        ErrorHandling::Default
    }
}

/// Builds the chain of work middleware around `work`, the first middleware outermost.
pub(crate) fn wrap_work<'a>(
    middleware: &'a [Arc<dyn WorkMiddleware>],
    job: &'a JobRow,
    work: BoxFuture<'a, std::result::Result<(), WorkError>>,
) -> BoxFuture<'a, std::result::Result<(), WorkError>> {
    middleware
        .iter()
        .rev()
        .fold(work, |inner, m| m.work(job, WorkNext::new(inner)))
}

/// Runs `jobs` through the insert middleware chain, `store` innermost.
pub(crate) async fn run_insert_chain<'a>(
    middleware: &'a [Arc<dyn InsertMiddleware>],
    jobs: Vec<InsertParams>,
    store: impl FnOnce(Vec<InsertParams>) -> BoxFuture<'a, Result<Vec<InsertResult>>> + Send + 'a,
) -> Result<Vec<InsertResult>> {
    let mut next = InsertNext::new(store);
    for m in middleware.iter().rev() {
        let inner = next;
        next = InsertNext::new(move |jobs| m.insert_many(jobs, inner));
    }
    next.run(jobs).await
}
