//! Assertions that jobs were, or were not, inserted: River's `rivertest` for Millrace.
//!
//! Each assertion lists the jobs of a kind through the driver and panics with a message naming
//! the kind, the job and every mismatched option, so a failed expectation reads like a failed
//! `assert_eq!`.

use jiff::Timestamp;
use millrace::{Client, JobArgs};
use millrace_driver::{Driver, Executor, JobListParams};
use millrace_postgres::PgDriver;
use millrace_types::{JobRow, JobState};
use serde::de::DeserializeOwned;

/// What the assertions read jobs through: a driver, a [`Client`] or a [`TestDb`](crate::TestDb).
///
/// # Examples
///
/// ```no_run
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping {}
/// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
/// # async fn example(db: millrace_test::TestDb) {
/// use millrace_test::require_inserted;
///
/// let client = millrace::Client::builder(db.driver()).build().unwrap();
/// client.insert(Ping {}, None).await.unwrap();
/// // Any of these reads the same jobs.
/// require_inserted::<Ping>(&client, None).await;
/// require_inserted::<Ping>(&db.driver(), None).await;
/// require_inserted::<Ping>(&db, None).await;
/// # }
/// ```
pub trait AsDriver {
    /// The driver.
    type Driver: Driver;

    /// The driver to read jobs through.
    fn as_driver(&self) -> &Self::Driver;
}

impl AsDriver for PgDriver {
    type Driver = PgDriver;

    fn as_driver(&self) -> &PgDriver {
        self
    }
}

impl<D: Driver> AsDriver for Client<D> {
    type Driver = D;

    fn as_driver(&self) -> &D {
        self.driver()
    }
}

impl AsDriver for crate::TestDb {
    type Driver = PgDriver;

    fn as_driver(&self) -> &PgDriver {
        self.driver_ref()
    }
}

/// Options a [`require_inserted`] job must match. Unset options are not checked.
///
/// Mirrors River's `rivertest.RequireInsertedOpts`.
///
/// # Examples
///
/// ```
/// use millrace::JobState;
/// use millrace_test::RequireInsertedOpts;
///
/// let opts = RequireInsertedOpts::new()
///     .queue("email")
///     .priority(2)
///     .max_attempts(5)
///     .state(JobState::Available)
///     .tags(["welcome"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct RequireInsertedOpts {
    /// The job's `max_attempts`.
    pub max_attempts: Option<i16>,
    /// The job's priority.
    pub priority: Option<i16>,
    /// The job's queue.
    pub queue: Option<String>,
    /// The job's `scheduled_at`, compared to the microsecond (PostgreSQL's precision).
    pub scheduled_at: Option<Timestamp>,
    /// The job's state.
    pub state: Option<JobState>,
    /// The job's tags, in order.
    pub tags: Option<Vec<String>>,
}

