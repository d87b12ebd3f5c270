//! Sequences (issue 19): jobs that share a key run one at a time, in insertion order.
//!
//! A job's sequence key lives in its metadata under [`SEQUENCE_KEY`], where River's clients
//! carry it along untouched. The drivers keep the order with the `pending` state, which
//! River's fetch ignores: a job is inserted `pending` while its sequence has a live job, and
//! the next `pending` job of a key (lowest id) is promoted when the one before it finishes.

use millrace_types::{JobId, JobState};

/// The metadata key holding a job's sequence key (a JSON string).
///
/// River Pro does not document where it keeps its sequence key, so Millrace uses a key of
/// its own `millrace:` family; River's clients carry metadata they do not know along as is.
///
/// ```
/// assert_eq!(millrace_driver::SEQUENCE_KEY, "millrace:seq");
/// ```
pub const SEQUENCE_KEY: &str = "millrace:seq";

/// The metadata key (JSON `true`) that marks a sequence job whose discard or cancel lets the
/// rest of its sequence continue. Without it, a discarded or cancelled job blocks its
/// sequence until an operator retries or deletes it.
///
/// ```
/// assert_eq!(millrace_driver::SEQUENCE_CONTINUE_KEY, "millrace:seq_continue");
/// ```
pub const SEQUENCE_CONTINUE_KEY: &str = "millrace:seq_continue";

/// The sequence key in a job's encoded metadata, if it has one.
///
/// Cheap for the common case: metadata that does not mention [`SEQUENCE_KEY`] is not parsed.
/// A key that is not a JSON string is no sequence key (the client never writes one).
///
/// ```
/// use millrace_driver::sequence_key;
///
/// assert_eq!(sequence_key(r#"{"millrace:seq":"customer-42"}"#).as_deref(), Some("customer-42"));
/// assert_eq!(sequence_key("{}"), None);
/// assert_eq!(sequence_key(r#"{"millrace:seq":42}"#), None);
/// ```
pub fn sequence_key(metadata: &str) -> Option<String> {
    if !metadata.contains("millrace:seq\"") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(metadata).ok()?;
    sequence_key_of(&value)
}

/// The sequence key of decoded metadata, if it has one.
///
/// ```
/// let metadata = serde_json::json!({"millrace:seq": "a"});
/// assert_eq!(millrace_driver::sequence_key_of(&metadata).as_deref(), Some("a"));
/// ```
pub fn sequence_key_of(metadata: &serde_json::Value) -> Option<String> {
    metadata
        .get(SEQUENCE_KEY)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// A job that a sequence made due: the next `pending` job of its key, now `available` (or
/// `scheduled`, when it was inserted for a later time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequencePromoted {
    /// The job.
    pub id: JobId,
    /// Its sequence key.
    pub key: String,
    /// Its queue, for the insert notification.
    pub queue: String,
    /// `available` or `scheduled`.
    pub state: JobState,
}

/// Params for [`Executor::sequence_list`](crate::Executor::sequence_list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SequenceListParams {
    /// Only sequences whose key sorts after this one (the cursor of the previous page).
    pub after: Option<String>,
    /// Only this key's sequence.
    pub key: Option<String>,
    /// Only sequences that a discarded or cancelled job blocks.
    pub blocked_only: bool,
    /// At most this many sequences.
    pub limit: i64,
}

/// One sequence with unfinished work, from
/// [`Executor::sequence_list`](crate::Executor::sequence_list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceRow {
    /// The sequence key.
    pub key: String,
    /// The job at the head: the live one (available, running, retryable or scheduled), else
    /// the discarded or cancelled one that blocks the sequence, else the next pending one.
    pub head_id: JobId,
    /// The head job's state.
    pub head_state: JobState,
    /// The head job's kind.
    pub head_kind: String,
    /// The head job's queue.
    pub head_queue: String,
    /// How many jobs wait `pending` behind the head.
    pub pending: i64,
    /// Whether a discarded or cancelled job blocks the sequence (its policy is to block).
    pub blocked: bool,
}

/// Keys sorted and without repeats: every driver takes a batch's key locks in this order, so
/// two batches never wait on each other's locks in a cycle.
///
/// ```
/// let keys = millrace_driver::sorted_keys(["b", "a", "b"].map(String::from));
/// assert_eq!(keys, ["a", "b"]);
/// ```
pub fn sorted_keys(keys: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut keys: Vec<String> = keys.into_iter().collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Decides the state of each job of an insert batch: a job of a sequence that already has
/// unfinished work (`occupied`), or that follows another job of its key earlier in the
/// batch, is inserted `pending`; every other job keeps its state. Returns the batch to
/// insert, changed only where needed.
///
/// ```
/// use millrace_driver::{JobInsertParams, sequence_states};
/// use millrace_driver::types::JobState;
///
/// let job = |seq: &str| JobInsertParams {
///     args: "{}".into(),
///     created_at: None,
///     kind: "k".into(),
///     max_attempts: 25,
///     metadata: format!(r#"{{"millrace:seq":"{seq}"}}"#),
///     priority: 1,
///     queue: "default".into(),
///     scheduled_at: None,
///     state: JobState::Available,
///     tags: Vec::new(),
///     unique_key: None,
///     unique_states: None,
/// };
/// let jobs = [job("a"), job("a"), job("b"), job("c")];
/// let states: Vec<JobState> = sequence_states(&jobs, &["c".to_owned()])
///     .iter()
///     .map(|j| j.state)
///     .collect();
/// assert_eq!(states, [JobState::Available, JobState::Pending, JobState::Available, JobState::Pending]);
/// ```
pub fn sequence_states(
    jobs: &[crate::JobInsertParams],
    occupied: &[String],
) -> Vec<crate::JobInsertParams> {
    let mut taken: std::collections::HashSet<String> = occupied.iter().cloned().collect();
    jobs.iter()
        .map(|job| {
            let mut job = job.clone();
            if let Some(key) = sequence_key(&job.metadata) {
                if !taken.insert(key) {
                    job.state = JobState::Pending;
                }
            }
            job
        })
        .collect()
}
