use millrace_types::{JobId, UndecodableJob};

/// A driver result.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error from a driver.
///
/// ```
/// use millrace_driver::DriverError;
///
/// let err = DriverError::JobRunning(millrace_types::JobId(7));
/// assert_eq!(err.to_string(), "job 7 is running and cannot be deleted");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The database refused or failed an operation.
    #[error("database operation failed")]
    Database(#[source] BoxError),
    /// The connection to the database failed or was lost; retrying may succeed.
    #[error("database connection failed")]
    Connection(#[source] BoxError),
    /// A running job cannot be deleted.
    #[error("job {0} is running and cannot be deleted")]
    JobRunning(JobId),
    /// A row held a value this driver cannot read.
    #[error("unexpected value in column {column}: {message}")]
    Decode {
        /// The column.
        column: &'static str,
        /// What was wrong.
        message: String,
    },
    /// A job row could not be decoded (see [`UndecodableJob`]). Verbs that read one row return
    /// this; verbs that read many report such rows one by one instead. When the verb writes
    /// (cancel, retry, update, delete), the write was applied: only reading the row back failed.
    #[error("{0}")]
    UndecodableJob(Box<UndecodableJob>),
}

impl DriverError {
    /// Whether the error came from a lost or failed connection, after which a retry may work.
    pub fn is_connection(&self) -> bool {
        matches!(self, DriverError::Connection(_))
    }
}