impl RequireInsertedOpts {
    /// No options: any job of the kind matches.
    ///
    /// ```
    /// let opts = millrace_test::RequireInsertedOpts::new();
    /// assert_eq!(opts, Default::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires this `max_attempts`.
    ///
    /// ```
    /// let opts = millrace_test::RequireInsertedOpts::new().max_attempts(3);
    /// ```
    #[must_use]
    pub fn max_attempts(mut self, max_attempts: i16) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }

    /// Requires this priority.
    ///
    /// ```
    /// let opts = millrace_test::RequireInsertedOpts::new().priority(4);
    /// ```
    #[must_use]
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Requires this queue.
    ///
    /// ```
    /// let opts = millrace_test::RequireInsertedOpts::new().queue("email");
    /// ```
    #[must_use]
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Requires this `scheduled_at`, to the microsecond.
    ///
    /// ```
    /// let at = jiff::Timestamp::from_second(1_700_000_000).unwrap();
    /// let opts = millrace_test::RequireInsertedOpts::new().scheduled_at(at);
    /// ```
    #[must_use]
    pub fn scheduled_at(mut self, at: Timestamp) -> Self {
        self.scheduled_at = Some(at);
        self
    }

    /// Requires this state.
    ///
    /// ```
    /// let opts = millrace_test::RequireInsertedOpts::new().state(millrace::JobState::Scheduled);
    /// ```
    #[must_use]
    pub fn state(mut self, state: JobState) -> Self {
        self.state = Some(state);
        self
    }

    /// Requires exactly these tags, in this order.
    ///
    /// ```
    /// let opts = millrace_test::RequireInsertedOpts::new().tags(["a_tag", "another"]);
    /// ```
    #[must_use]
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// Describes each option the row does not match; empty when it matches.
    fn mismatches(&self, row: &JobRow) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |name: &str, expected: String, actual: String| {
            if expected != actual {
                out.push(format!("{name}: expected {expected}, found {actual}"));
            }
        };
        if let Some(v) = self.max_attempts {
            check("max_attempts", v.to_string(), row.max_attempts.to_string());
        }
        if let Some(v) = self.priority {
            check("priority", v.to_string(), row.priority.to_string());
        }
        if let Some(v) = &self.queue {
            check("queue", format!("{v:?}"), format!("{:?}", row.queue));
        }
        if let Some(v) = self.scheduled_at {
            check(
                "scheduled_at",
                to_micros(v).to_string(),
                to_micros(row.scheduled_at).to_string(),
            );
        }
        if let Some(v) = self.state {
            check("state", v.to_string(), row.state.to_string());
        }
        if let Some(v) = &self.tags {
            check("tags", format!("{v:?}"), format!("{:?}", row.tags));
        }
        out
    }
}

fn to_micros(at: Timestamp) -> Timestamp {
    let nanos = at.as_nanosecond();
    Timestamp::from_nanosecond(nanos - nanos.rem_euclid(1_000))
        .expect("flooring to the microsecond stays in range")
}

/// A job found by [`require_inserted`]: its decoded args and its row.
///
/// # Examples
///
/// ```no_run
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping { n: u32 }
/// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
/// # async fn example(db: millrace_test::TestDb) {
/// let job = millrace_test::require_inserted::<Ping>(&db.driver(), None).await;
/// assert_eq!(job.args.n, 1);
/// assert_eq!(job.row.attempt, 0);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct InsertedJob<A> {
    /// The args, decoded from the row.
    pub args: A,
    /// The row.
    pub row: JobRow,
}

/// One job [`require_many_inserted`] expects: a kind, and options its job must match.
///
/// # Examples
///
/// ```
/// # #[derive(serde::Serialize)] struct Ping {}
/// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
/// use millrace_test::{ExpectedJob, RequireInsertedOpts};
///
/// let expected = [
///     ExpectedJob::of::<Ping>(),
///     ExpectedJob::of::<Ping>().opts(RequireInsertedOpts::new().priority(2)),
///     ExpectedJob::kind("river_kind_from_go"),
/// ];
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ExpectedJob {
    /// The job's kind.
    pub kind: String,
    /// Options the job must match.
    pub opts: Option<RequireInsertedOpts>,
}

impl ExpectedJob {
    /// A job of `A`'s kind.
    ///
    /// ```
    /// # #[derive(serde::Serialize)] struct Ping {}
    /// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// assert_eq!(millrace_test::ExpectedJob::of::<Ping>().kind, "ping");
    /// ```
    pub fn of<A: JobArgs>() -> Self {
        Self::kind(A::KIND)
    }

    /// A job of a kind given by name, such as one inserted by another River client.
    ///
    /// ```
    /// let expected = millrace_test::ExpectedJob::kind("email");
    /// ```
    pub fn kind(kind: impl Into<String>) -> Self {
        ExpectedJob {
            kind: kind.into(),
            opts: None,
        }
    }

