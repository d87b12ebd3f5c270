use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The state of a job, the values of River's `river_job_state` enum.
///
/// The variants are declared in the enum's SQL order, which also fixes their bit in a
/// [`UniqueStates`](crate::UniqueStates) mask.
///
/// ```
/// use millrace_types::JobState;
///
/// let state: JobState = "retryable".parse().unwrap();
/// assert_eq!(state, JobState::Retryable);
/// assert!(!state.is_finalized());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Ready to be fetched by a producer.
    Available,
    /// Cancelled by a worker or an administrator; final.
    Cancelled,
    /// Worked successfully; final.
    Completed,
    /// Failed its last attempt, or was discarded; final.
    Discarded,
    /// Inserted as pending; waits for something outside the queue to make it available.
    Pending,
    /// Failed an attempt and waits for its retry time.
    Retryable,
    /// Being worked by a client.
    Running,
    /// Waits for its scheduled time.
    Scheduled,
}

impl JobState {
    /// Every state, in the SQL enum's order.
    pub const ALL: [JobState; 8] = [
        JobState::Available,
        JobState::Cancelled,
        JobState::Completed,
        JobState::Discarded,
        JobState::Pending,
        JobState::Retryable,
        JobState::Running,
        JobState::Scheduled,
    ];

    /// The state's name as stored in the database.
    ///
    /// ```
    /// assert_eq!(millrace_types::JobState::Running.as_str(), "running");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Available => "available",
            JobState::Cancelled => "cancelled",
            JobState::Completed => "completed",
            JobState::Discarded => "discarded",
            JobState::Pending => "pending",
            JobState::Retryable => "retryable",
            JobState::Running => "running",
            JobState::Scheduled => "scheduled",
        }
    }

    /// Whether the state is final (cancelled, completed or discarded), where `finalized_at` is set.
    ///
    /// ```
    /// assert!(millrace_types::JobState::Discarded.is_finalized());
    /// ```
    pub const fn is_finalized(self) -> bool {
        matches!(
            self,
            JobState::Cancelled | JobState::Completed | JobState::Discarded
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no job state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state {0:?}")]
pub struct ParseJobStateError(pub String);

impl FromStr for JobState {
    type Err = ParseJobStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| ParseJobStateError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>().unwrap(), state);
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{}\"", state.as_str())
            );
        }
        assert!("nope".parse::<JobState>().is_err());
    }
}
