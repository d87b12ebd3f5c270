//! River-compatible unique keys and unique state masks.
//!
//! A unique job carries a SHA-256 `unique_key` and a `unique_states` bit mask; PostgreSQL's
//! partial unique index refuses a second row with the same key while the first is in one of
//! the masked states. The bytes here match River for Go and River's Rust crate (`riverqueue`
//! 0.5.0, checked against vectors it generated: `tests/river_unique_vectors.json`).
//!
//! ```
//! use millrace_types::{JobState, UniqueKeyParts, UniqueStates};
//!
//! let key = UniqueKeyParts { kind: Some("email"), args: None, period_start: None, queue: None }.key();
//! assert_eq!(key.len(), 32);
//! assert_eq!(UniqueStates::DEFAULT.bits(), 245);
//! assert!(UniqueStates::DEFAULT.contains(JobState::Running));
//! ```
//!
//! River checks the options before it hashes, and so must Millrace's callers: a period shorter
//! than [`PERIOD_MIN`], a custom state set lacking [`UniqueStates::REQUIRED`] (see
//! [`UniqueStates::missing_required`]), or excluding the kind with nothing else in the key
//! ([`UniqueKeyParts::is_empty`]) is an input error. Options that enable nothing (no ByArgs,
//! ByPeriod, ByQueue, ByState nor ExcludeKind) make a job that is not unique: no key at all.
//! ByState alone makes a key of the kind only.

use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::JobState;

mod args;

pub use args::{CanonicalArgsError, canonical_args, canonical_args_paths, split_unique_path};

/// A set of job states, stored as River's `unique_states bit(8)` mask.
///
/// Available is the least significant bit (0x01) and scheduled the most significant (0x80), so
/// that PostgreSQL's `get_bit`, which counts from the left, finds available at position 7.
///
/// ```
/// use millrace_types::{JobState, UniqueStates};
///
/// let states = UniqueStates::from_states([JobState::Available, JobState::Running]);
/// assert_eq!(states.bits(), 0x41);
/// assert_eq!(states.states(), vec![JobState::Available, JobState::Running]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UniqueStates(u8);

impl UniqueStates {
    /// River's default: every state but cancelled and discarded (245, `B'11110101'`).
    pub const DEFAULT: UniqueStates = UniqueStates(0xF5);

    /// The states every custom set must contain, as River requires.
    pub const REQUIRED: [JobState; 4] = [
        JobState::Available,
        JobState::Pending,
        JobState::Running,
        JobState::Scheduled,
    ];

    /// The mask's bit for one state.
    pub const fn bit(state: JobState) -> u8 {
        1 << (state as u8)
    }

    /// A mask from raw bits, as read from the database.
    pub const fn from_bits(bits: u8) -> Self {
        UniqueStates(bits)
    }

    /// The mask's raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// A mask holding the given states.
    pub fn from_states(states: impl IntoIterator<Item = JobState>) -> Self {
        UniqueStates(states.into_iter().fold(0, |acc, s| acc | Self::bit(s)))
    }

    /// The mask River stores for a ByState option: the given states, or [`UniqueStates::DEFAULT`]
    /// when the list is empty (River for Go and the `riverqueue` crate both treat an empty
    /// ByState as the default). Check [`UniqueStates::missing_required`] on the result.
    ///
    /// ```
    /// use millrace_types::{JobState, UniqueStates};
    ///
    /// assert_eq!(UniqueStates::from_by_state([]), UniqueStates::DEFAULT);
    /// let mask = UniqueStates::from_by_state([JobState::Available, JobState::Running]);
    /// assert_eq!(mask.bits(), 0x41);
    /// assert_eq!(mask.missing_required(), vec![JobState::Pending, JobState::Scheduled]);
    /// ```
    pub fn from_by_state(states: impl IntoIterator<Item = JobState>) -> Self {
        let mut states = states.into_iter().peekable();
        if states.peek().is_none() {
            Self::DEFAULT
        } else {
            Self::from_states(states)
        }
    }

    /// Whether the mask holds `state`.
    pub const fn contains(self, state: JobState) -> bool {
        self.0 & Self::bit(state) != 0
    }

    /// The states in the mask, in the SQL enum's order.
    pub fn states(self) -> Vec<JobState> {
        JobState::ALL
            .into_iter()
            .filter(|s| self.contains(*s))
            .collect()
    }

    /// The required states ([`UniqueStates::REQUIRED`]) this mask lacks.
    pub fn missing_required(self) -> Vec<JobState> {
        Self::REQUIRED
            .into_iter()
            .filter(|s| !self.contains(*s))
            .collect()
    }
}

