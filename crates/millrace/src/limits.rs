//! Fleet-wide concurrency limits: how many jobs of a queue run at once, across every client
//! or on one, optionally per partition (kind, args fields). See `docs/limits.md`.

use millrace_driver::FetchLimit;

/// How many jobs of a queue may run at once: across the whole fleet (`global`), on one client
/// (`local`), or both, and optionally counted per partition (per kind, per values of named args
/// fields) rather than for the queue as a whole.
///
/// The limit is enforced inside the fetch, so clients racing never exceed it: on PostgreSQL
/// the limited fetches of a queue take a transaction-scoped advisory lock before counting
/// running rows, on SQLite the single writer does the same. A job over the limit stays
/// `available` with its attempt unspent until a slot frees. A River client on the same
/// database knows nothing of limits and ignores them. Mirrors River Pro's concurrency limits
/// (`GlobalLimit`, `LocalLimit`, `Partition{ByArgs, ByKind}`).
///
/// Validated when the client is built: see [`LimitError`].
///
/// ```
/// use millrace::{ConcurrencyLimit, QueueConfig};
///
/// // At most 2 jobs per customer across the fleet, and 1 per customer on each client.
/// let limit = ConcurrencyLimit::global(2).local(1).partition_by_args(["customer_id"]);
/// let config = QueueConfig::new().concurrency(limit);
/// assert_eq!(config.concurrency.unwrap().global_limit, Some(2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[non_exhaustive]
pub struct ConcurrencyLimit {
    /// The most jobs running at once per partition across every client.
    pub global_limit: Option<u32>,
    /// The most jobs running at once per partition on one client.
    pub local_limit: Option<u32>,
    /// Whether each kind is its own partition.
    pub by_kind: bool,
    /// Top-level args fields whose values name the partition.
    pub by_args: Vec<String>,
}

impl ConcurrencyLimit {
    /// The largest limit a fetch can count to.
    pub const MAX_LIMIT: u32 = i32::MAX as u32;

    /// A limit of `limit` jobs running at once across every client.
    ///
    /// ```
    /// let limit = millrace::ConcurrencyLimit::global(5);
    /// assert_eq!(limit.local_limit, None);
    /// ```
    pub fn global(limit: u32) -> Self {
        ConcurrencyLimit {
            global_limit: Some(limit),
            ..Self::default()
        }
    }

    /// A limit of `limit` jobs running at once on each client, with no fleet-wide limit.
    ///
    /// ```
    /// let limit = millrace::ConcurrencyLimit::local_only(3);
    /// assert_eq!((limit.global_limit, limit.local_limit), (None, Some(3)));
    /// ```
    pub fn local_only(limit: u32) -> Self {
        ConcurrencyLimit {
            local_limit: Some(limit),
            ..Self::default()
        }
    }

    /// Also limits each client to `limit` jobs running at once.
    ///
    /// ```
    /// let limit = millrace::ConcurrencyLimit::global(4).local(1);
    /// assert_eq!(limit.local_limit, Some(1));
    /// ```
    #[must_use]
    pub fn local(mut self, limit: u32) -> Self {
        self.local_limit = Some(limit);
        self
    }

    /// Counts each kind separately: the limits hold per kind.
    ///
    /// ```
    /// assert!(millrace::ConcurrencyLimit::global(1).partition_by_kind().by_kind);
    /// ```
    #[must_use]
    pub fn partition_by_kind(mut self) -> Self {
        self.by_kind = true;
        self
    }

