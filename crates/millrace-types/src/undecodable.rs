use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{JobId, JobRow, JobState};

/// A `river_job` row that could not be read whole: the columns every row can be read by, and
/// why the rest could not.
///
/// Rows written by raw SQL or by other clients may hold values no River client writes: a
/// timestamp of `-infinity` or past year 9999, an attempt error whose `at` is not a time. Such a
/// row is never allowed to fail the batch or page it came in: the rows around it read as
/// usual, and this one is reported on its own. A worker cannot work it, so a client that fetches
/// it records a failed attempt carrying [`UndecodableJob::error`] (discarding it after its last
/// attempt), and the rescuers rescue it like any other row.
///
/// ```
/// use millrace_types::{JobId, JobState, UndecodableJob};
///
/// let job = UndecodableJob {
///     id: JobId(7),
///     kind: "email".into(),
///     queue: "default".into(),
///     state: JobState::Available,
///     attempt: 0,
///     max_attempts: 25,
///     error: "unexpected value in column scheduled_at: out of range".into(),
/// };
/// assert_eq!(
///     job.to_string(),
///     "job 7 (email) could not be decoded: unexpected value in column scheduled_at: out of range"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndecodableJob {
    /// The job's id.
    pub id: JobId,
    /// The job's kind.
    pub kind: String,
    /// The job's queue.
    pub queue: String,
    /// The job's state.
    pub state: JobState,
    /// The job's attempt: the fence a completion of it is checked against.
    pub attempt: i16,
    /// The most attempts the job gets before it is discarded.
    pub max_attempts: i16,
    /// Why the row could not be decoded, naming the column.
    pub error: String,
}

impl fmt::Display for UndecodableJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "job {} ({}) could not be decoded: {}",
            self.id, self.kind, self.error
        )
    }
}

/// One row of a batch or page of jobs: decoded, or reported on its own when it could not be.
///
/// ```
/// use millrace_types::JobRead;
///
/// fn ids(rows: &[JobRead]) -> Vec<i64> {
///     rows.iter()
///         .map(|row| match row {
///             Ok(job) => job.id.0,
///             Err(undecodable) => undecodable.id.0,
///         })
///         .collect()
/// }
/// assert!(ids(&[]).is_empty());
/// ```
pub type JobRead = Result<JobRow, UndecodableJob>;

/// The id of a row of a batch, decoded or not.
///
/// ```
/// use millrace_types::{JobId, JobRead, UndecodableJob, JobState, job_read_id};
///
/// let read: JobRead = Err(UndecodableJob {
///     id: JobId(3),
///     kind: "k".into(),
///     queue: "default".into(),
///     state: JobState::Available,
///     attempt: 0,
///     max_attempts: 25,
///     error: "bad".into(),
/// });
/// assert_eq!(job_read_id(&read), JobId(3));
/// ```
pub fn job_read_id(read: &JobRead) -> JobId {
    match read {
        Ok(job) => job.id,
        Err(undecodable) => undecodable.id,
    }
}
