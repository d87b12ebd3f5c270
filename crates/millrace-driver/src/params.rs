use jiff::Timestamp;
use millrace_types::{AttemptError, JobId, JobRow, JobState, UndecodableJob, UniqueStates};

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

impl JobInsertParams {
    /// What an insert reports for a unique duplicate whose live row could not be decoded
    /// (written by hand or by another client with a value no River client writes): the live
    /// job's id, kind, queue, state and attempts, and the rest as this insert asked. The
    /// insert is not failed for it, so that the other jobs of its batch, already stored, are
    /// not inserted twice by a retry.
    ///
    /// ```
    /// use millrace_driver::JobInsertParams;
    /// use millrace_driver::types::{JobId, JobState, UndecodableJob};
    ///
    /// let params = JobInsertParams {
    ///     args: "{}".into(),
    ///     created_at: None,
    ///     kind: "email".into(),
    ///     max_attempts: 25,
    ///     metadata: "{}".into(),
    ///     priority: 1,
    ///     queue: "default".into(),
    ///     scheduled_at: None,
    ///     state: JobState::Available,
    ///     tags: Vec::new(),
    ///     unique_key: Some(vec![1; 32]),
    ///     unique_states: None,
    /// };
    /// let live = UndecodableJob {
    ///     id: JobId(9),
    ///     kind: "email".into(),
    ///     queue: "default".into(),
    ///     state: JobState::Running,
    ///     attempt: 1,
    ///     max_attempts: 25,
    ///     error: "unexpected value in column errors: …".into(),
    /// };
    /// let row = params.stand_in_for(&live);
    /// assert_eq!((row.id, row.state), (JobId(9), JobState::Running));
    /// ```
    pub fn stand_in_for(&self, live: &UndecodableJob) -> JobRow {
        let now = Timestamp::now();
        let json = |text: &str| serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
        JobRow {
            id: live.id,
            args: json(&self.args),
            attempt: live.attempt,
            attempted_at: None,
            attempted_by: Vec::new(),
            created_at: self.created_at.unwrap_or(now),
            errors: Vec::new(),
            finalized_at: None,
            kind: live.kind.clone(),
            max_attempts: live.max_attempts,
            metadata: json(&self.metadata),
            priority: self.priority,
            queue: live.queue.clone(),
            scheduled_at: self.scheduled_at.unwrap_or(now),
            state: live.state,
            tags: self.tags.clone(),
            unique_key: self.unique_key.clone(),
            unique_states: self.unique_states,
        }
    }
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
    /// Only jobs with these ids.
    pub ids: Vec<JobId>,
    /// Only jobs with these priorities.
    pub priorities: Vec<i16>,
    /// Only jobs carrying every one of these tags.
    pub tags: Vec<String>,
    /// Only jobs whose metadata contains this JSON object (PostgreSQL's `@>`).
    pub metadata_contains: Option<String>,
    /// Only jobs whose args contain this JSON object (PostgreSQL's `@>`).
    pub args_contains: Option<String>,
    /// Only jobs with an id of at least this.
    pub id_min: Option<JobId>,
    /// Only jobs with an id of at most this.
    pub id_max: Option<JobId>,
    /// Only jobs created at or after this time.
    pub created_since: Option<Timestamp>,
    /// Only jobs finalized at or after this time (so only finalized jobs).
    pub finalized_since: Option<Timestamp>,
    /// Only jobs with an id greater than this (ascending) or less than this (descending).
    pub after_id: Option<JobId>,
    /// Newest first when true.
    pub descending: bool,
    /// The most rows to return.
    pub limit: i64,
}

