//! Params and rows of the inspection and bulk-action verbs: counts by queue and state, queue
//! lag, bulk retry, cancel and delete by filter, and the fleet's own tables (periodic
//! schedules, persistent instances, clients).

use jiff::Timestamp;
use millrace_types::{JobId, JobState};

use crate::JobListParams;

/// How many jobs of one queue are in one state, from
/// [`Executor::job_count_by_queue_and_state`](crate::Executor::job_count_by_queue_and_state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCountRow {
    /// The queue.
    pub queue: String,
    /// The state.
    pub state: JobState,
    /// How many jobs.
    pub count: i64,
}

/// Finalized jobs of one state in one time bucket, from
/// [`Executor::job_finalized_histogram`](crate::Executor::job_finalized_histogram).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalizedBucketRow {
    /// The bucket's index: 0 is the one starting at `since`, each `bucket` long.
    pub bucket: i64,
    /// The final state (completed, cancelled or discarded).
    pub state: JobState,
    /// How many jobs reached it in the bucket.
    pub count: i64,
}

/// The planner's estimate of the jobs in one state, from
/// [`Executor::job_state_estimates`](crate::Executor::job_state_estimates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStateEstimate {
    /// The state.
    pub state: JobState,
    /// About how many jobs are in it, as of the table's last analyze.
    pub estimate: i64,
}

/// The oldest available job of each queue that has one, from
/// [`Executor::queue_oldest_available`](crate::Executor::queue_oldest_available).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOldestAvailable {
    /// The database's clock when it answered, to measure ages against.
    pub now: Timestamp,
    /// Each queue with available jobs and the earliest `scheduled_at` among them, by name.
    pub queues: Vec<(String, Timestamp)>,
}

/// What [`Executor::job_act_many`](crate::Executor::job_act_many) does to each job it picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobBatchAction {
    /// As [`Executor::job_retry`](crate::Executor::job_retry): a job that is not running
    /// becomes available now, with one more attempt when it used them all.
    Retry,
    /// As [`Executor::job_cancel`](crate::Executor::job_cancel): a job that is neither running
    /// nor finalized is cancelled; a running job gets `cancel_attempted_at` and its client is
    /// notified; a finalized job is left alone.
    Cancel,
    /// As [`Executor::job_delete`](crate::Executor::job_delete): a job that is not running is
    /// deleted.
    Delete,
}

impl JobBatchAction {
    /// The action's name: `retry`, `cancel` or `delete`.
    ///
    /// ```
    /// assert_eq!(millrace_driver::JobBatchAction::Cancel.as_str(), "cancel");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            JobBatchAction::Retry => "retry",
            JobBatchAction::Cancel => "cancel",
            JobBatchAction::Delete => "delete",
        }
    }
}

/// Params for [`Executor::job_act_many`](crate::Executor::job_act_many).
#[derive(Debug, Clone, PartialEq)]
pub struct JobBatchParams {
    /// What to do.
    pub action: JobBatchAction,
    /// Which jobs: the filters, the cursor (`after_id`), the order and the batch size
    /// (`limit`) of a list.
    pub filter: JobListParams,
    /// The time recorded (`scheduled_at` of a retry, `finalized_at` and `cancel_attempted_at`
    /// of a cancel); `None` means the database's `now()`.
    pub now: Option<Timestamp>,
}

/// One job a bulk action looked at: acted on, or skipped because of the state it was in when
/// the action locked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobBatchRow {
    /// The job.
    pub id: JobId,
    /// Its kind.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// Its state when the action locked it.
    pub state_before: JobState,
    /// Its state afterwards (for a deleted job, the state it was deleted in).
    pub state: JobState,
    /// Whether the action applied. A cancel applies to a running job by recording the request
    /// (`state` stays `running`); a retry or delete never applies to a running job, and a
    /// cancel never to a finalized one.
    pub applied: bool,
}

/// A row of `millrace_periodic_job` (a named periodic job's durable schedule), with the last
/// job it inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodicJobRow {
    /// The periodic job's id.
    pub id: String,
    /// Its stored next run.
    pub next_run_at: Timestamp,
    /// When a client last moved the next run.
    pub updated_at: Timestamp,
    /// The newest job still in `river_job` whose metadata names this periodic job
    /// (`river:periodic_job_id`): its id, when it was created and its state.
    pub last_job: Option<(JobId, Timestamp, JobState)>,
}

/// A row of `millrace_client`: one live or lately dead Millrace client's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRow {
    /// The client's id.
    pub id: String,
    /// When it first heartbeat.
    pub started_at: Timestamp,
    /// When it last heartbeat.
    pub heartbeat_at: Timestamp,
    /// When its lease runs out unless it heartbeats again.
    pub lease_expires_at: Timestamp,
    /// The limits it was built with, by queue (see
    /// [`Executor::client_declare_queues`](crate::Executor::client_declare_queues)): an empty
    /// object for a client that declared none, `null` for a value that is not JSON.
    pub queues: serde_json::Value,
}

impl ClientRow {
    /// Reads the `queues` column's text: a value that is not JSON (a row written by hand)
    /// reads as `null` rather than failing the whole list.
    ///
    /// ```
    /// use millrace_driver::ClientRow;
    ///
    /// assert_eq!(ClientRow::queues_from_text("{}"), serde_json::json!({}));
    /// assert_eq!(ClientRow::queues_from_text("not json"), serde_json::Value::Null);
    /// ```
    pub fn queues_from_text(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
    }
}

/// How many jobs one client runs in one queue of one kind, from
/// [`Executor::job_count_running_by_client`](crate::Executor::job_count_running_by_client).
/// The client is the last entry of each job's `attempted_by`, so River's clients show too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningCountRow {
    /// The client's id (empty for a running row with no `attempted_by`, written by hand).
    pub client_id: String,
    /// The queue.
    pub queue: String,
    /// The kind.
    pub kind: String,
    /// How many running jobs.
    pub count: i64,
}
