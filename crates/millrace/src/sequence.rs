//! Sequences (issue 19): jobs that share a sequence key run one at a time, in the order they
//! were inserted, across the whole fleet. See `docs/sequences.md`.

use millrace_driver::{SEQUENCE_CONTINUE_KEY, SEQUENCE_KEY};
use millrace_types::unique::{canonical_args, split_unique_path};

use crate::error::{Error, Result};

/// The longest sequence key, in bytes. Keys are indexed, and PostgreSQL's btree entries are
/// limited to about 2.7 kB; this leaves room for the rest of the entry.
pub const SEQUENCE_KEY_MAX_LEN: usize = 1024;

/// What a discarded or cancelled job does to the rest of its sequence.
///
/// Defaults to [`SequencePolicy::Block`], the cautious choice: a later job never runs after
/// an earlier one failed unless the code says it may.
///
/// ```
/// use millrace::SequencePolicy;
///
/// assert_eq!(SequencePolicy::default(), SequencePolicy::Block);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SequencePolicy {
    /// The rest of the sequence waits, `pending`, until an operator retries the failed job
    /// (it runs again, then the sequence goes on) or deletes it (the sequence goes on at
    /// once).
    #[default]
    Block,
    /// The next job of the sequence runs as if the failed one had completed.
    Continue,
}

/// Makes a job part of a sequence: jobs with the same sequence key run one at a time, in
/// insertion (id) order, across every client on the database.
///
/// The key is, in this order of precedence: the [`key`](SequenceOpts::key) given; else the
/// kind and the named args fields ([`by_args`](SequenceOpts::by_args)), as
/// `kind:{"field":value}`; else the kind alone (every job of the kind in one sequence).
/// Set it on the args type ([`JobArgs::insert_opts`](crate::JobArgs::insert_opts)) to
/// declare a kind's sequences once, or per insert with
/// [`InsertOpts::sequence`](crate::InsertOpts::sequence) or
/// [`InsertOpts::sequence_key`](crate::InsertOpts::sequence_key); like every option it is
/// taken whole from the first level that sets it.
///
/// ```
/// use millrace::{InsertOpts, SequenceOpts, SequencePolicy};
///
/// // Each customer's ledger entries in order, one at a time; a failed entry holds the rest.
/// let per_customer = InsertOpts::new().sequence(SequenceOpts::new().by_args(["customer_id"]));
///
/// // An explicit key, shared by jobs of several kinds, going on past failures.
/// let explicit = InsertOpts::new().sequence(
///     SequenceOpts::new().key("customer-42").policy(SequencePolicy::Continue),
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SequenceOpts {
    /// An explicit key (1 to [`SEQUENCE_KEY_MAX_LEN`] bytes).
    pub key: Option<String>,
    /// Args fields whose values, with the kind, make the key; dotted paths reach into nested
    /// objects (`customer.id`), as for unique jobs.
    pub by_args: Option<Vec<String>>,
    /// What a discarded or cancelled job does to the rest; defaults to
    /// [`SequencePolicy::Block`].
    pub policy: Option<SequencePolicy>,
}