impl JobListParams {
    /// Whether no filter is set (paging and order aside): the params match every job.
    pub fn is_unfiltered(&self) -> bool {
        self.states.is_empty()
            && self.kinds.is_empty()
            && self.queues.is_empty()
            && self.ids.is_empty()
            && self.priorities.is_empty()
            && self.tags.is_empty()
            && self.metadata_contains.is_none()
            && self.args_contains.is_none()
            && self.id_min.is_none()
            && self.id_max.is_none()
            && self.created_since.is_none()
            && self.finalized_since.is_none()
    }
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

/// Params for [`Executor::job_get_available`](crate::Executor::job_get_available).
#[derive(Debug, Clone, PartialEq)]
pub struct JobGetAvailableParams {
    /// The queue to fetch from.
    pub queue: String,
    /// The most jobs to fetch: the producer's free slots.
    pub max: i32,
    /// The fetching client's id, appended to `attempted_by`.
    pub client_id: String,
    /// The current time; `None` means `now()`.
    pub now: Option<Timestamp>,
    /// The queue's concurrency limit, enforced inside the fetch; `None` fetches as River does.
    pub limit: Option<FetchLimit>,
    /// The queue's rate limit, enforced inside the same serialized fetch; `None` for none.
    pub rate: Option<FetchRate>,
}

/// A concurrency limit a fetch enforces: at most `global` rows of the queue running at once in
/// each partition across every client, and at most `local` of them under the fetching client.
///
/// A driver serializes the fetches of a queue that has a limit (PostgreSQL: a transaction-scoped
/// advisory lock on the schema and queue; SQLite: its single writer), then counts the running
/// rows of each partition and takes no more than the partition has room for, so clients racing
/// never exceed the limit.
///
/// ```
/// use millrace_driver::FetchLimit;
///
/// let limit = FetchLimit { global: Some(2), local: None, by_kind: false, by_args: vec!["customer_id".into()] };
/// assert!(limit.is_partitioned());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchLimit {
    /// The most rows running at once per partition across every client.
    pub global: Option<i32>,
    /// The most rows running at once per partition under the fetching client (the last entry
    /// of `attempted_by`).
    pub local: Option<i32>,
    /// Whether each kind is its own partition.
    pub by_kind: bool,
    /// Top-level args fields whose values (as JSON) name the partition; a missing field counts
    /// as `null`.
    pub by_args: Vec<String>,
}

impl FetchLimit {
    /// Whether rows are split into partitions (by kind or by args fields).
    ///
    /// ```
    /// use millrace_driver::FetchLimit;
    ///
    /// let limit = FetchLimit { global: Some(2), ..FetchLimit::default() };
    /// assert!(!limit.is_partitioned());
    /// ```
    pub fn is_partitioned(&self) -> bool {
        self.by_kind || !self.by_args.is_empty()
    }
}

/// A rate limit a fetch enforces: at most `limit` rows of the queue fetched per partition in
/// any sliding window of `period`, across every client.
///
/// The driver logs each fetch it lets through (queue, partition key, time) in Millrace's
/// `millrace_rate_limit_fetch` table, in the fetch's own serialized transaction (the same
/// advisory lock or single writer as a [`FetchLimit`]), counts the log's rows younger than
/// `period` per partition, and takes no more than each partition has room for. Rows older than
/// `period` are pruned by the same fetch, so the log holds at most `limit` rows per partition.
///
/// ```
/// use std::time::Duration;
/// use millrace_driver::FetchRate;
///
/// let rate = FetchRate { limit: 100, period: Duration::from_secs(60), by_kind: true, by_args: vec![] };
/// assert!(rate.is_partitioned());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchRate {
    /// The most rows fetched per partition in any window of `period`.
    pub limit: i32,
    /// The window's length.
    pub period: std::time::Duration,
    /// Whether each kind is its own partition.
    pub by_kind: bool,
    /// Top-level args fields whose values (as JSON) name the partition; a missing field counts
    /// as `null`.
    pub by_args: Vec<String>,
}

impl FetchRate {
    /// Whether rows are split into partitions (by kind or by args fields).
    ///
    /// ```
    /// use millrace_driver::FetchRate;
    ///
    /// assert!(!FetchRate { limit: 5, ..FetchRate::default() }.is_partitioned());
    /// ```
    pub fn is_partitioned(&self) -> bool {
        self.by_kind || !self.by_args.is_empty()
    }

