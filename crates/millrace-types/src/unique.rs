//! River-compatible unique keys and unique state masks.
//!
//! A unique job carries a SHA-256 `unique_key` and a `unique_states` bit mask; PostgreSQL's
//! partial unique index refuses a second row with the same key while the first is in one of
//! the masked states. The bytes here match River for Go and River's Rust crate (`riverqueue`).
//!
//! ```
//! use millrace_types::{JobState, UniqueKeyParts, UniqueStates};
//!
//! let key = UniqueKeyParts { kind: Some("email"), args: None, period_start: None, queue: None }.key();
//! assert_eq!(key.len(), 32);
//! assert_eq!(UniqueStates::DEFAULT.bits(), 245);
//! assert!(UniqueStates::DEFAULT.contains(JobState::Running));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::JobState;

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
    /// The canonical args JSON from [`canonical_args`], when unique by args.
    pub args: Option<&'a str>,
    /// The period's lower bound from [`period_start`], when unique by period.
    pub period_start: Option<Timestamp>,
    /// The job's queue, when unique by queue.
    pub queue: Option<&'a str>,
}

impl UniqueKeyParts<'_> {
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

/// Seconds from 0001-01-01T00:00:00Z to the Unix epoch: Go's `Time.Truncate` counts from there.
const SECONDS_YEAR_ONE_TO_UNIX: i128 = 62_135_596_800;

/// The lower bound of the period that holds `at`: `at` floored to a multiple of `period` counted
/// from 0001-01-01T00:00:00Z, as Go's `Time.Truncate` does.
///
/// A zero period returns `at` unchanged.
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

/// Args JSON that cannot be made canonical for a unique key.
#[derive(Debug, thiserror::Error)]
#[error("args for a unique key must be a JSON object")]
pub struct CanonicalArgsError(#[source] serde_json::Error);

/// The args JSON that is hashed into a unique key: compact, top-level keys sorted, values kept
/// as they were encoded.
///
/// With `fields`, only those fields are kept (fields the args lack are left out). A field may be
/// a dotted path (`customer.id`), which is kept as nested objects, the way River treats fields
/// tagged `river:"unique"`.
///
/// # Errors
///
/// When `args_json` is not a JSON object.
///
/// ```
/// use millrace_types::unique::canonical_args;
///
/// let json = r#"{"b": 2, "a": {"z": 1, "y": 2}}"#;
/// assert_eq!(canonical_args(json, None).unwrap(), r#"{"a":{"z":1,"y":2},"b":2}"#);
/// assert_eq!(canonical_args(json, Some(&["b"])).unwrap(), r#"{"b":2}"#);
/// ```
pub fn canonical_args(args_json: &str, fields: Option<&[&str]>) -> Result<String, CanonicalArgsError> {
    let top: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(args_json).map_err(CanonicalArgsError)?;
    let Some(fields) = fields else {
        return Ok(write_object(top.iter().map(|(k, v)| (k.as_str(), v.as_ref()))));
    };
    let mut root = Tree::default();
    for field in fields {
        let path: Vec<&str> = field.split('.').collect();
        let Some(value) = top.get(path[0]).and_then(|v| lookup(v, &path[1..])) else {
            continue;
        };
        let (last, parents) = path.split_last().expect("split yields at least one segment");
        let mut node = &mut root;
        for segment in parents {
            node = node.children.entry((*segment).to_owned()).or_default();
        }
        let mut compact = String::new();
        push_compact(&mut compact, value.get());
        node.leaves.insert((*last).to_owned(), compact);
    }
    Ok(root.to_json())
}

/// The value at `path` inside `raw`, or `None` when some segment is missing or not an object.
fn lookup(raw: &RawValue, path: &[&str]) -> Option<Box<RawValue>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(raw.to_owned());
    };
    let map: BTreeMap<String, Box<RawValue>> = serde_json::from_str(raw.get()).ok()?;
    lookup(map.get(*first)?, rest)
}

#[derive(Default)]
struct Tree {
    leaves: BTreeMap<String, String>,
    children: BTreeMap<String, Tree>,
}

impl Tree {
    fn to_json(&self) -> String {
        let mut keys: Vec<&String> = self.leaves.keys().chain(self.children.keys()).collect();
        keys.sort();
        keys.dedup();
        let mut s = String::from("{");
        for (i, key) in keys.into_iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&serde_json::to_string(key).unwrap_or_default());
            s.push(':');
            match (self.children.get(key), self.leaves.get(key)) {
                (Some(child), _) => s.push_str(&child.to_json()),
                (None, Some(leaf)) => s.push_str(leaf),
                (None, None) => {}
            }
        }
        s.push('}');
        s
    }
}

fn write_object<'a>(entries: impl Iterator<Item = (&'a str, &'a RawValue)>) -> String {
    let mut s = String::from("{");
    for (i, (key, node)) in entries.enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&serde_json::to_string(key).unwrap_or_default());
        s.push(':');
        push_compact(&mut s, node.get());
    }
    s.push('}');
    s
}

/// Appends `raw` with the insignificant whitespace outside strings removed.
fn push_compact(out: &mut String, raw: &str) {
    let mut in_string = false;
    let mut escaped = false;
    for c in raw.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
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
    }

    #[test]
    fn canonical_args_sorts_and_compacts() {
        let json = "{ \"z\": [1, 2], \"a\": \"x y\" }";
        assert_eq!(canonical_args(json, None).unwrap(), r#"{"a":"x y","z":[1,2]}"#);
        assert!(canonical_args("[1]", None).is_err());
    }

    #[test]
    fn canonical_args_keeps_nested_unique_fields() {
        let json = r#"{"customer":{"id":7,"name":"n"},"amount":3,"note":"x"}"#;
        assert_eq!(
            canonical_args(json, Some(&["customer.id", "amount", "missing"])).unwrap(),
            r#"{"amount":3,"customer":{"id":7}}"#
        );
    }
}
