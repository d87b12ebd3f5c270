//! Turning typed args and layered options into validated rows to insert.

use std::time::Duration;

use jiff::Timestamp;
use millrace_driver::{JobInsertParams, JobInsertResult};
use millrace_types::unique::{canonical_args, period_start};
use millrace_types::{
    JobState, MAX_ATTEMPTS_DEFAULT, PRIORITY_DEFAULT, QUEUE_DEFAULT, UniqueKeyParts, UniqueStates,
};

use crate::error::{Error, Result};
use crate::insert_opts::InsertOpts;
use crate::job_args::JobArgs;
use crate::names::{validate_kind, validate_queue, validate_tag};

/// The result of inserting one job.
///
/// ```no_run
/// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
/// # #[derive(serde::Serialize)] struct Ping {}
/// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
/// let inserted = client.insert(Ping {}, None).await?;
/// if inserted.unique_skipped_as_duplicate {
///     println!("job {} was already there", inserted.job.id);
/// }
/// # Ok(()) }
/// ```
pub type InsertResult = JobInsertResult;

/// One job for [`Client::insert_many`](crate::Client::insert_many): typed args and their
/// options, with the type erased so one batch can mix kinds.
///
/// ```
/// use millrace::{InsertManyParams, InsertOpts, JobArgs};
/// # #[derive(serde::Serialize)] struct Ping {}
/// # impl JobArgs for Ping { const KIND: &'static str = "ping"; }
///
/// let batch = vec![
///     InsertManyParams::new(Ping {}),
///     InsertManyParams::new(Ping {}).opts(InsertOpts::new().priority(2)),
/// ];
/// ```
#[derive(Debug, Clone)]
pub struct InsertManyParams {
    kind: std::borrow::Cow<'static, str>,
    args: std::result::Result<String, std::sync::Arc<serde_json::Error>>,
    args_opts: InsertOpts,
    unique_fields: Option<&'static [&'static str]>,
    opts: InsertOpts,
    /// Metadata merged over whatever the options give (periodic job markers).
    extra_metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

impl InsertManyParams {
    /// A job whose kind is only known at run time, with its args as JSON: for an operator's
    /// manual run (`millrace jobs insert`) or a bridge from another system. The args are
    /// encoded as the typed path encodes them, so a unique-by-args key matches a typed
    /// insert's; they must be a JSON object, which the insert checks.
    ///
    /// ```
    /// use millrace::{InsertManyParams, InsertOpts};
    ///
    /// let job = InsertManyParams::from_json("send_email", &serde_json::json!({ "to": "ada@example.com" }))
    ///     .opts(InsertOpts::new().queue("email"));
    /// assert_eq!(job.kind(), "send_email");
    /// ```
    pub fn from_json(kind: impl Into<String>, args: &serde_json::Value) -> Self {
        InsertManyParams::raw(
            kind.into(),
            escape_like_go(args.to_string()),
            InsertOpts::default(),
        )
    }

    /// A job with its args type's options.
    pub fn new<A: JobArgs>(args: A) -> Self {
        InsertManyParams {
            kind: std::borrow::Cow::Borrowed(A::KIND),
            args: serde_json::to_string(&args)
                .map(escape_like_go)
                .map_err(std::sync::Arc::new),
            args_opts: A::insert_opts(),
            unique_fields: A::UNIQUE_FIELDS,
            opts: InsertOpts::default(),
            extra_metadata: None,
        }
    }

    /// Options for this job, over the args type's.
    #[must_use]
    pub fn opts(mut self, opts: InsertOpts) -> Self {
        self.opts = opts;
        self
    }

    pub(crate) fn extra_metadata(
        mut self,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        self.extra_metadata = Some(extra);
        self
    }

    /// A job whose kind is only known at run time (persistent workers), with args already
    /// encoded as a JSON object.
    pub(crate) fn raw(kind: String, args_json: String, opts: InsertOpts) -> Self {
        InsertManyParams {
            kind: std::borrow::Cow::Owned(kind),
            args: Ok(args_json),
            args_opts: InsertOpts::default(),
            unique_fields: None,
            opts,
            extra_metadata: None,
        }
    }