    /// The window's length in whole microseconds, as the drivers bind it (saturating).
    ///
    /// ```
    /// use std::time::Duration;
    /// use millrace_driver::FetchRate;
    ///
    /// let rate = FetchRate { limit: 5, period: Duration::from_millis(1500), ..FetchRate::default() };
    /// assert_eq!(rate.period_micros(), 1_500_000);
    /// ```
    pub fn period_micros(&self) -> i64 {
        i64::try_from(self.period.as_micros()).unwrap_or(i64::MAX)
    }
}

/// The state a finished attempt leaves a running job in.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// The worker succeeded.
    Completed,
    /// The worker failed: the job becomes `retryable` at `retry_at` (or `available` if that is
    /// within 5 s), or `discarded` when `discard` is set. The error is appended to `errors`.
    Errored {
        /// The recorded error.
        error: AttemptError,
        /// When to retry.
        retry_at: Timestamp,
        /// Whether the job used its last attempt.
        discard: bool,
    },
    /// The worker asked for the job to be cancelled.
    Cancelled {
        /// The recorded error.
        error: AttemptError,
    },
    /// The worker snoozed: the attempt is given back, `snoozes` counted, no error recorded.
    Snoozed {
        /// When to run again.
        until: Timestamp,
    },
    /// The attempt was interrupted (hard stop, orphan): back to `available` now, the attempt
    /// given back, no error recorded.
    Returned,
}

/// A job's attempt fence: the job and the attempt a worker was given. A write fenced on it
/// applies only while the row is still `running` at that attempt, so a late worker can never
/// overwrite a job that was rescued and run again.
///
/// ```
/// use millrace_driver::AttemptFence;
/// use millrace_driver::types::JobId;
///
/// let fence = AttemptFence::new(JobId(7), 2);
/// assert_eq!((fence.id, fence.attempt), (JobId(7), 2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttemptFence {
    /// The job.
    pub id: JobId,
    /// The attempt the worker was given.
    pub attempt: i16,
}

impl AttemptFence {
    /// The fence of `attempt` of job `id`.
    pub fn new(id: JobId, attempt: i16) -> Self {
        AttemptFence { id, attempt }
    }
}

impl From<&JobRow> for AttemptFence {
    fn from(row: &JobRow) -> Self {
        AttemptFence::new(row.id, row.attempt)
    }
}

impl From<&UndecodableJob> for AttemptFence {
    fn from(job: &UndecodableJob) -> Self {
        AttemptFence::new(job.id, job.attempt)
    }
}

/// One fenced completion: applies only while the job is still `running` at `attempt`.
///
/// Build it with [`JobCompleteParams::new`] from the row (or its [`AttemptFence`]) and the
/// outcome, so that every path fences the same way.
///
/// ```
/// use millrace_driver::{AttemptFence, JobCompleteParams, JobOutcome};
/// use millrace_driver::types::JobId;
///
/// let done = JobCompleteParams::new(AttemptFence::new(JobId(7), 2), JobOutcome::Completed)
///     .metadata_merge(Some(r#"{"output":1}"#.to_owned()));
/// assert_eq!(done.attempt, 2);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct JobCompleteParams {
    /// The job.
    pub id: JobId,
    /// The attempt the worker was given.
    pub attempt: i16,
    /// What happened.
    pub outcome: JobOutcome,
    /// Metadata to merge into the job's (`metadata || this`), for output and progress.
    pub metadata_merge: Option<String>,
}

impl JobCompleteParams {
    /// The completion of the fenced attempt with `outcome`, merging no metadata.
    pub fn new(fence: impl Into<AttemptFence>, outcome: JobOutcome) -> Self {
        let AttemptFence { id, attempt } = fence.into();
        JobCompleteParams {
            id,
            attempt,
            outcome,
            metadata_merge: None,
        }
    }

    /// Merges `merge` (a JSON object) into the job's metadata with the outcome.
    #[must_use]
    pub fn metadata_merge(mut self, merge: Option<String>) -> Self {
        self.metadata_merge = merge;
        self
    }