    /// Options the job must match.
    ///
    /// ```
    /// let expected = millrace_test::ExpectedJob::kind("email")
    ///     .opts(millrace_test::RequireInsertedOpts::new().queue("email"));
    /// ```
    #[must_use]
    pub fn opts(mut self, opts: RequireInsertedOpts) -> Self {
        self.opts = Some(opts);
        self
    }
}

/// Asserts that exactly one job of `A`'s kind exists, matching `opts`, and returns it with its
/// args decoded.
///
/// Mirrors River's `rivertest.RequireInserted`: more than one job of the kind fails too (use
/// [`require_many_inserted`] for those). `source` is a driver, a client or a
/// [`TestDb`](crate::TestDb) (see [`AsDriver`]).
///
/// # Panics
///
/// When no job or several jobs of the kind exist, when the job does not match `opts` (the
/// message lists every mismatch), when its args do not decode as `A`, or when the database
/// fails.
///
/// # Examples
///
/// ```no_run
/// use millrace::{Client, InsertOpts, JobArgs};
/// use millrace_test::{RequireInsertedOpts, TestDb, require_inserted};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct SendEmail {
///     to: String,
/// }
/// impl JobArgs for SendEmail {
///     const KIND: &'static str = "send_email";
/// }
///
/// # async fn example() {
/// let db = TestDb::new().await;
/// let client = Client::builder(db.driver()).build().unwrap();
/// client
///     .insert(SendEmail { to: "ada@example.com".into() }, Some(InsertOpts::new().queue("email")))
///     .await
///     .unwrap();
///
/// let job = require_inserted::<SendEmail>(&client, Some(RequireInsertedOpts::new().queue("email"))).await;
/// assert_eq!(job.args.to, "ada@example.com");
/// # }
/// ```
pub async fn require_inserted<A>(
    source: &impl AsDriver,
    opts: Option<RequireInsertedOpts>,
) -> InsertedJob<A>
where
    A: JobArgs + DeserializeOwned,
{
    let rows = list_kind(&mut source.as_driver().executor(), A::KIND).await;
    inserted_one(rows, opts)
}

/// [`require_inserted`] on a connection or transaction, which sees the transaction's own
/// uncommitted jobs.
///
/// # Panics
///
/// As [`require_inserted`].
///
/// # Examples
///
/// ```no_run
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping {}
/// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
/// # async fn example(db: millrace_test::TestDb, client: millrace::Client<millrace_postgres::PgDriver>) {
/// let mut tx = db.tx().await;
/// client.insert_tx(&mut tx, Ping {}, None).await.unwrap();
/// millrace_test::require_inserted_tx::<Ping, _>(&client, &mut tx, None).await;
/// # }
/// ```
pub async fn require_inserted_tx<A, S>(
    source: &S,
    conn: &mut <S::Driver as Driver>::Conn,
    opts: Option<RequireInsertedOpts>,
) -> InsertedJob<A>
where
    A: JobArgs + DeserializeOwned,
    S: AsDriver,
{
    let rows = list_kind(&mut source.as_driver().conn_executor(conn), A::KIND).await;
    inserted_one(rows, opts)
}

/// Asserts that no job of `A`'s kind matching `opts` exists. With options, jobs of the kind
/// that differ in some set option are allowed.
///
/// Mirrors River's `rivertest.RequireNotInserted`.
///
/// # Panics
///
/// When a matching job exists (the message names it), or when the database fails.
///
/// # Examples
///
/// ```no_run
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping {}
/// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
/// # async fn example(db: millrace_test::TestDb) {
/// use millrace::JobState;
/// use millrace_test::{RequireInsertedOpts, require_not_inserted};
///
/// require_not_inserted::<Ping>(&db.driver(), None).await;
/// require_not_inserted::<Ping>(&db.driver(), Some(RequireInsertedOpts::new().state(JobState::Running))).await;
/// # }
/// ```
pub async fn require_not_inserted<A>(source: &impl AsDriver, opts: Option<RequireInsertedOpts>)
where
    A: JobArgs,
{
    let rows = list_kind(&mut source.as_driver().executor(), A::KIND).await;
    not_inserted(A::KIND, rows, opts);
}