impl Default for UniqueStates {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The parts that make up a unique key; `None` leaves a part out, as a disabled option does.
///
/// The hashed string is `&kind=…&args=…&period=…&queue=…`, each part only when present, which
/// is what River hashes.
#[derive(Debug, Clone, Copy, Default)]
pub struct UniqueKeyParts<'a> {
    /// The job's kind, unless the options exclude it.
    pub kind: Option<&'a str>,
    /// The canonical args JSON from [`canonical_args`], when unique by args. It may be empty
    /// (when every selected unique field is missing): River then hashes `&args=` alone.
    pub args: Option<&'a str>,
    /// The period's lower bound from [`period_start`], when unique by period.
    pub period_start: Option<Timestamp>,
    /// The job's queue, when unique by queue.
    pub queue: Option<&'a str>,
}

impl UniqueKeyParts<'_> {
    /// Whether no part is present. River refuses such a key: excluding the kind needs ByArgs,
    /// ByPeriod or ByQueue.
    pub fn is_empty(&self) -> bool {
        self.kind.is_none()
            && self.args.is_none()
            && self.period_start.is_none()
            && self.queue.is_none()
    }

    /// The string that is hashed.
    pub fn to_key_string(&self) -> String {
        let mut s = String::new();
        if let Some(kind) = self.kind {
            s.push_str("&kind=");
            s.push_str(kind);
        }
        if let Some(args) = self.args {
            s.push_str("&args=");
            s.push_str(args);
        }
        if let Some(start) = self.period_start {
            s.push_str("&period=");
            // Go's RFC 3339 layout in UTC: whole seconds and a `Z`.
            let _ = write!(s, "{}", start.strftime("%Y-%m-%dT%H:%M:%SZ"));
        }
        if let Some(queue) = self.queue {
            s.push_str("&queue=");
            s.push_str(queue);
        }
        s
    }

    /// The SHA-256 unique key: 32 bytes.
    pub fn key(&self) -> Vec<u8> {
        Sha256::digest(self.to_key_string().as_bytes()).to_vec()
    }
}

/// The shortest period River accepts for ByPeriod; a shorter one is an input error.
pub const PERIOD_MIN: Duration = Duration::from_secs(1);

/// Seconds from 0001-01-01T00:00:00Z to the Unix epoch: Go's `Time.Truncate` counts from there.
const SECONDS_YEAR_ONE_TO_UNIX: i128 = 62_135_596_800;

/// The lower bound of the period that holds `at`: `at` floored to a multiple of `period` counted
/// from 0001-01-01T00:00:00Z, as Go's `Time.Truncate` does.
///
/// Like River's Rust crate, pass the job's `scheduled_at` when one is given and the insert time
/// otherwise. (River for Go floors the insert time even for a scheduled job.) A zero period,
/// which River refuses (see [`PERIOD_MIN`]), returns `at` unchanged, and so does a lower bound
/// that falls outside the range of [`Timestamp`].
///
/// ```
/// use std::time::Duration;
/// use millrace_types::unique::period_start;
///
/// let at: jiff::Timestamp = "2024-05-06T07:08:09.5Z".parse().unwrap();
/// let start = period_start(at, Duration::from_secs(3600));
/// assert_eq!(start.to_string(), "2024-05-06T07:00:00Z");
/// ```
pub fn period_start(at: Timestamp, period: Duration) -> Timestamp {
    let period_ns = period.as_nanos() as i128;
    if period_ns == 0 {
        return at;
    }
    let since_year_one = at.as_nanosecond() + SECONDS_YEAR_ONE_TO_UNIX * 1_000_000_000;
    let floored = at.as_nanosecond() - since_year_one.rem_euclid(period_ns);
    Timestamp::from_nanosecond(floored).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mask_is_245() {
        let states = UniqueStates::from_states([
            JobState::Available,
            JobState::Completed,
            JobState::Pending,
            JobState::Retryable,
            JobState::Running,
            JobState::Scheduled,
        ]);
        assert_eq!(states, UniqueStates::DEFAULT);
        assert_eq!(states.bits(), 245);
    }

    #[test]
    fn missing_required_names_states() {
        let states = UniqueStates::from_states([JobState::Available, JobState::Running]);
        assert_eq!(
            states.missing_required(),
            vec![JobState::Pending, JobState::Scheduled]
        );
    }

    #[test]
    fn period_floors_from_year_one() {
        let at: Timestamp = "2024-05-06T07:08:09Z".parse().unwrap();
        assert_eq!(
            period_start(at, Duration::from_secs(15 * 60)).to_string(),
            "2024-05-06T07:00:00Z"
        );
        // A day counted from year one starts at midnight UTC.
        assert_eq!(
            period_start(at, Duration::from_secs(86_400)).to_string(),
            "2024-05-06T00:00:00Z"
        );
        // A week does not start on the Unix epoch's weekday: year one began on a Monday.
        assert_eq!(
            period_start(at, Duration::from_secs(7 * 86_400)).to_string(),
            "2024-05-06T00:00:00Z"
        );
    }
}
