//! Millrace: a fast, durable job queue for Rust on PostgreSQL, compatible with River.
//!
//! Jobs live in River's schema, so River's clients (Go, Rust, Python, Ruby) and Millrace work
//! the same jobs on one database. Insert a job in the same transaction as the rows it is
//! about, and it is stored exactly when they are.
//!
//! # Quick start
//!
//! ```no_run
//! use millrace::{Client, InsertOpts, JobArgs, Migrator, MigrateOpts};
//! use millrace_postgres::PgDriver;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct SendEmail {
//!     to: String,
//! }
//!
//! impl JobArgs for SendEmail {
//!     const KIND: &'static str = "send_email";
//! }
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
//! let driver = PgDriver::new(pool.clone());
//! Migrator::new(driver.clone()).migrate_up(MigrateOpts::default()).await?;
//!
//! let client = Client::builder(driver).build()?;
//!
//! // The job commits or rolls back with the rest of the transaction.
//! let mut tx = pool.begin().await?;
//! client
//!     .insert_tx(&mut tx, SendEmail { to: "ada@example.com".into() }, Some(InsertOpts::new().priority(2)))
//!     .await?;
//! tx.commit().await?;
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! | Feature | API |
//! |---|---|
//! | River's schema and migrations, up and down | [`Migrator`] |
//! | Typed args with per-kind defaults | [`JobArgs`], [`InsertOpts`] |
//! | Transactional insert, bulk insert, COPY insert | [`Client::insert_tx`], [`Client::insert_many`], [`Client::insert_many_fast`] |
//! | Unique jobs with River's keys | [`UniqueOpts`] |
//! | Job administration | [`Client::job_get`], [`Client::job_list`], [`Client::job_cancel`], [`Client::job_retry`], [`Client::job_delete`] |
//!
//! # What bad input gets
//!
//! Every insert is validated before anything is stored, and a bad option is an
//! [`Error::InvalidInsert`] that names it: max_attempts outside 1 to 32,767, priority outside 1
//! to 4, queue, kind and tag names outside River's rules, a by-state list without available,
//! pending, running and scheduled, a unique period under a second, args or metadata that are
//! not JSON objects. One bad job fails its whole batch.

// How the crate is laid out (docs/architecture.md draws the tree):
//
// - The API floor: the types a user names (args, options, workers, errors, events,
//   middleware, registrations). It imports nothing from `client`, `insert` or `runtime`,
//   except that `Job` and `PersistentContext` hand out the client (`Job::client`).
// - `client`: the `Client` handle, its builder and its inserts, admin verbs and harness.
// - `runtime`: a started client's tasks, crate-private; it never imports `client`.
//
// Every module imports from the module that defines an item, never through this root, and
// this root only declares modules and re-exports.

// The API floor.
mod clock;
mod error;
mod event;
mod insert_opts;
mod insert_params;
mod job_args;
mod limits;
#[cfg(feature = "logging")]
pub mod logging;
mod metric_hook;
mod middleware;
mod migrate;
mod migration_direction;
mod names;
mod periodic;
mod persistent;
mod queue_config;
mod rate_limit;
mod retry_policy;
mod sequence;
mod work_error;
mod worker;

// The insert pipeline, shared by the client and the runtime.
mod insert;

// The client handle.
mod client;

// A started client's tasks.
mod runtime;

pub use client::Client;
pub use client::builder::ClientBuilder;
pub use client::harness::WorkedJob;
pub use client::health::{HEALTH_DATABASE_TIMEOUT, HealthReport, QueueHealth};
pub use client::inspect::{
    FinalizedBucket, FleetClient, JobBatchAction, JobBatchResult, JobBatchRow, JobCount, JobCounts,
    LeaderRow, Leaders, PeriodicSchedule, PersistentInstance, QueueLag, RunningJobs,
};
pub use client::job_admin::{
    JOB_LIST_MAX_LIMIT, JobDeleteManyResult, JobListPage, JobListParams, JobUpdateParams,
};
pub use client::queue_admin::{
    QUEUE_LIST_MAX_LIMIT, QUEUE_METADATA_MAX_BYTES, QueueRow, QueueUpdateParams,
};
pub use client::sequence_admin::{SEQUENCE_LIST_MAX_LIMIT, SequenceListParams, SequenceRow};
pub use client::shutdown::{
    SHUTDOWN_GRACE_DEFAULT, ShutdownSignal, ShutdownSignals, shutdown_signal,
};
pub use clock::TestClock;
pub use error::{Error, Result};
pub use event::{Event, EventKind};
pub use insert_opts::{InsertOpts, UniqueOpts};
pub use insert_params::{InsertManyParams, InsertResult};
pub use job_args::JobArgs;
pub use limits::{ConcurrencyLimit, LimitError};
pub use metric_hook::{Metric, MetricHook};
pub use middleware::{
    BoxFuture, ErrorHandler, ErrorHandling, InsertMiddleware, InsertNext, InsertParams,
    WorkMiddleware, WorkNext,
};
pub use migrate::{
    LINE_MAIN, LINE_MILLRACE, MigrateOpts, MigrateReport, MigratedVersion, MigrationStatus,
    Migrator, ValidateReport,
};
pub use migration_direction::MigrationDirection;
pub use millrace_driver::{Driver, Schema};
pub use millrace_types::{
    AttemptError, JobId, JobRow, JobState, MAX_ATTEMPTS_DEFAULT, PRIORITY_DEFAULT, QUEUE_DEFAULT,
    UndecodableJob, UniqueStates,
};
pub use periodic::{
    METADATA_PERIODIC, METADATA_PERIODIC_JOB_ID, PeriodicJob, PeriodicJobHandle, PeriodicJobs,
    Schedule,
};
pub use persistent::{
    PERSISTENT_KIND_PREFIX, PERSISTENT_QUEUE_DEFAULT, PersistentContext, PersistentOpts,
    PersistentWorker,
};
pub use queue_config::QueueConfig;
pub use rate_limit::RateLimit;
pub use retry_policy::{DefaultRetryPolicy, RetryPolicy};
pub use sequence::{SEQUENCE_KEY_MAX_LEN, SequenceOpts, SequencePolicy};
pub use work_error::{BoxError, WorkError};
pub use worker::{JOB_SPAN_TARGET, Job, MAX_OUTPUT_BYTES, Worker, Workers};

#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