/// [`require_not_inserted`] on a connection or transaction.
///
/// # Panics
///
/// As [`require_not_inserted`].
///
/// # Examples
///
/// ```no_run
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping {}
/// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
/// # async fn example(db: millrace_test::TestDb) {
/// let driver = db.driver();
/// let mut tx = db.tx().await;
/// millrace_test::require_not_inserted_tx::<Ping, _>(&driver, &mut tx, None).await;
/// # }
/// ```
pub async fn require_not_inserted_tx<A, S>(
    source: &S,
    conn: &mut <S::Driver as Driver>::Conn,
    opts: Option<RequireInsertedOpts>,
) where
    A: JobArgs,
    S: AsDriver,
{
    let rows = list_kind(&mut source.as_driver().conn_executor(conn), A::KIND).await;
    not_inserted(A::KIND, rows, opts);
}

/// Asserts that the jobs of the expected kinds are exactly the expected ones, in insertion (id)
/// order, each matching its options, and returns their rows.
///
/// Mirrors River's `rivertest.RequireManyInserted`: jobs of other kinds are ignored, and a job
/// of an expected kind that is not expected, or missing, fails.
///
/// # Panics
///
/// When the kinds found differ from the kinds expected (the message lists both), when a job
/// does not match its options, or when the database fails.
///
/// # Examples
///
/// ```no_run
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping {}
/// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Pong {}
/// # impl millrace::JobArgs for Pong { const KIND: &'static str = "pong"; }
/// # async fn example(db: millrace_test::TestDb) {
/// use millrace_test::{ExpectedJob, RequireInsertedOpts, require_many_inserted};
///
/// let rows = require_many_inserted(
///     &db.driver(),
///     &[
///         ExpectedJob::of::<Ping>(),
///         ExpectedJob::of::<Pong>().opts(RequireInsertedOpts::new().priority(2)),
///         ExpectedJob::of::<Ping>(),
///     ],
/// )
/// .await;
/// assert_eq!(rows.len(), 3);
/// # }
/// ```
pub async fn require_many_inserted(
    source: &impl AsDriver,
    expected: &[ExpectedJob],
) -> Vec<JobRow> {
    let rows = list_kinds(&mut source.as_driver().executor(), expected).await;
    many_inserted(rows, expected)
}

/// [`require_many_inserted`] on a connection or transaction.
///
/// # Panics
///
/// As [`require_many_inserted`].
///
/// # Examples
///
/// ```no_run
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping {}
/// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
/// # async fn example(db: millrace_test::TestDb) {
/// use millrace_test::{ExpectedJob, require_many_inserted_tx};
///
/// let driver = db.driver();
/// let mut tx = db.tx().await;
/// let rows = require_many_inserted_tx(&driver, &mut tx, &[ExpectedJob::of::<Ping>()]).await;
/// # }
/// ```
pub async fn require_many_inserted_tx<S: AsDriver>(
    source: &S,
    conn: &mut <S::Driver as Driver>::Conn,
    expected: &[ExpectedJob],
) -> Vec<JobRow> {
    let rows = list_kinds(&mut source.as_driver().conn_executor(conn), expected).await;
    many_inserted(rows, expected)
}

async fn list_kind(exec: &mut impl Executor, kind: &str) -> Vec<JobRow> {
    list(exec, vec![kind.to_owned()]).await
}

async fn list_kinds(exec: &mut impl Executor, expected: &[ExpectedJob]) -> Vec<JobRow> {
    let mut kinds: Vec<String> = expected.iter().map(|e| e.kind.clone()).collect();
    kinds.sort();
    kinds.dedup();
    list(exec, kinds).await
}