    /// The attempt this completion is fenced on.
    pub fn fence(&self) -> AttemptFence {
        AttemptFence::new(self.id, self.attempt)
    }
}

/// A job a completion batch updated, with the state it ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobCompleted {
    /// The job.
    pub id: JobId,
    /// Its new state.
    pub state: JobState,
}

/// Params for [`Executor::job_schedule`](crate::Executor::job_schedule).
#[derive(Debug, Clone, PartialEq)]
pub struct JobScheduleParams {
    /// Jobs due before this time become available; `None` means `now()`.
    pub horizon: Option<Timestamp>,
    /// The most jobs to move at once.
    pub max: i32,
}

/// A job the scheduler moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobScheduled {
    /// The job.
    pub id: JobId,
    /// Its queue, to notify.
    pub queue: String,
    /// `available`, or `discarded` when its unique key was taken meanwhile.
    pub state: JobState,
}

/// Params for [`Executor::job_return_orphans`](crate::Executor::job_return_orphans).
#[derive(Debug, Clone, PartialEq)]
pub struct JobReturnOrphansParams {
    /// The client whose rows to look at (the last entry of `attempted_by`).
    pub client_id: String,
    /// Only this queue.
    pub queue: String,
    /// Jobs the client still holds; they are left alone.
    pub held: Vec<JobId>,
}

/// A row of `river_queue`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRow {
    /// The queue's name.
    pub name: String,
    /// When it was first seen.
    pub created_at: Timestamp,
    /// Free-form metadata.
    pub metadata: serde_json::Value,
    /// When it was paused; `None` while running.
    pub paused_at: Option<Timestamp>,
    /// When a client last reported it.
    pub updated_at: Timestamp,
}

/// Which leader row an election is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaderTable {
    /// `river_leader`, shared with River's clients: River's maintenance runs under it.
    River,
    /// `millrace_leader`, among Millrace clients only: Millrace's own fleet work runs under it.
    Millrace,
}

/// Params for the leader verbs.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderParams {
    /// Which row.
    pub table: LeaderTable,
    /// The client asking.
    pub leader_id: String,
    /// How long the leadership lasts unless re-asserted.
    pub ttl: std::time::Duration,
}

/// A leader row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderRow {
    /// The leader's client id.
    pub leader_id: String,
    /// When it was elected.
    pub elected_at: Timestamp,
    /// When its leadership runs out unless re-asserted.
    pub expires_at: Timestamp,
}

/// Params for [`Executor::job_delete_finalized`](crate::Executor::job_delete_finalized): each
/// `None` keeps jobs of that state for ever.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDeleteFinalizedParams {
    /// Delete completed jobs finalized before this.
    pub completed_before: Option<Timestamp>,
    /// Delete cancelled jobs finalized before this.
    pub cancelled_before: Option<Timestamp>,
    /// Delete discarded jobs finalized before this.
    pub discarded_before: Option<Timestamp>,
    /// The most jobs deleted in one statement.
    pub max: i32,
}

/// Params for [`Executor::persistent_claim`](crate::Executor::persistent_claim).
#[derive(Debug, Clone, PartialEq)]
pub struct PersistentClaimParams {
    /// The persistent worker's kind.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// The claiming client.
    pub client_id: String,
    /// A running instance whose `attempted_at` is older than this may be taken over.
    pub lease: std::time::Duration,
}

/// Params for [`Executor::persistent_release`](crate::Executor::persistent_release).
#[derive(Debug, Clone, PartialEq)]
pub struct PersistentReleaseParams {
    /// The instance's job.
    pub id: JobId,
    /// The fencing token the holder was given (the fence).
    pub fence: i64,
    /// When another client may claim it.
    pub available_at: Timestamp,
    /// The error that ended the run, appended to `errors`; `None` for a clean end or a
    /// handover.
    pub error: Option<AttemptError>,
    /// How many of the most recent errors to keep.
    pub keep_errors: i32,
}