    /// Counts each combination of these top-level args fields' values separately (compared as
    /// JSON, so `1` and `"1"` differ; a missing field counts as `null`). Adds to fields given
    /// before.
    ///
    /// ```
    /// let limit = millrace::ConcurrencyLimit::global(2).partition_by_args(["customer_id"]);
    /// assert_eq!(limit.by_args, ["customer_id"]);
    /// ```
    #[must_use]
    pub fn partition_by_args<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.by_args.extend(fields.into_iter().map(Into::into));
        self
    }

    /// Checks the limit: at least one of global and local, none of them 0 or beyond
    /// [`MAX_LIMIT`](Self::MAX_LIMIT), partition fields non-empty, made of letters, digits,
    /// `_` and `-`, and not repeated.
    ///
    /// # Errors
    ///
    /// The first problem found, as a [`LimitError`].
    ///
    /// ```
    /// use millrace::{ConcurrencyLimit, LimitError};
    ///
    /// assert_eq!(ConcurrencyLimit::global(0).validate(), Err(LimitError::Zero { which: "global" }));
    /// assert!(ConcurrencyLimit::global(2).partition_by_args(["a"]).validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<(), LimitError> {
        if self.global_limit.is_none() && self.local_limit.is_none() {
            return Err(LimitError::NoLimit);
        }
        for (which, limit) in [("global", self.global_limit), ("local", self.local_limit)] {
            match limit {
                Some(0) => return Err(LimitError::Zero { which }),
                Some(n) if n > Self::MAX_LIMIT => {
                    return Err(LimitError::TooLarge { which, limit: n });
                }
                _ => {}
            }
        }
        for (i, field) in self.by_args.iter().enumerate() {
            if field.is_empty() {
                return Err(LimitError::EmptyField);
            }
            if !field
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(LimitError::InvalidField(field.clone()));
            }
            if self.by_args[..i].contains(field) {
                return Err(LimitError::DuplicateField(field.clone()));
            }
        }
        Ok(())
    }

    /// The key of a queue's metadata whose value overrides the queue's concurrency limit at
    /// run time, in the shape River Pro uses (see [`from_queue_metadata`](Self::from_queue_metadata)).
    pub const METADATA_KEY: &'static str = "concurrency";

    /// Reads the run-time override of a queue's concurrency limit from the queue's metadata:
    /// `{"concurrency": {"global_limit": N, "local_limit": N, "partition": {"by_args": [..],
    /// "by_kind": bool}}}`, River Pro's shape, so River's tools can show and change it.
    ///
    /// - No `concurrency` key, or `null`: no override (`Ok(None)`); the limit declared in code
    ///   applies.
    /// - `global_limit` and `local_limit`: a positive whole number sets that limit; absent,
    ///   `null` or `0` leaves it unset, as River Pro's zero value does. An override that sets
    ///   neither is refused ([`LimitError::NoLimit`]): to lift a limit, remove the key.
    /// - `partition` (optional): `by_kind` a boolean, `by_args` an array of field names.
    /// - Other keys are ignored. Any other shape is refused with [`LimitError::InvalidOverride`],
    ///   and the result is [validated](Self::validate).
    ///
    /// # Errors
    ///
    /// Why the override cannot be applied, as a [`LimitError`].
    ///
    /// ```
    /// use millrace::ConcurrencyLimit;
    ///
    /// let metadata = serde_json::json!({
    ///     "owner": "billing",
    ///     "concurrency": {"global_limit": 2, "local_limit": 0, "partition": {"by_args": ["customer_id"]}}
    /// });
    /// let limit = ConcurrencyLimit::from_queue_metadata(&metadata).unwrap().unwrap();
    /// assert_eq!(limit, ConcurrencyLimit::global(2).partition_by_args(["customer_id"]));
    /// assert_eq!(ConcurrencyLimit::from_queue_metadata(&serde_json::json!({})), Ok(None));
    /// assert!(ConcurrencyLimit::from_queue_metadata(&serde_json::json!({"concurrency": 5})).is_err());
    /// ```
    pub fn from_queue_metadata(metadata: &serde_json::Value) -> Result<Option<Self>, LimitError> {
        use serde_json::Value;
        let value = match metadata.get(Self::METADATA_KEY) {
            None | Some(Value::Null) => return Ok(None),
            Some(value) => value,
        };
        let invalid = |why: String| LimitError::InvalidOverride(why);
        let fields = value
            .as_object()
            .ok_or_else(|| invalid("\"concurrency\" is not an object".to_owned()))?;
        let limit = |name: &str| -> Result<Option<u32>, LimitError> {
            match fields.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(value) => match value.as_u64() {
                    Some(0) => Ok(None),
                    Some(n) => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
                    None => Err(invalid(format!("{name} is not a whole number: {value}"))),
                },
            }
        };
        let mut parsed = ConcurrencyLimit {
            global_limit: limit("global_limit")?,
            local_limit: limit("local_limit")?,
            by_kind: false,
            by_args: Vec::new(),
        };
        match fields.get("partition") {
            None | Some(Value::Null) => {}
            Some(Value::Object(partition)) => {
                match partition.get("by_kind") {
                    None | Some(Value::Null) => {}
                    Some(Value::Bool(by_kind)) => parsed.by_kind = *by_kind,
                    Some(other) => {
                        return Err(invalid(format!(
                            "partition.by_kind is not a boolean: {other}"
                        )));
                    }
                }
                match partition.get("by_args") {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(names)) => {
                        for name in names {
                            let name = name.as_str().ok_or_else(|| {
                                invalid(format!("partition.by_args holds a non-string: {name}"))
                            })?;
                            parsed.by_args.push(name.to_owned());
                        }
                    }
                    Some(other) => {
                        return Err(invalid(format!(
                            "partition.by_args is not an array: {other}"
                        )));
                    }
                }
            }
            Some(other) => return Err(invalid(format!("partition is not an object: {other}"))),
        }
        parsed.validate()?;
        Ok(Some(parsed))
    }

    /// This limit as a queue's metadata in River Pro's shape, which
    /// [`from_queue_metadata`](Self::from_queue_metadata) reads back; an unset limit is `0`.
    /// Merge it into the queue's metadata with [`Client::queue_update`](crate::Client::queue_update)
    /// to override the limit across the fleet.
    ///
    /// ```
    /// use millrace::ConcurrencyLimit;
    ///
    /// let limit = ConcurrencyLimit::global(3).partition_by_kind();
    /// let metadata = limit.to_queue_metadata();
    /// assert_eq!(metadata["concurrency"]["global_limit"], 3);
    /// assert_eq!(ConcurrencyLimit::from_queue_metadata(&metadata), Ok(Some(limit)));
    /// ```
    pub fn to_queue_metadata(&self) -> serde_json::Value {
        serde_json::json!({ Self::METADATA_KEY: self.to_metadata_value() })
    }

    /// This limit as the value stored under [`METADATA_KEY`](Self::METADATA_KEY) in River
    /// Pro's shape: what [`to_queue_metadata`](Self::to_queue_metadata) wraps, and what one
    /// key's write (such as [`Client::queue_set_concurrency`](crate::Client::queue_set_concurrency))
    /// or a client's declaration of its limits stores.
    ///
    /// ```
    /// use millrace::ConcurrencyLimit;
    ///
    /// let value = ConcurrencyLimit::global(3).to_metadata_value();
    /// assert_eq!(value["global_limit"], 3);
    /// assert_eq!(value["local_limit"], 0);
    /// ```
    pub fn to_metadata_value(&self) -> serde_json::Value {
        serde_json::json!({
            "global_limit": self.global_limit.unwrap_or(0),
            "local_limit": self.local_limit.unwrap_or(0),
            "partition": {"by_args": self.by_args, "by_kind": self.by_kind},
        })
    }

    /// What the driver's fetch enforces.
    pub(crate) fn to_fetch_limit(&self) -> FetchLimit {
        // Validated at build: both fit i32.
        let to_i32 = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        FetchLimit {
            global: self.global_limit.map(to_i32),
            local: self.local_limit.map(to_i32),
            by_kind: self.by_kind,
            by_args: self.by_args.clone(),
        }
    }
}

