use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One failed attempt, as River records it in the job's `errors` array.
///
/// Encodes as `{"at": …, "attempt": n, "error": "…", "trace": "…"}` with `at` in RFC 3339.
///
/// ```
/// use millrace_types::AttemptError;
///
/// let err: AttemptError = serde_json::from_str(
///     r#"{"at":"2024-01-01T00:00:00Z","attempt":1,"error":"boom","trace":""}"#,
/// ).unwrap();
/// assert_eq!(err.error, "boom");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    /// When the failed attempt started.
    pub at: Timestamp,
    /// The attempt number that failed.
    pub attempt: i32,
    /// The error message.
    pub error: String,
    /// A stack trace for panics; empty otherwise.
    #[serde(default)]
    pub trace: String,
}
