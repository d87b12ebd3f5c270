use millrace_driver::{DriverError, InvalidSchemaName};
use millrace_types::JobId;

use crate::migration_direction::MigrationDirection;

/// A Millrace result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from the Millrace client.
///
/// ```
/// use millrace::Error;
///
/// let err = Error::JobNotFound(millrace::JobId(3));
/// assert_eq!(err.to_string(), "job 3 not found");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A database operation failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The client's configuration is invalid; the message names the setting.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A queue's concurrency or rate limit is invalid.
    #[error("invalid limit for queue {queue:?}")]
    Limit {
        /// The queue.
        queue: String,
        /// What is wrong with it.
        #[source]
        source: crate::limits::LimitError,
    },
    /// An insert was refused before anything was stored; the message names the option.
    #[error("invalid insert: {0}")]
    InvalidInsert(String),
    /// A parameter of a query or an administrative call is out of range; the message names it.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Args could not be encoded as a JSON object.
    #[error("args of kind {kind:?} could not be encoded as a JSON object")]
    ArgsEncode {
        /// The job's kind.
        kind: String,
        /// The encoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The schema name is invalid.
    #[error(transparent)]
    InvalidSchema(#[from] InvalidSchemaName),
    /// No job has the given id.
    #[error("job {0} not found")]
    JobNotFound(JobId),
    /// No queue has the given name.
    #[error("queue {0:?} not found")]
    QueueNotFound(String),
    /// The job is running, and the operation needs it not to be.
    #[error("job {0} is running")]
    JobRunning(JobId),
    /// The job is no longer running at the attempt the worker was given: it was rescued,
    /// cancelled or deleted meanwhile, so the completion was not applied.
    #[error("job {0} is no longer running at this attempt")]
    JobNotRunning(JobId),
    /// The client has no workers, so it can insert and administer jobs but not start.
    #[error("the client has no workers registered; an insert-only client cannot start")]
    NoWorkers,
    /// The client is already started.
    #[error("the client is already started")]
    AlreadyStarted,
    /// The client is not started.
    #[error("the client is not started")]
    NotStarted,
    /// One migration version failed; the versions before it stay as they were left.
    #[error("migration {line} version {version} ({direction}) failed")]
    MigrationStep {
        /// The migration line.
        line: String,
        /// The version that failed.
        version: i64,
        /// Up or down.
        direction: MigrationDirection,
        /// The database's error.
        #[source]
        source: DriverError,
    },
    /// A migration could not be applied or rolled back; the message says which and why.
    #[error("migration failed: {0}")]
    Migration(String),
    /// The operating system refused the signal handlers of [`Client::run_until_shutdown`](crate::Client::run_until_shutdown).
    #[error("could not listen for SIGTERM and SIGINT")]
    Signal(#[source] std::io::Error),
}