/// Why a [`ConcurrencyLimit`] was refused.
///
/// ```
/// use millrace::{ConcurrencyLimit, LimitError};
///
/// let err = ConcurrencyLimit::global(2).partition_by_args(["id", "id"]).validate().unwrap_err();
/// assert_eq!(err, LimitError::DuplicateField("id".into()));
/// assert_eq!(err.to_string(), "partition field \"id\" is given twice");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// Neither a global nor a local limit is set.
    #[error("a concurrency limit needs a global or a local limit")]
    NoLimit,
    /// A limit of 0 would never run a job; pause the queue instead.
    #[error("the {which} limit is 0, which would never run a job (pause the queue instead)")]
    Zero {
        /// `global`, `local` or `rate`.
        which: &'static str,
    },
    /// A limit beyond what a fetch counts to.
    #[error("the {which} limit {limit} is above {}", ConcurrencyLimit::MAX_LIMIT)]
    TooLarge {
        /// `global` or `local`.
        which: &'static str,
        /// The limit given.
        limit: u32,
    },
    /// A partition field is the empty string.
    #[error("a partition field is empty")]
    EmptyField,
    /// A partition field holds characters other than letters, digits, `_` and `-`.
    #[error("partition field {0:?} may hold only ASCII letters, digits, '_' and '-'")]
    InvalidField(String),
    /// A partition field is named twice.
    #[error("partition field {0:?} is given twice")]
    DuplicateField(String),
    /// A queue's metadata holds a concurrency override of another shape than River Pro's.
    #[error("the queue's concurrency override is not valid: {0}")]
    InvalidOverride(String),
    /// A rate limit's period is zero.
    #[error("the rate limit's period is zero")]
    ZeroPeriod,
    /// A rate limit's period is shorter than a millisecond or longer than a day.
    #[error("the rate limit's period {0:?} is outside 1 ms to 1 day")]
    PeriodOutOfRange(std::time::Duration),
}