impl SequenceOpts {
    /// Every job of the kind in one sequence, unless a key or args fields are set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets an explicit key.
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Keys the sequence by the kind and these args fields.
    #[must_use]
    pub fn by_args<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.by_args = Some(fields.into_iter().map(Into::into).collect());
        self
    }

    /// Sets what a discarded or cancelled job does to the rest of its sequence.
    #[must_use]
    pub fn policy(mut self, policy: SequencePolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Checks what can be checked without args: a key's length, an empty field list, field
    /// paths' syntax.
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(key) = &self.key {
            if key.is_empty() || key.len() > SEQUENCE_KEY_MAX_LEN {
                return Err(Error::InvalidInsert(format!(
                    "sequence key must be 1 to {SEQUENCE_KEY_MAX_LEN} bytes, got {}",
                    key.len()
                )));
            }
            if key.contains('\0') {
                return Err(Error::InvalidInsert(
                    "sequence key must not hold a NUL character".to_owned(),
                ));
            }
        }
        if let Some(fields) = &self.by_args {
            if fields.is_empty() {
                return Err(Error::InvalidInsert(
                    "sequence by-args names no field; name at least one, or leave by-args \
                     unset to key the sequence by kind"
                        .to_owned(),
                ));
            }
            for field in fields {
                split_unique_path(field).map_err(|err| {
                    Error::InvalidInsert(format!("sequence field {field:?}: {err}"))
                })?;
            }
        }
        Ok(())
    }

    /// The sequence key of a job of `kind` with these args (a JSON object).
    pub(crate) fn resolve_key(&self, kind: &str, args_json: &str) -> Result<String> {
        self.validate()?;
        if let Some(key) = &self.key {
            return Ok(key.clone());
        }
        let Some(fields) = &self.by_args else {
            return Ok(kind.to_owned());
        };
        let args: serde_json::Value = serde_json::from_str(args_json).map_err(|err| {
            Error::InvalidInsert(format!("args of kind {kind:?} are not JSON: {err}"))
        })?;
        for field in fields {
            let path = split_unique_path(field)
                .map_err(|err| Error::InvalidInsert(format!("sequence field {field:?}: {err}")))?;
            let found = path
                .iter()
                .try_fold(&args, |value, segment| value.get(segment.as_str()));
            if found.is_none() {
                return Err(Error::InvalidInsert(format!(
                    "sequence field {field:?} is not in the args of kind {kind:?}"
                )));
            }
        }
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        let canonical = canonical_args(args_json, Some(&fields))
            .map_err(|err| Error::InvalidInsert(format!("args of kind {kind:?}: {err}")))?;
        let key = format!("{kind}:{canonical}");
        if key.len() > SEQUENCE_KEY_MAX_LEN {
            return Err(Error::InvalidInsert(format!(
                "sequence key of kind {kind:?} from its args fields is {} bytes, more than \
                 {SEQUENCE_KEY_MAX_LEN}",
                key.len()
            )));
        }
        Ok(key)
    }

    /// Writes the key and the policy into a job's metadata.
    pub(crate) fn stamp(
        &self,
        key: String,
        metadata: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        metadata.insert(SEQUENCE_KEY.to_owned(), serde_json::Value::String(key));
        match self.policy.unwrap_or_default() {
            SequencePolicy::Continue => {
                metadata.insert(
                    SEQUENCE_CONTINUE_KEY.to_owned(),
                    serde_json::Value::Bool(true),
                );
            }
            SequencePolicy::Block => {
                metadata.remove(SEQUENCE_CONTINUE_KEY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_comes_from_explicit_key_then_fields_then_kind() {
        let args = r#"{"customer_id":42,"amount":7,"nested":{"id":"x"}}"#;
        let explicit = SequenceOpts::new().key("k").by_args(["amount"]);
        assert_eq!(explicit.resolve_key("ledger", args).unwrap(), "k");
        let fields = SequenceOpts::new().by_args(["customer_id", "nested.id"]);
        assert_eq!(
            fields.resolve_key("ledger", args).unwrap(),
            r#"ledger:{"customer_id":42,"nested":{"id":"x"}}"#
        );
        assert_eq!(
            SequenceOpts::new().resolve_key("ledger", args).unwrap(),
            "ledger"
        );
    }

    #[test]
    fn bad_sequence_options_are_input_errors() {
        let args = r#"{"customer_id":42}"#;
        for (opts, needle) in [
            (SequenceOpts::new().key(""), "1 to 1024 bytes"),
            (SequenceOpts::new().key("x".repeat(1025)), "1 to 1024 bytes"),
            (SequenceOpts::new().key("a\0b"), "NUL"),
            (
                SequenceOpts::new().by_args(Vec::<String>::new()),
                "no field",
            ),
            (SequenceOpts::new().by_args(["a..b"]), "sequence field"),
            (
                SequenceOpts::new().by_args(["customer"]),
                "is not in the args",
            ),
        ] {
            let err = opts.resolve_key("ledger", args).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidInsert(m) if m.contains(needle)),
                "{opts:?}: {err}"
            );
        }
    }

    #[test]
    fn stamp_writes_key_and_continue_mark_only_for_continue() {
        let mut metadata = serde_json::Map::new();
        let continue_opts = SequenceOpts::new().policy(SequencePolicy::Continue);
        continue_opts.stamp("k".to_owned(), &mut metadata);
        assert_eq!(metadata[SEQUENCE_KEY], "k");
        assert_eq!(metadata[SEQUENCE_CONTINUE_KEY], true);
        SequenceOpts::new().stamp("k".to_owned(), &mut metadata);
        assert!(!metadata.contains_key(SEQUENCE_CONTINUE_KEY));
    }
}
