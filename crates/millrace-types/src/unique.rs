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

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
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

/// Args JSON or unique fields that cannot make the args part of a unique key.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct CanonicalArgsError(#[from] ArgsProblem);

#[derive(Debug, thiserror::Error)]
enum ArgsProblem {
    #[error("args for a unique key must be JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("args for a unique key must be a JSON object")]
    NotObject,
    #[error("unique field {0:?} ends in an escape")]
    TrailingEscape(String),
    #[error("a unique field's path has an empty segment")]
    EmptySegment,
    #[error("unique field segment {0:?} needs array semantics, which River does not support")]
    ArraySegment(String),
    #[error("unique field {outer:?} contains another selected unique field, {inner:?}")]
    Nested {
        outer: Vec<String>,
        inner: Vec<String>,
    },
}

/// The args JSON that is hashed into a unique key, as River builds it.
///
/// `fields` are the args' unique fields as dotted paths (`customer.id` is the field `id` inside
/// `customer`); a backslash escapes a literal dot or backslash (`user\.id` is the one field
/// named `user.id`). This is the syntax of `riverqueue`'s `unique(by_args("path", ...))`. See
/// [`canonical_args_paths`] for what is built; `None` or an empty list hashes every argument.
///
/// # Errors
///
/// When `args_json` is not JSON or not an object (an empty array `[]` counts as `{}` without
/// fields), or a field's path is malformed: an empty segment, a trailing backslash, a segment
/// of digits only or `-1`, or a path inside another selected path.
///
/// ```
/// use millrace_types::unique::canonical_args;
///
/// let json = r#"{"b":2,"a":{"z":1,"y":2},"c":3}"#;
/// assert_eq!(canonical_args(json, None).unwrap(), r#"{"a":{"z":1,"y":2},"b":2,"c":3}"#);
/// assert_eq!(canonical_args(json, Some(&["c", "a.y"])).unwrap(), r#"{"a":{"y":2},"c":3}"#);
/// // Every selected field missing: nothing is hashed after `&args=`.
/// assert_eq!(canonical_args(json, Some(&["x"])).unwrap(), "");
/// ```
pub fn canonical_args(
    args_json: &str,
    fields: Option<&[&str]>,
) -> Result<String, CanonicalArgsError> {
    let paths = fields
        .unwrap_or_default()
        .iter()
        .map(|field| split_unique_path(field))
        .collect::<Result<Vec<_>, _>>()?;
    let paths: Vec<Vec<&str>> = paths
        .iter()
        .map(|path| path.iter().map(String::as_str).collect())
        .collect();
    let paths: Vec<&[&str]> = paths.iter().map(Vec::as_slice).collect();
    canonical_args_paths(args_json, &paths)
}

/// Splits a dotted unique field path (`customer.id`, `user\.id`) into its literal segments.
///
/// # Errors
///
/// When the path ends in a lone backslash or has an empty segment.
///
/// ```
/// use millrace_types::unique::split_unique_path;
///
/// assert_eq!(split_unique_path("customer.id").unwrap(), ["customer", "id"]);
/// assert_eq!(split_unique_path(r"user\.id").unwrap(), ["user.id"]);
/// assert!(split_unique_path("a..b").is_err());
/// ```
pub fn split_unique_path(path: &str) -> Result<Vec<String>, CanonicalArgsError> {
    let mut segments = vec![String::new()];
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => segments.last_mut().expect("never empty").push(escaped),
                None => return Err(ArgsProblem::TrailingEscape(path.to_owned()).into()),
            },
            '.' => segments.push(String::new()),
            c => segments.last_mut().expect("never empty").push(c),
        }
    }
    if segments.iter().any(String::is_empty) {
        return Err(ArgsProblem::EmptySegment.into());
    }
    Ok(segments)
}

/// The args JSON that is hashed into a unique key, from unique fields given as literal path
/// segments (`&[&["customer", "id"], &["user.id"]]`), the form `riverqueue`'s
/// `JobArgs::unique_fields` returns.
///
/// `args_json` must be the args exactly as they are encoded for storage; River's encoders write
/// compact JSON. What is built is what River builds:
///
/// * With no fields, every top-level member, keys sorted bytewise (by their unescaped text), the
///   first of duplicate keys kept, each value's text as encoded (nested member order and
///   whitespace inside values are kept; whitespace between top-level tokens is not). An empty
///   array `[]` gives `{}`.
/// * With fields, a new object holding each field found, nested paths as nested objects. The
///   fields are placed in the order of their paths joined with `.` (so `a-b` comes before `a.c`,
///   making `{"a-b":…,"a":{"c":…}}`); members keep the order in which they were first placed.
///   Missing fields, or paths through non-objects, are left out; an explicit `null` is kept. When
///   no field is found the result is empty.
/// * Keys are written as Go's `sjson` writes them: verbatim when they are printable ASCII
///   without `"` or `\` (even if the input escaped them), otherwise as a JSON string with Go's
///   escaping (`<`, `>`, `&`, U+2028 and U+2029 as `\u00XX`/`\u20XX`).
///
/// # Errors
///
/// As [`canonical_args`], except for the dotted-path syntax.
///
/// ```
/// use millrace_types::unique::canonical_args_paths;
///
/// let json = r#"{"user.id":1,"user":{"id":2},"a-b":3,"a":{"c":null}}"#;
/// assert_eq!(
///     canonical_args_paths(json, &[&["user.id"], &["user", "id"], &["a", "c"], &["a-b"]]).unwrap(),
///     r#"{"a-b":3,"a":{"c":null},"user":{"id":2},"user.id":1}"#
/// );
/// ```
pub fn canonical_args_paths(
    args_json: &str,
    fields: &[&[&str]],
) -> Result<String, CanonicalArgsError> {
    serde_json::from_str::<serde::de::IgnoredAny>(args_json).map_err(ArgsProblem::NotJson)?;
    if fields.is_empty() {
        all_args(args_json)
    } else {
        selected_args(args_json, fields)
    }
}