    /// The job's kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Resolves the options and validates everything, giving the row to insert.
    pub(crate) fn resolve(
        &self,
        client_opts: &InsertOpts,
        now: Timestamp,
    ) -> Result<JobInsertParams> {
        let args = match &self.args {
            Ok(args) => args.clone(),
            Err(err) => {
                return Err(Error::ArgsEncode {
                    kind: self.kind.to_string(),
                    source: clone_json_error(err),
                });
            }
        };
        if !args.starts_with('{') {
            let hint = if args == "null" {
                " (a unit struct encodes to null: declare it as `struct Name {}`)"
            } else {
                ""
            };
            return Err(Error::InvalidInsert(format!(
                "args of kind {:?} must encode to a JSON object, not {}{hint}",
                self.kind,
                truncate(&args)
            )));
        }
        validate_kind(&self.kind)?;
        // As for metadata below: PostgreSQL's jsonb refuses `\u0000` with a raw database
        // error, after the statement was sent; refused here, on every driver, so a job means
        // the same wherever it goes and a batch fails before any of it is sent (issue 20).
        if json_holds_nul(&args) {
            return Err(Error::InvalidInsert(format!(
                "args of kind {:?} must not hold a NUL character (\\u0000), which \
                 PostgreSQL's jsonb cannot store",
                self.kind
            )));
        }
        let opts = self
            .opts
            .clone()
            .or(&self.args_opts.clone().or(client_opts));

        let queue = opts.queue.unwrap_or_else(|| QUEUE_DEFAULT.to_owned());
        validate_queue(&queue)?;
        let priority = opts.priority.unwrap_or(PRIORITY_DEFAULT);
        if !(1..=4).contains(&priority) {
            return Err(Error::InvalidInsert(format!(
                "priority must be between 1 and 4, got {priority}"
            )));
        }
        let max_attempts = validate_max_attempts(opts.max_attempts)?;
        let tags = opts.tags.unwrap_or_default();
        for tag in &tags {
            validate_tag(tag)?;
        }
        let sequence = match &opts.sequence {
            Some(sequence) => {
                // A pending sequence job would be made available by its sequence, not by
                // whoever meant to release it: the two cannot be combined.
                if opts.pending == Some(true) {
                    return Err(Error::InvalidInsert(
                        "a sequence job cannot be inserted pending: its sequence makes it \
                         available when the jobs before it have finished"
                            .to_owned(),
                    ));
                }
                Some((sequence, sequence.resolve_key(&self.kind, &args)?))
            }
            None => None,
        };
        let metadata = match opts.metadata {
            // A sequence writes its key into the metadata, so it needs a map to write into.
            None if sequence.is_some() => {
                let mut map = self.extra_metadata.clone().unwrap_or_default();
                if let Some((opts, key)) = sequence {
                    opts.stamp(key, &mut map);
                }
                serde_json::to_string(&map).expect("a JSON map always encodes")
            }
            None if self.extra_metadata.is_none() => "{}".to_owned(),
            None => serde_json::to_string(&self.extra_metadata).expect("a JSON map always encodes"),
            Some(serde_json::Value::Object(mut map)) => {
                if let Some(extra) = &self.extra_metadata {
                    map.extend(extra.clone());
                }
                if let Some((opts, key)) = sequence {
                    opts.stamp(key, &mut map);
                }
                serde_json::to_string(&map).expect("a JSON map always encodes")
            }
            Some(other) => {
                return Err(Error::InvalidInsert(format!(
                    "metadata must be a JSON object, not {}",
                    truncate(&other.to_string())
                )));
            }
        };
        // PostgreSQL's jsonb refuses `\u0000`; refused here on every driver, so a job means
        // the same wherever it goes, with an input error instead of a database one (issue 20).
        if json_holds_nul(&metadata) {
            return Err(Error::InvalidInsert(
                "metadata must not hold a NUL character (\\u0000), which PostgreSQL's jsonb \
                 cannot store"
                    .to_owned(),
            ));
        }
        let state = if opts.pending == Some(true) {
            JobState::Pending
        } else if opts.scheduled_at.is_some() {
            JobState::Scheduled
        } else {
            JobState::Available
        };

        let (unique_key, unique_states) = match opts.unique.as_ref().filter(|u| !u.is_empty()) {
            None => (None, None),
            Some(unique) => {
                let states = match &unique.by_state {
                    None => UniqueStates::DEFAULT,
                    Some(states) => {
                        let states = UniqueStates::from_by_state(states.iter().copied());
                        let missing = states.missing_required();
                        if !missing.is_empty() {
                            let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                            return Err(Error::InvalidInsert(format!(
                                "unique by-state list must contain available, pending, running \
                                 and scheduled; missing {}",
                                names.join(", ")
                            )));
                        }
                        states
                    }
                };
                let canonical = if unique.by_args {
                    Some(canonical_args(&args, self.unique_fields).map_err(|err| {
                        Error::InvalidInsert(format!("args of kind {:?}: {err}", self.kind))
                    })?)
                } else {
                    None
                };
                let period = match unique.by_period {
                    Some(period) if period < Duration::from_secs(1) => {
                        return Err(Error::InvalidInsert(format!(
                            "unique period must be at least one second, got {period:?}"
                        )));
                    }
                    // Floors the scheduled time when one is given, as River's Rust crate and
                    // River's documentation do (River for Go floors the insert time).
                    Some(period) => Some(period_start(opts.scheduled_at.unwrap_or(now), period)),
                    None => None,
                };
                let parts = UniqueKeyParts {
                    kind: (!unique.exclude_kind).then_some(self.kind.as_ref()),
                    args: canonical.as_deref(),
                    period_start: period,
                    queue: unique.by_queue.then_some(queue.as_str()),
                };
                // As River: with the kind excluded, something else must be hashed, or every
                // such job of every kind would share one key.
                if parts.is_empty() {
                    return Err(Error::InvalidInsert(
                        "unique options exclude the kind but hash nothing else; add by-args, \
                         by-period or by-queue"
                            .to_owned(),
                    ));
                }
                let key = parts.key();
                (Some(key), Some(states))
            }
        };

        Ok(JobInsertParams {
            args,
            created_at: None,
            kind: self.kind.to_string(),
            max_attempts,
            metadata,
            priority,
            queue,
            scheduled_at: opts.scheduled_at,
            state,
            tags,
            unique_key,
            unique_states,
        })
    }
}

