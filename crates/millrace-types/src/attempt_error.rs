use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};

/// One failed attempt, as River records it in the job's `errors` array.
///
/// Encodes as `{"at": …, "attempt": n, "error": "…", "trace": "…"}` with `at` in RFC 3339.
///
/// Decoding is as lenient as River's Go client, so that rows other clients wrote always read:
/// a missing or `null` field takes Go's zero value (`at` becomes [`AttemptError::GO_ZERO_TIME`],
/// `attempt` 0, `error` and `trace` empty) and unknown fields are ignored. A field that is
/// present with a value of the wrong type (`{"at": "yesterday"}`) is an error, as in River.
///
/// ```
/// use millrace_types::AttemptError;
///
/// let err: AttemptError = serde_json::from_str(
///     r#"{"at":"2024-01-01T00:00:00Z","attempt":1,"error":"boom","trace":""}"#,
/// ).unwrap();
/// assert_eq!(err.error, "boom");
///
/// // Written by hand, without the fields River's clients always write.
/// let sparse: AttemptError = serde_json::from_str(r#"{"error":"boom"}"#).unwrap();
/// assert_eq!(sparse.at, AttemptError::GO_ZERO_TIME);
/// assert_eq!(sparse.attempt, 0);
/// ```
///
/// Encoding writes a NUL character of `error` or `trace` as U+FFFD (the replacement
/// character): PostgreSQL's `jsonb` refuses `\u0000`, and one worker's error message must not
/// make the completion of a whole batch fail.
///
/// ```
/// use millrace_types::AttemptError;
///
/// let blank: AttemptError = serde_json::from_str("{}").unwrap();
/// let err = AttemptError { error: "bad\0byte".into(), ..blank };
/// assert!(serde_json::to_string(&err).unwrap().contains("bad\u{FFFD}byte"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    /// When the failed attempt started.
    #[serde(default = "go_zero_time", deserialize_with = "null_as_zero_time")]
    pub at: Timestamp,
    /// The attempt number that failed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub attempt: i32,
    /// The error message. A NUL character in it is written as U+FFFD (see below).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        serialize_with = "without_nul"
    )]
    pub error: String,
    /// A stack trace for panics; empty otherwise. A NUL character in it is written as U+FFFD.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        serialize_with = "without_nul"
    )]
    pub trace: String,
}

impl AttemptError {
    /// Go's zero `time.Time`, `0001-01-01T00:00:00Z`: what River's Go client reads for an
    /// attempt error without a time, and what Millrace reads too.
    ///
    /// ```
    /// use millrace_types::AttemptError;
    ///
    /// assert_eq!(AttemptError::GO_ZERO_TIME.to_string(), "0001-01-01T00:00:00Z");
    /// ```
    pub const GO_ZERO_TIME: Timestamp = Timestamp::constant(-62_135_596_800, 0);
}

/// Writes `s` with each NUL character replaced by U+FFFD, which `jsonb` accepts.
fn without_nul<S: serde::Serializer>(s: &str, serializer: S) -> Result<S::Ok, S::Error> {
    if s.contains('\0') {
        serializer.serialize_str(&s.replace('\0', "\u{FFFD}"))
    } else {
        serializer.serialize_str(s)
    }
}

fn go_zero_time() -> Timestamp {
    AttemptError::GO_ZERO_TIME
}

fn null_as_zero_time<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    Ok(Option::<Timestamp>::deserialize(d)?.unwrap_or(AttemptError::GO_ZERO_TIME))
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