fn all_args(json: &str) -> Result<String, CanonicalArgsError> {
    if is_empty_array(json) {
        return Ok("{}".to_owned());
    }
    let mut members = object_members(json).ok_or(ArgsProblem::NotObject)?;
    // Stable: of duplicate keys the first stays first, and dedup keeps it.
    members.sort_by(|a, b| a.0.cmp(&b.0));
    members.dedup_by(|later, earlier| later.0 == earlier.0);
    let mut out = String::from("{");
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_key(&mut out, key);
        out.push(':');
        out.push_str(value);
    }
    out.push('}');
    Ok(out)
}

fn selected_args(json: &str, fields: &[&[&str]]) -> Result<String, CanonicalArgsError> {
    if object_members(json).is_none() {
        return Err(ArgsProblem::NotObject.into());
    }
    let mut paths: Vec<&[&str]> = fields.to_vec();
    paths.sort_by_cached_key(|path| (path.join("."), gjson_escaped(path)));
    paths.dedup();
    for path in &paths {
        for segment in *path {
            if segment.is_empty() {
                return Err(ArgsProblem::EmptySegment.into());
            }
            if *segment == "-1" || segment.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ArgsProblem::ArraySegment((*segment).to_owned()).into());
            }
        }
    }
    for outer in &paths {
        if let Some(inner) = paths
            .iter()
            .find(|inner| inner.len() > outer.len() && inner.starts_with(outer))
        {
            return Err(ArgsProblem::Nested {
                outer: outer.iter().map(|s| (*s).to_owned()).collect(),
                inner: inner.iter().map(|s| (*s).to_owned()).collect(),
            }
            .into());
        }
    }

    let mut root: Vec<Placed<'_>> = Vec::new();
    for path in paths {
        if let Some(value) = find_path(json, path) {
            place(&mut root, path, value);
        }
    }
    if root.is_empty() {
        return Ok(String::new());
    }
    let mut out = String::new();
    write_placed(&mut out, &root);
    Ok(out)
}

/// A member of the object built from selected fields, in placement order.
struct Placed<'a> {
    key: String,
    value: PlacedValue<'a>,
}

enum PlacedValue<'a> {
    Raw(&'a str),
    Object(Vec<Placed<'a>>),
}

fn place<'a>(members: &mut Vec<Placed<'a>>, path: &[&str], value: &'a str) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let index = match members.iter().position(|m| m.key == *first) {
        Some(index) => index,
        None => {
            members.push(Placed {
                key: (*first).to_owned(),
                value: PlacedValue::Object(Vec::new()),
            });
            members.len() - 1
        }
    };
    if rest.is_empty() {
        members[index].value = PlacedValue::Raw(value);
    } else if let PlacedValue::Object(children) = &mut members[index].value {
        // Nested paths were refused above, so a member on the way is always an object.
        place(children, rest, value);
    }
}

fn write_placed(out: &mut String, members: &[Placed<'_>]) {
    out.push('{');
    for (i, member) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_key(out, &member.key);
        out.push(':');
        match &member.value {
            PlacedValue::Raw(raw) => out.push_str(raw),
            PlacedValue::Object(children) => write_placed(out, children),
        }
    }
    out.push('}');
}

/// The text of the value at `path`, following the first member with each key, or `None` when
/// a segment is missing or a value on the way is not an object.
fn find_path<'a>(json: &'a str, path: &[&str]) -> Option<&'a str> {
    let mut current = json;
    for segment in path {
        current = object_members(current)?
            .into_iter()
            .find(|(key, _)| key == segment)?
            .1;
    }
    Some(current)
}

/// A path written in gjson's syntax, whose byte order breaks ties between paths that join to
/// the same dotted string (`["a.b"]` against `["a", "b"]`), as River for Go orders them.
fn gjson_escaped(path: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, segment) in path.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if segment.starts_with(':') {
            out.push(b'\\');
        }
        for b in segment.bytes() {
            let plain = b.is_ascii_alphanumeric()
                || b <= b' '
                || b > b'~'
                || b == b'_'
                || b == b'-'
                || b == b':';
            if !plain {
                out.push(b'\\');
            }
            out.push(b);
        }
    }
    out
}

