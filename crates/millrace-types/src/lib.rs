//! The data types that Millrace shares between its drivers and its client: job rows, job states,
//! attempt errors and River-compatible unique keys.
//!
//! This crate knows nothing about databases or async runtimes; it mirrors River's `rivertype`
//! package. Everything here has the same meaning and the same encoding as in River, so a row
//! written by any River client reads the same way here.
//!
//! ```
//! use millrace_types::JobState;
//!
//! assert_eq!(JobState::Available.as_str(), "available");
//! assert!(JobState::Completed.is_finalized());
//! ```

mod attempt_error;
mod job_row;
mod job_state;
mod undecodable;
pub mod unique;

pub use attempt_error::AttemptError;
pub use job_row::{JobId, JobRow};
pub use job_state::{JobState, ParseJobStateError};
pub use undecodable::{JobRead, UndecodableJob, job_read_id};
pub use unique::{UniqueKeyParts, UniqueStates};

/// The queue jobs go to when no queue is given, as in River.
pub const QUEUE_DEFAULT: &str = "default";

/// The default number of attempts before a job is discarded, as in River.
pub const MAX_ATTEMPTS_DEFAULT: i16 = 25;

/// The default priority (1 is worked first, 4 last), as in River.
pub const PRIORITY_DEFAULT: i16 = 1;

/// Metadata key River uses to count snoozes (a plain integer).
pub const METADATA_SNOOZES: &str = "snoozes";

/// Metadata key set (RFC 3339 string) when a cancel was requested for a running job.
pub const METADATA_CANCEL_ATTEMPTED_AT: &str = "cancel_attempted_at";
