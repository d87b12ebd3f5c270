//! What a worker returns when it does not complete its job: retry, cancel or snooze.

use std::fmt;
use std::time::Duration;

/// Any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a worker did not complete its job. Deliberately not `std::error::Error`, so `?` turns
/// any error into [`WorkError::Retry`].
///
/// ```
/// use std::time::Duration;
/// use millrace::WorkError;
///
/// let retry = WorkError::msg("upstream returned 503");
/// let cancel = WorkError::cancel("the account was deleted");
/// let snooze = WorkError::snooze(Duration::from_secs(60));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum WorkError {
    /// Record the error and retry (or discard after the last attempt).
    Retry(BoxError),
    /// Record the error and cancel the job: no more attempts.
    Cancel(BoxError),
    /// Run the job again after this long, without spending an attempt or recording an error.
    ///
    /// A snooze that would schedule the job past the end of year 9999 (precisely, past
    /// `jiff::Timestamp::MAX`, 9999-12-30T22:00:00.999999999Z, the latest time a job row can
    /// be read back with) is refused: the attempt fails with an error that says so, and is
    /// retried or discarded like any failed attempt. It is never clamped, nor run again at
    /// once.
    Snooze(Duration),
}

impl WorkError {
    /// A retryable error with a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        WorkError::Retry(message.to_string().into())
    }

    /// Cancels the job with this error.
    pub fn cancel(err: impl Into<BoxError>) -> Self {
        WorkError::Cancel(err.into())
    }

    /// Snoozes the job: it runs again after `after`, without spending an attempt or
    /// recording an error, and its metadata counts the snooze under `snoozes` (as River's).
    ///
    /// Metadata that is not a JSON object (written by another tool) is first kept whole
    /// under [`REPLACED_METADATA_KEY`](millrace_driver::REPLACED_METADATA_KEY). A snooze that
    /// would pass year 9999 fails the attempt instead; see [`WorkError::Snooze`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use millrace::WorkError;
    ///
    /// let later = WorkError::snooze(Duration::from_secs(60));
    /// assert!(matches!(later, WorkError::Snooze(d) if d == Duration::from_secs(60)));
    /// ```
    pub fn snooze(after: Duration) -> Self {
        WorkError::Snooze(after)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for WorkError {
    fn from(err: E) -> Self {
        WorkError::Retry(Box::new(err))
    }
}
