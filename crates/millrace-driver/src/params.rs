use jiff::Timestamp;
use millrace_types::{JobId, JobRow, JobState, UniqueStates};

/// One job to insert, with every option resolved and validated by the client.
#[derive(Debug, Clone, PartialEq)]
pub struct JobInsertParams {
    /// Encoded args, a JSON object.
    pub args: String,
    /// When the job was created; `None` means the database's `now()`.
    pub created_at: Option<Timestamp>,
    /// The kind.
    pub kind: String,
    /// 1..=32767.
    pub max_attempts: i16,
    /// Encoded metadata, a JSON object.
    pub metadata: String,
    /// 1..=4.
    pub priority: i16,
    /// The queue.
    pub queue: String,
    /// When the job is due; `None` means the database's `now()`.
    pub scheduled_at: Option<Timestamp>,
    /// `available`, `scheduled` or `pending`.
    pub state: JobState,
    /// Tags.
    pub tags: Vec<String>,
    /// The unique key, for unique jobs.
    pub unique_key: Option<Vec<u8>>,
    /// The unique states, for unique jobs.
    pub unique_states: Option<UniqueStates>,
}

/// A stored job, and whether the insert found a live duplicate instead of inserting.
#[derive(Debug, Clone, PartialEq)]
pub struct JobInsertResult {
    /// The inserted row, or the existing row that made this insert a duplicate.
    pub job: JobRow,
    /// Whether the job was not inserted because a job with the same unique key was live.
    pub unique_skipped_as_duplicate: bool,
}

/// Filters for [`Executor::job_list`](crate::Executor::job_list). Empty filters match all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobListParams {
    /// Only jobs in these states.
    pub states: Vec<JobState>,
    /// Only jobs of these kinds.
    pub kinds: Vec<String>,
    /// Only jobs in these queues.
    pub queues: Vec<String>,
    /// Only jobs with an id greater than this (ascending) or less than this (descending).
    pub after_id: Option<JobId>,
    /// Newest first when true.
    pub descending: bool,
    /// The most rows to return.
    pub limit: i64,
}

/// Params for [`Executor::job_cancel`](crate::Executor::job_cancel).
#[derive(Debug, Clone, PartialEq)]
pub struct JobCancelParams {
    /// The job.
    pub id: JobId,
    /// The time recorded as `cancel_attempted_at` and `finalized_at`; `None` means `now()`.
    pub now: Option<Timestamp>,
}

/// Params for [`Executor::job_retry`](crate::Executor::job_retry).
#[derive(Debug, Clone, PartialEq)]
pub struct JobRetryParams {
    /// The job.
    pub id: JobId,
    /// The new `scheduled_at`; `None` means `now()`.
    pub now: Option<Timestamp>,
}

/// What [`Executor::job_delete`](crate::Executor::job_delete) did.
#[derive(Debug, Clone, PartialEq)]
pub enum JobDeleteOutcome {
    /// The job was deleted; here is its last row.
    Deleted(JobRow),
    /// No job has the id.
    NotFound,
    /// The job is running and was left alone.
    Running(JobRow),
}

/// A row of `river_migration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRow {
    /// The migration line.
    pub line: String,
    /// The version.
    pub version: i64,
    /// When it was applied.
    pub created_at: Timestamp,
}

/// A notification topic, sent on the channel `<schema>.<topic>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `river_insert`: jobs became available in a queue.
    Insert,
    /// `river_control`: cancel, pause, resume, metadata changes.
    Control,
    /// `river_leadership`: leader resignations and resign requests.
    Leadership,
}

impl Topic {
    /// The topic's name without the schema prefix.
    pub const fn as_str(self) -> &'static str {
        match self {
            Topic::Insert => "river_insert",
            Topic::Control => "river_control",
            Topic::Leadership => "river_leadership",
        }
    }

    /// All topics.
    pub const ALL: [Topic; 3] = [Topic::Insert, Topic::Control, Topic::Leadership];
}

/// A received notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The topic it came on.
    pub topic: Topic,
    /// The payload, usually JSON.
    pub payload: String,
}