async fn list(exec: &mut impl Executor, kinds: Vec<String>) -> Vec<JobRow> {
    let params = JobListParams {
        kinds,
        limit: i64::MAX,
        ..JobListParams::default()
    };
    exec.job_list(&params)
        .await
        .unwrap_or_else(|err| panic!("millrace_test: cannot list jobs: {err}"))
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
}

fn inserted_one<A: JobArgs + DeserializeOwned>(
    mut rows: Vec<JobRow>,
    opts: Option<RequireInsertedOpts>,
) -> InsertedJob<A> {
    let kind = A::KIND;
    let row = match rows.len() {
        0 => panic!("require_inserted: no job of kind {kind:?} was inserted"),
        1 => rows.remove(0),
        n => panic!(
            "require_inserted: {n} jobs of kind {kind:?} were inserted, expected one (ids {}); \
             use require_many_inserted for several",
            ids(&rows)
        ),
    };
    if let Some(opts) = opts {
        let mismatches = opts.mismatches(&row);
        if !mismatches.is_empty() {
            panic!(
                "require_inserted: job {} of kind {kind:?} does not match:\n  {}",
                row.id,
                mismatches.join("\n  ")
            );
        }
    }
    let args = serde_json::from_value(row.args.clone()).unwrap_or_else(|err| {
        panic!(
            "require_inserted: args of job {} of kind {kind:?} do not decode: {err}; args: {}",
            row.id, row.args
        )
    });
    InsertedJob { args, row }
}

fn not_inserted(kind: &str, rows: Vec<JobRow>, opts: Option<RequireInsertedOpts>) {
    let opts = opts.unwrap_or_default();
    if let Some(row) = rows.iter().find(|row| opts.mismatches(row).is_empty()) {
        panic!(
            "require_not_inserted: job {} of kind {kind:?} was inserted ({}, queue {:?}, \
             priority {}, max_attempts {}, tags {:?})",
            row.id, row.state, row.queue, row.priority, row.max_attempts, row.tags
        );
    }
}

fn many_inserted(rows: Vec<JobRow>, expected: &[ExpectedJob]) -> Vec<JobRow> {
    let found: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    let wanted: Vec<&str> = expected.iter().map(|e| e.kind.as_str()).collect();
    if found != wanted {
        panic!(
            "require_many_inserted: expected jobs of kinds {wanted:?}, found {found:?} \
             (ids {})",
            ids(&rows)
        );
    }
    let failures: Vec<String> = rows
        .iter()
        .zip(expected)
        .enumerate()
        .filter_map(|(i, (row, e))| {
            let mismatches = e.opts.as_ref()?.mismatches(row);
            (!mismatches.is_empty()).then(|| {
                format!(
                    "job {} (#{i}, kind {:?}):\n    {}",
                    row.id,
                    row.kind,
                    mismatches.join("\n    ")
                )
            })
        })
        .collect();
    if !failures.is_empty() {
        panic!(
            "require_many_inserted: jobs do not match:\n  {}",
            failures.join("\n  ")
        );
    }
    rows
}