/// Writes an object key as `sjson` does: verbatim when printable ASCII without `"` or `\`,
/// otherwise as a JSON string with Go's `encoding/json` escaping.
fn push_key(out: &mut String, key: &str) {
    if key
        .bytes()
        .all(|b| (0x20..=0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(key);
        out.push('"');
        return;
    }
    out.push('"');
    for c in key.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether `json` is an empty array, whitespace aside.
fn is_empty_array(json: &str) -> bool {
    let mut cursor = Cursor::new(json);
    cursor.skip_space();
    let open = cursor.eat(b'[');
    cursor.skip_space();
    let close = cursor.eat(b']');
    cursor.skip_space();
    open && close && cursor.at_end()
}

/// The members of the JSON object `json` (already known to be valid JSON): each key unescaped
/// and each value's text as written. `None` when `json` is not an object.
fn object_members(json: &str) -> Option<Vec<(Cow<'_, str>, &str)>> {
    let mut cursor = Cursor::new(json);
    cursor.skip_space();
    if !cursor.eat(b'{') {
        return None;
    }
    let mut members = Vec::new();
    cursor.skip_space();
    if cursor.eat(b'}') {
        return Some(members);
    }
    loop {
        cursor.skip_space();
        let key = cursor.string()?;
        let key = if key.contains('\\') {
            Cow::Owned(serde_json::from_str::<String>(key).ok()?)
        } else {
            Cow::Borrowed(&key[1..key.len() - 1])
        };
        cursor.skip_space();
        if !cursor.eat(b':') {
            return None;
        }
        cursor.skip_space();
        members.push((key, cursor.value()?));
        cursor.skip_space();
        if cursor.eat(b'}') {
            return Some(members);
        }
        if !cursor.eat(b',') {
            return None;
        }
    }
}

/// A position in valid JSON text.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { text, at: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn at_end(&self) -> bool {
        self.at == self.text.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.at += 1;
        }
        hit
    }

    /// Skips JSON's insignificant whitespace.
    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string token, quotes included.
    fn string(&mut self) -> Option<&'a str> {
        let start = self.at;
        if !self.eat(b'"') {
            return None;
        }
        loop {
            match self.peek()? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    return self.text.get(start..self.at);
                }
                _ => self.at += 1,
            }
        }
    }

    /// A whole value's text: a string, an object or array with everything in it, or a scalar.
    fn value(&mut self) -> Option<&'a str> {
        let start = self.at;
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                        }
                        b'{' | b'[' => {
                            depth += 1;
                            self.at += 1;
                        }
                        b'}' | b']' => {
                            depth -= 1;
                            self.at += 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => self.at += 1,
                    }
                }
            }
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
            }
        }
        self.text.get(start..self.at)
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
        // A week does not start on the Unix epoch's weekday: year one began on a Monday.
        assert_eq!(
            period_start(at, Duration::from_secs(7 * 86_400)).to_string(),
            "2024-05-06T00:00:00Z"
        );
    }

    #[test]
    fn canonical_args_sorts_top_level_and_keeps_values() {
        let json = "{ \"z\": [1, 2], \"a\": \"x y\", \"m\": 1.0 }";
        assert_eq!(
            canonical_args(json, None).unwrap(),
            r#"{"a":"x y","m":1.0,"z":[1, 2]}"#
        );
        assert_eq!(canonical_args("[]", None).unwrap(), "{}");
        assert!(canonical_args("[1]", None).is_err());
        assert!(canonical_args("{", None).is_err());
        assert_eq!(
            canonical_args(r#"{"a":1,"a":2}"#, None).unwrap(),
            r#"{"a":1}"#
        );
    }

    #[test]
    fn canonical_args_writes_keys_like_sjson() {
        let json = r#"{"\u003ck\u003e":1,"é&":2,"a\"b":3}"#;
        assert_eq!(
            canonical_args(json, None).unwrap(),
            r#"{"<k>":1,"a\"b":3,"é\u0026":2}"#
        );
    }

    #[test]
    fn canonical_args_keeps_nested_unique_fields() {
        let json = r#"{"customer":{"id":7,"name":"n"},"amount":3,"note":"x"}"#;
        assert_eq!(
            canonical_args(json, Some(&["customer.id", "amount", "missing"])).unwrap(),
            r#"{"amount":3,"customer":{"id":7}}"#
        );
    }

    #[test]
    fn canonical_args_refuses_bad_paths() {
        let json = r#"{"a":{"b":1}}"#;
        assert!(canonical_args(json, Some(&["a", "a.b"])).is_err());
        assert!(canonical_args(json, Some(&["a.0"])).is_err());
        assert!(canonical_args(json, Some(&["-1"])).is_err());
        assert!(canonical_args(json, Some(&["a."])).is_err());
        assert!(canonical_args(json, Some(&["a\\"])).is_err());
        assert!(canonical_args("[]", Some(&["a"])).is_err());
    }
}
