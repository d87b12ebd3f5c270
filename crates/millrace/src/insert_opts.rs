use std::time::Duration;

use jiff::Timestamp;
use millrace_types::JobState;

use crate::sequence::SequenceOpts;

/// Options for inserting a job. Every unset option is inherited.
///
/// Precedence, highest first: the options given at insert, then the args type's
/// [`JobArgs::insert_opts`](crate::JobArgs::insert_opts), then the client's
/// [`ClientBuilder::insert_opts`](crate::ClientBuilder::insert_opts), then River's defaults
/// (queue `default`, priority 1, 25 attempts, due now, no tags, empty metadata, not unique).
/// Each option is taken whole from the first level that sets it: tags and metadata are not
/// merged across levels.
///
/// ```
/// use std::time::Duration;
/// use millrace::{InsertOpts, UniqueOpts};
///
/// let opts = InsertOpts::new()
///     .queue("email")
///     .priority(2)
///     .max_attempts(5)
///     .tags(["welcome"])
///     .unique(UniqueOpts::new().by_args().by_period(Duration::from_secs(3600)));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct InsertOpts {
    /// The queue.
    pub queue: Option<String>,
    /// 1 (worked first) to 4.
    pub priority: Option<i16>,
    /// 1 to 32,767 attempts before the job is discarded.
    pub max_attempts: Option<i32>,
    /// When the job is due; a job with a time (even a past one) is inserted `scheduled`.
    pub scheduled_at: Option<Timestamp>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Metadata, a JSON object.
    pub metadata: Option<serde_json::Value>,
    /// Insert the job `pending`, so no producer fetches it until it is made available.
    pub pending: Option<bool>,
    /// Make the job unique.
    pub unique: Option<UniqueOpts>,
    /// Make the job part of a sequence: one job of a sequence key runs at a time, in
    /// insertion order.
    pub sequence: Option<SequenceOpts>,
}

impl InsertOpts {
    /// No options: everything inherited.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the queue.
    #[must_use]
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Sets the priority, 1 (first) to 4 (last).
    #[must_use]
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Sets the most attempts, 1 to 32,767.
    #[must_use]
    pub fn max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }

    /// Schedules the job for a time.
    #[must_use]
    pub fn scheduled_at(mut self, at: Timestamp) -> Self {
        self.scheduled_at = Some(at);
        self
    }

    /// Sets the tags.
    #[must_use]
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the metadata, which must be a JSON object.
    #[must_use]
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Inserts the job `pending`.
    #[must_use]
    pub fn pending(mut self) -> Self {
        self.pending = Some(true);
        self
    }

    /// Makes the job unique.
    #[must_use]
    pub fn unique(mut self, unique: UniqueOpts) -> Self {
        self.unique = Some(unique);
        self
    }

    /// Makes the job part of a sequence; see [`SequenceOpts`] for how its key is made.
    ///
    /// ```
    /// use millrace::{InsertOpts, SequenceOpts};
    ///
    /// let opts = InsertOpts::new().sequence(SequenceOpts::new().by_args(["customer_id"]));
    /// assert!(opts.sequence.is_some());
    /// ```
    #[must_use]
    pub fn sequence(mut self, sequence: SequenceOpts) -> Self {
        self.sequence = Some(sequence);
        self
    }

    /// Makes the job part of the sequence with this explicit key, with the default policy
    /// ([`SequencePolicy::Block`](crate::SequencePolicy::Block)): shorthand for
    /// `sequence(SequenceOpts::new().key(key))`.
    ///
    /// ```
    /// use millrace::InsertOpts;
    ///
    /// let opts = InsertOpts::new().sequence_key("customer-42");
    /// assert_eq!(opts.sequence.unwrap().key.as_deref(), Some("customer-42"));
    /// ```
    #[must_use]
    pub fn sequence_key(self, key: impl Into<String>) -> Self {
        self.sequence(SequenceOpts::new().key(key))
    }

    /// These options, with every unset one taken from `fallback`.
    pub(crate) fn or(self, fallback: &InsertOpts) -> InsertOpts {
        InsertOpts {
            queue: self.queue.or_else(|| fallback.queue.clone()),
            priority: self.priority.or(fallback.priority),
            max_attempts: self.max_attempts.or(fallback.max_attempts),
            scheduled_at: self.scheduled_at.or(fallback.scheduled_at),
            tags: self.tags.or_else(|| fallback.tags.clone()),
            metadata: self.metadata.or_else(|| fallback.metadata.clone()),
            pending: self.pending.or(fallback.pending),
            unique: self.unique.or_else(|| fallback.unique.clone()),
            sequence: self.sequence.or_else(|| fallback.sequence.clone()),
        }
    }
}