/// Escapes `<`, `>`, `&`, U+2028 and U+2029 as Go's `encoding/json` (and River's Rust crate)
/// do, so that args encode to the same bytes, and unique-by-args keys match, across River's
/// clients. These characters only occur inside JSON strings, where the escapes mean the same.
pub(crate) fn escape_like_go(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn clone_json_error(err: &serde_json::Error) -> serde_json::Error {
    // serde_json::Error is not Clone; rebuild one that carries the same message.
    serde::ser::Error::custom(err.to_string())
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

pub(crate) fn validate_max_attempts(max_attempts: Option<i32>) -> Result<i16> {
    match max_attempts {
        None => Ok(MAX_ATTEMPTS_DEFAULT),
        Some(n) if (1..=i32::from(i16::MAX)).contains(&n) => Ok(n as i16),
        Some(n) if n > i32::from(i16::MAX) => Err(Error::InvalidInsert(format!(
            "max_attempts must be between 1 and 32767 (it is stored as smallint), got {n}; \
             for a job that should retry without end, use a persistent worker or a periodic \
             job rather than a huge max_attempts"
        ))),
        Some(n) => Err(Error::InvalidInsert(format!(
            "max_attempts must be between 1 and 32767, got {n}"
        ))),
    }
}

/// Whether JSON text holds a NUL character, which encoders write as the escape `\u0000`.
pub(crate) fn json_holds_nul(json: &str) -> bool {
    // Most args hold no escape at all; `contains` finds that out with a fast byte search,
    // which keeps the check off the insert path's profile.
    if !json.contains('\\') {
        return false;
    }
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes[i + 1..].starts_with(b"u0000") {
                return true;
            }
            // Skips the escaped character, so `\\u0000` (a backslash, then text) is not one.
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_escaped_nul_counts_as_nul() {
        assert!(json_holds_nul(r#"{"a\u0000":1}"#));
        // An escaped backslash, then a NUL.
        assert!(json_holds_nul(r#"{"a":"\\\u0000"}"#));
        // A backslash, then the text `u0000`.
        assert!(!json_holds_nul(r#"{"a":"\\u0000"}"#));
        assert!(!json_holds_nul(r#"{"u0000":"x"}"#));
    }

    #[test]
    fn html_characters_are_escaped_like_go() {
        assert_eq!(
            escape_like_go("{\"q\":\"a<b>&c\u{2028}\"}".to_owned()),
            r#"{"q":"a\u003cb\u003e\u0026c\u2028"}"#
        );
        assert_eq!(escape_like_go("{}".to_owned()), "{}");
    }

    #[test]
    fn a_billion_attempts_is_refused_with_a_hint() {
        let err = validate_max_attempts(Some(1_000_000_000)).unwrap_err();
        assert!(err.to_string().contains("32767"), "{err}");
        assert!(err.to_string().contains("persistent worker"), "{err}");
        assert!(validate_max_attempts(Some(0)).is_err());
        assert_eq!(validate_max_attempts(Some(32767)).unwrap(), 32767);
        assert_eq!(validate_max_attempts(None).unwrap(), 25);
    }
}