fn ids(rows: &[JobRow]) -> String {
    rows.iter()
        .map(|r| r.id.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_types::JobId;

    #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    struct Ping {
        n: u32,
    }
    impl JobArgs for Ping {
        const KIND: &'static str = "ping";
    }

    fn row(id: i64, kind: &str) -> JobRow {
        let at = Timestamp::from_second(1_700_000_000).unwrap();
        JobRow {
            id: JobId(id),
            args: serde_json::json!({ "n": 7 }),
            attempt: 0,
            attempted_at: None,
            attempted_by: Vec::new(),
            created_at: at,
            errors: Vec::new(),
            finalized_at: None,
            kind: kind.to_owned(),
            max_attempts: 25,
            metadata: serde_json::json!({}),
            priority: 1,
            queue: "default".to_owned(),
            scheduled_at: at,
            state: JobState::Available,
            tags: Vec::new(),
            unique_key: None,
            unique_states: None,
        }
    }

    fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let err = std::panic::catch_unwind(f).expect_err("expected a panic");
        err.downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    }

    #[test]
    fn one_matching_job_is_returned_decoded() {
        let job = inserted_one::<Ping>(
            vec![row(1, "ping")],
            Some(RequireInsertedOpts::new().queue("default").priority(1)),
        );
        assert_eq!(job.args, Ping { n: 7 });
        assert_eq!(job.row.id, JobId(1));
    }

    #[test]
    fn missing_and_repeated_jobs_fail() {
        let msg = panic_message(|| {
            inserted_one::<Ping>(Vec::new(), None);
        });
        assert!(msg.contains("no job of kind \"ping\""), "{msg}");
        let msg = panic_message(|| {
            inserted_one::<Ping>(vec![row(1, "ping"), row(2, "ping")], None);
        });
        assert!(msg.contains("2 jobs of kind \"ping\""), "{msg}");
        assert!(msg.contains("ids 1, 2"), "{msg}");
    }

    #[test]
    fn every_mismatch_is_reported() {
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let msg = panic_message(|| {
            inserted_one::<Ping>(
                vec![row(5, "ping")],
                Some(
                    RequireInsertedOpts::new()
                        .queue("email")
                        .priority(3)
                        .max_attempts(2)
                        .state(JobState::Scheduled)
                        .tags(["a_tag"])
                        .scheduled_at(at),
                ),
            );
        });
        for part in [
            "job 5",
            "queue: expected \"email\", found \"default\"",
            "priority: expected 3, found 1",
            "max_attempts: expected 2, found 25",
            "state: expected scheduled, found available",
            "tags: expected [\"a_tag\"], found []",
            "scheduled_at: expected",
        ] {
            assert!(msg.contains(part), "{part:?} not in {msg}");
        }
    }

    #[test]
    fn scheduled_at_is_compared_to_the_microsecond() {
        let mut r = row(1, "ping");
        r.scheduled_at = Timestamp::from_nanosecond(1_700_000_000_123_456_000).unwrap();
        let opts = RequireInsertedOpts::new()
            .scheduled_at(Timestamp::from_nanosecond(1_700_000_000_123_456_789).unwrap());
        assert!(opts.mismatches(&r).is_empty());
    }

    #[test]
    fn not_inserted_ignores_jobs_that_differ_in_a_set_option() {
        not_inserted("ping", Vec::new(), None);
        not_inserted(
            "ping",
            vec![row(1, "ping")],
            Some(RequireInsertedOpts::new().state(JobState::Running)),
        );
        let msg = panic_message(|| not_inserted("ping", vec![row(9, "ping")], None));
        assert!(msg.contains("job 9 of kind \"ping\" was inserted"), "{msg}");
    }

    #[test]
    fn many_inserted_checks_kinds_in_order_and_options() {
        let expected = [
            ExpectedJob::kind("ping"),
            ExpectedJob::kind("pong").opts(RequireInsertedOpts::new().priority(1)),
        ];
        let rows = many_inserted(vec![row(1, "ping"), row(2, "pong")], &expected);
        assert_eq!(rows.len(), 2);

        let msg = panic_message(|| {
            many_inserted(vec![row(1, "pong"), row(2, "ping")], &expected);
        });
        assert!(
            msg.contains("expected jobs of kinds [\"ping\", \"pong\"], found [\"pong\", \"ping\"]"),
            "{msg}"
        );

        let expected = [ExpectedJob::kind("ping").opts(RequireInsertedOpts::new().queue("q"))];
        let msg = panic_message(|| {
            many_inserted(vec![row(4, "ping")], &expected);
        });
        assert!(msg.contains("job 4 (#0, kind \"ping\")"), "{msg}");
    }
}