/// What makes a job unique: while a job with the same key is in one of the unique states,
/// inserting another returns the existing one, flagged `unique_skipped_as_duplicate`.
///
/// The key hashes the kind (unless [`exclude_kind`](UniqueOpts::exclude_kind)), and, as
/// chosen, the args, the period holding the job's time, and the queue; its bytes are the same
/// as River's, so a unique job inserted by any River client blocks the same job here. With
/// none of by-args, by-period, by-queue or by-state set, the options are empty and the job is
/// not unique, as in River.
///
/// ```
/// use std::time::Duration;
/// use millrace::{JobState, UniqueOpts};
///
/// // One job per args per hour, blocking while it is in any state but cancelled/discarded.
/// let hourly = UniqueOpts::new().by_args().by_period(Duration::from_secs(3600));
///
/// // One live job at a time, letting a new one in as soon as the last completed.
/// let single = UniqueOpts::new().by_state([
///     JobState::Available,
///     JobState::Pending,
///     JobState::Retryable,
///     JobState::Running,
///     JobState::Scheduled,
/// ]);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct UniqueOpts {
    /// Hash the args (or the args type's unique fields).
    pub by_args: bool,
    /// Hash the lower bound of this period holding the job's time (at least one second).
    pub by_period: Option<Duration>,
    /// Hash the queue.
    pub by_queue: bool,
    /// The states in which a job blocks another; must include available, pending, running and
    /// scheduled. Defaults to every state but cancelled and discarded.
    pub by_state: Option<Vec<JobState>>,
    /// Leave the kind out of the key, so jobs of different kinds can block each other.
    pub exclude_kind: bool,
}

impl UniqueOpts {
    /// Empty options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Unique by args.
    #[must_use]
    pub fn by_args(mut self) -> Self {
        self.by_args = true;
        self
    }

    /// Unique within a period (at least one second).
    #[must_use]
    pub fn by_period(mut self, period: Duration) -> Self {
        self.by_period = Some(period);
        self
    }

    /// Unique by queue.
    #[must_use]
    pub fn by_queue(mut self) -> Self {
        self.by_queue = true;
        self
    }

    /// Unique while in these states.
    #[must_use]
    pub fn by_state(mut self, states: impl IntoIterator<Item = JobState>) -> Self {
        self.by_state = Some(states.into_iter().collect());
        self
    }

    /// Leaves the kind out of the key.
    #[must_use]
    pub fn exclude_kind(mut self) -> Self {
        self.exclude_kind = true;
        self
    }

    /// Whether the options make a job unique at all.
    pub fn is_empty(&self) -> bool {
        !self.by_args && self.by_period.is_none() && !self.by_queue && self.by_state.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_level_that_sets_an_option_wins() {
        let client = InsertOpts::new()
            .queue("client")
            .priority(3)
            .max_attempts(7);
        let args = InsertOpts::new()
            .queue("args")
            .tags(["from_args"])
            .or(&client);
        let insert = InsertOpts::new().queue("insert").or(&args);
        assert_eq!(insert.queue.as_deref(), Some("insert"));
        assert_eq!(insert.priority, Some(3));
        assert_eq!(insert.max_attempts, Some(7));
        assert_eq!(insert.tags, Some(vec!["from_args".to_owned()]));
        assert_eq!(insert.metadata, None);
    }

    #[test]
    fn exclude_kind_alone_is_empty() {
        assert!(UniqueOpts::new().is_empty());
        assert!(UniqueOpts::new().exclude_kind().is_empty());
        assert!(!UniqueOpts::new().by_queue().is_empty());
    }
}
