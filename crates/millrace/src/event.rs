use std::time::Duration;

use millrace_types::{JobRow, JobState, UndecodableJob};

/// Something that happened in a client, for subscribers.
///
/// Job events carry the job's row as the worker saw it, with `state` set to the state the
/// outcome left it in.
///
/// ```no_run
/// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
/// use millrace::{Event, EventKind};
/// let mut events = client.subscribe();
/// while let Ok(event) = events.recv().await {
///     if let Event::Job { kind: EventKind::JobFailed, job, .. } = event {
///         eprintln!("job {} failed: {:?}", job.id, job.errors.last());
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A job's attempt ended and its outcome is stored.
    Job {
        /// What happened.
        kind: EventKind,
        /// The job.
        job: std::sync::Arc<JobRow>,
        /// How long the worker ran.
        duration: Duration,
    },
    /// Outcomes this client stored did not apply: each job's row was no longer `running` at
    /// the attempt its worker was given, so the completion fence left the row as it was.
    ///
    /// This happens when the row moved on while the worker ran: most often after an outage
    /// longer than the heartbeat lease, when another client's dead-client rescue (or River's
    /// stuck-job rescuer, or an operator) took the job and it was, or will be, worked again.
    /// That is within at-least-once delivery, as in River; this event (and a warning in the
    /// log) says so instead of dropping the outcomes silently. Jobs whose worker completed
    /// them in its own transaction are not counted, since the fence is expected to skip
    /// those. See the README's section on heartbeats for sizing the lease.
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
    /// use millrace::Event;
    /// let mut events = client.subscribe();
    /// while let Ok(event) = events.recv().await {
    ///     if let Event::CompletionsFencedOut { jobs } = event {
    ///         eprintln!("{} outcomes did not apply; those jobs run again", jobs.len());
    ///     }
    /// }
    /// # }
    /// ```
    CompletionsFencedOut {
        /// The jobs, as their workers saw them (`attempt` is the attempt that was fenced
        /// out; `state` is still `running`).
        jobs: Vec<std::sync::Arc<JobRow>>,
    },
    /// This client started an instance of a persistent worker.
    PersistentWorkerStarted {
        /// The persistent worker's name.
        name: String,
        /// This client's id.
        client: String,
        /// The instance's attempt (its fencing token).
        attempt: i16,
    },
    /// An instance of a persistent worker stopped on this client.
    PersistentWorkerStopped {
        /// The persistent worker's name.
        name: String,
        /// This client's id.
        client: String,
        /// The instance's attempt.
        attempt: i16,
        /// The error it failed with, if it failed.
        error: Option<String>,
    },
    /// A queue's metadata changed (announced on `river_control`, from any client).
    QueueMetadataChanged {
        /// The queue.
        queue: String,
        /// Its new metadata.
        metadata: serde_json::Value,
    },
    /// A queue was paused on this client.
    QueuePaused {
        /// The queue.
        queue: String,
    },
    /// A queue was resumed on this client.
    QueueResumed {
        /// The queue.
        queue: String,
    },
    /// This client fetched a job whose row could not be decoded (written by hand or by another
    /// client with a value no River client writes), and recorded a failed attempt carrying the
    /// decode error instead of working it: the job is retryable, or discarded after its last
    /// attempt. The rest of the fetch went on as usual.
    JobUndecodable {
        /// What could be read of the row, and why the rest could not.
        job: std::sync::Arc<UndecodableJob>,
        /// The state the failed attempt left the job in.
        state: JobState,
    },
}

/// The kind of a job event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// The job completed.
    JobCompleted,
    /// The attempt failed; the job will be retried, or was discarded.
    JobFailed,
    /// The job was cancelled.
    JobCancelled,
    /// The job snoozed.
    JobSnoozed,
    /// The attempt was interrupted by a stop and the job returned to `available`.
    JobReturned,
}

impl EventKind {
    pub(crate) fn from_state(state: JobState, snoozed: bool, returned: bool) -> Self {
        match state {
            JobState::Completed => EventKind::JobCompleted,
            JobState::Cancelled => EventKind::JobCancelled,
            _ if snoozed => EventKind::JobSnoozed,
            _ if returned => EventKind::JobReturned,
            _ => EventKind::JobFailed,
        }
    }
}
