use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{AttemptError, JobState, UniqueStates};

/// The id of a job: the `id` column of `river_job`.
///
/// ```
/// use millrace_types::JobId;
///
/// let id = JobId(42);
/// assert_eq!(id.to_string(), "42");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<i64> for JobId {
    fn from(id: i64) -> Self {
        JobId(id)
    }
}

/// A row of `river_job`: everything the database knows about one job.
///
/// Rows written by River's clients read the same way; Millrace never needs columns of its own
/// on this table.
///
/// ```
/// # fn show(row: &millrace_types::JobRow) {
/// println!("job {} ({}) is {} on attempt {}", row.id, row.kind, row.state, row.attempt);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    /// The job's id.
    pub id: JobId,
    /// The job's encoded arguments, a JSON object.
    pub args: serde_json::Value,
    /// The number of the current or last attempt; 0 before the first.
    pub attempt: i16,
    /// When the current or last attempt started.
    pub attempted_at: Option<Timestamp>,
    /// The ids of the clients that worked the job, newest last (at most 100 are kept).
    pub attempted_by: Vec<String>,
    /// When the job was inserted.
    pub created_at: Timestamp,
    /// One entry per failed attempt, oldest first.
    pub errors: Vec<AttemptError>,
    /// When the job reached a final state.
    pub finalized_at: Option<Timestamp>,
    /// The job's kind, which selects its worker.
    pub kind: String,
    /// The most attempts the job gets before it is discarded.
    pub max_attempts: i16,
    /// Free-form metadata, a JSON object.
    pub metadata: serde_json::Value,
    /// 1 (worked first) to 4 (worked last).
    pub priority: i16,
    /// The queue the job is in.
    pub queue: String,
    /// When the job is due.
    pub scheduled_at: Timestamp,
    /// The job's state.
    pub state: JobState,
    /// The job's tags.
    pub tags: Vec<String>,
    /// The SHA-256 unique key, for unique jobs.
    pub unique_key: Option<Vec<u8>>,
    /// The states in which the unique key blocks another insert, for unique jobs.
    pub unique_states: Option<UniqueStates>,
}
