//! The traits between Millrace's client and its databases, shaped after River's `riverdriver`.
//!
//! A [`Driver`] hands out [`Executor`]s, which run one *verb* each (`job_insert_many`,
//! `job_get_available`, …) against a pool or against a caller's own connection or
//! transaction, and [`Listener`]s, which receive notifications. Each verb takes one params
//! struct, so that adding a field does not change every driver's signature.
//!
//! **This crate is exempt from semantic versioning**: drivers live in this workspace and
//! change with the client. Applications use `millrace` and a driver crate, not these traits.
//!
//! ```
//! use millrace_driver::Schema;
//!
//! let schema = Schema::new("jobs").unwrap();
//! assert_eq!(schema.qualify("river_job"), "\"jobs\".river_job");
//! assert!(Schema::new("bad name").is_err());
//! ```

mod backoff;
mod error;
mod inspect;
mod params;
mod schema;
mod sequence;

use std::future::Future;

pub use backoff::Backoff;
pub use error::{DriverError, Result};
pub use inspect::*;
pub use millrace_types as types;
pub use params::*;
pub use schema::{InvalidSchemaName, Schema};
pub use sequence::*;

/// The prefix of every persistent worker's kind (`millrace_persistent:<name>`).
///
/// The drivers know it because a dead client's persistent instances must not be rescued with
/// its other jobs: they move by their own lease, which the holder fences itself by; see
/// [`Executor::job_get_running_of_clients`].
///
/// ```
/// assert!("millrace_persistent:poller".starts_with(millrace_driver::PERSISTENT_KIND_PREFIX));
/// ```
pub const PERSISTENT_KIND_PREFIX: &str = "millrace_persistent:";

/// The metadata key of a persistent worker instance's fencing token: a number that grows by
/// one with every claim, anywhere in the fleet, and is never given back.
pub const PERSISTENT_FENCE_KEY: &str = "millrace:fence";

/// The metadata key under which a job's metadata is kept when it is not a JSON object and
/// an outcome writes a key into it (a snooze's `snoozes` count, recorded output).
///
/// River's clients always write an object, but a row written by hand or by another tool may
/// hold an array, a string, a number or `null`. Merging a key into such a value would make it
/// an array that grows by one element per merge (PostgreSQL's `jsonb ||`), and the key could
/// never be read back, so a snooze would never be counted. Instead the drivers first replace
/// the value by the object `{"millrace:replaced_metadata": <old value>}`, then merge. Outcomes
/// that write no key (a success, a retry) leave the metadata as it is.
///
/// ```
/// assert_eq!(millrace_driver::REPLACED_METADATA_KEY, "millrace:replaced_metadata");
/// ```
pub const REPLACED_METADATA_KEY: &str = "millrace:replaced_metadata";

use jiff::Timestamp;
use millrace_types::{JobRead, JobRow, JobState};

/// A database driver: a pool of connections plus the schema every statement names.
///
/// `Client<D: Driver>` is generic over it. Drivers are cheap to clone (they hold a pool
/// handle).
pub trait Driver: Clone + Send + Sync + 'static {
    /// A connection of the driver's database. A transaction dereferences to it, so
    /// `insert_tx(&mut tx, …)` takes the caller's own transaction.
    type Conn: Send;
    /// A transaction the driver opens for itself.
    type Tx: Send + 'static;
    /// Runs verbs on the pool or on a borrowed connection.
    type Executor<'a>: Executor + 'a
    where
        Self: 'a;
    /// Receives notifications.
    type Listener: Listener;

    /// A short name for logs and errors: `postgres`, `sqlite`.
    fn name(&self) -> &'static str;

    /// The schema whose tables this driver uses.
    fn schema(&self) -> &Schema;

    /// An executor that takes connections from the pool as it needs them.
    fn executor(&self) -> Self::Executor<'_>;

    /// An executor that runs on the given connection or transaction.
    fn conn_executor<'a>(&'a self, conn: &'a mut Self::Conn) -> Self::Executor<'a>;

    /// Opens a transaction.
    fn begin(&self) -> impl Future<Output = Result<Self::Tx>> + Send;

    /// The connection inside a transaction.
    fn tx_conn(tx: &mut Self::Tx) -> &mut Self::Conn;

    /// Commits a transaction.
    fn commit(tx: Self::Tx) -> impl Future<Output = Result<()>> + Send;

    /// A new listener on its own connection.
    fn listener(&self) -> impl Future<Output = Result<Self::Listener>> + Send;

    /// A connection of its own, outside the pool, opened with the pool's settings, for what
    /// must never wait behind the pool's other users: the client's heartbeat.
    ///
    /// A client that cannot renew its heartbeat fences itself (cancels its running jobs)
    /// before its lease runs out. Renewing through a pool that job traffic saturates (a
    /// handful of connections, dozens of workers, connections lost and reopened) could make
    /// a client fence itself while the database is fine; on a connection of its own, a
    /// renewal fails only when the database cannot be reached.
    ///
    /// `Ok(None)` when the driver has no such connection; the caller then uses the pool.
    /// Defaults to `Ok(None)`.
    ///
    /// # Errors
    ///
    /// [`DriverError::Connection`] or [`DriverError::Database`] when the connection cannot
    /// be opened.
    fn connect(&self) -> impl Future<Output = Result<Option<Self::Conn>>> + Send {
        async { Ok(None) }
    }

    /// Closes a connection [`Driver::connect`] opened, telling the server it goes, so the
    /// server does not log a lost client. Defaults to dropping it.
    fn disconnect(conn: Self::Conn) -> impl Future<Output = ()> + Send {
        async move { drop(conn) }
    }

    /// Whether the database delivers notifications as they happen (PostgreSQL's
    /// LISTEN/NOTIFY); without it the client polls.
    fn supports_listen_notify(&self) -> bool;

    /// The migrations of a migration line (`main`, `millrace`), oldest first; `None` for an
    /// unknown line.
    fn migrations(&self, line: &str) -> Option<&'static [Migration]>;
}

/// One migration of a line: its version and its SQL, with the schema already filled in by
/// [`Migration::up_sql`] and [`Migration::down_sql`].
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The version, from 1.
    pub version: i64,
    /// A short name, such as `add_unique_key`.
    pub name: &'static str,
    /// The up SQL, with `/*schema*/` where the schema prefix goes.
    pub up: &'static str,
    /// The down SQL, with `/*schema*/` where the schema prefix goes.
    pub down: &'static str,
}

impl Migration {
    /// The up SQL for `schema`.
    pub fn up_sql(&self, schema: &Schema) -> String {
        schema.fill(self.up)
    }

    /// The down SQL for `schema`.
    pub fn down_sql(&self, schema: &Schema) -> String {
        schema.fill(self.down)
    }
}

/// Runs driver verbs. Each method runs one statement or a short fixed sequence of them.
pub trait Executor: Send {
    /// Runs a script of one or more statements (migrations).
    fn exec_script(&mut self, sql: &str) -> impl Future<Output = Result<()>> + Send;

    /// Whether a table exists in the driver's schema.
    fn table_exists(&mut self, table: &str) -> impl Future<Output = Result<bool>> + Send;

    /// The applied migrations of a line, oldest first. A `river_migration` table from before
    /// River's version 5 (no `line` column) counts as line `main`.
    fn migration_get_all(
        &mut self,
        line: &str,
    ) -> impl Future<Output = Result<Vec<MigrationRow>>> + Send;

    /// Takes the migration lock until the end of the current transaction, so migrators run
    /// one at a time (PostgreSQL: a transaction-scoped advisory lock; SQLite: the write lock
    /// `BEGIN IMMEDIATE` already holds).
    fn migration_lock(&mut self) -> impl Future<Output = Result<()>> + Send;

    /// Records an applied migration.
    fn migration_insert(
        &mut self,
        line: &str,
        version: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Forgets an applied migration (after its down SQL ran).
    fn migration_delete(
        &mut self,
        line: &str,
        version: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Inserts jobs and returns each stored row, in input order. A job whose unique key
    /// conflicts with a live job returns that job's row with `unique_skipped_as_duplicate`.
    /// The batch must not hold two jobs with the same unique key.
    ///
    /// A job with a sequence key ([`SEQUENCE_KEY`] in its metadata) is inserted `pending`
    /// when its sequence already has unfinished work or an earlier job of the batch has its
    /// key (see [`sequence_states`]); on PostgreSQL the keys' locks are held from that check
    /// to the end of the transaction, so racing inserts cannot both make a job available.
    fn job_insert_many(
        &mut self,
        jobs: &[JobInsertParams],
    ) -> impl Future<Output = Result<Vec<JobInsertResult>>> + Send;

    /// Inserts jobs without unique keys by the fastest path the database has, returning the
    /// count.
    fn job_insert_fast(
        &mut self,
        jobs: &[JobInsertParams],
    ) -> impl Future<Output = Result<u64>> + Send;

    /// One job by id.
    ///
    /// Every verb that returns one job row returns [`DriverError::UndecodableJob`] for a row it
    /// cannot decode; every verb that returns many returns such rows as `Err` entries in place,
    /// so that one row never fails the rest.
    fn job_get_by_id(
        &mut self,
        id: millrace_types::JobId,
    ) -> impl Future<Output = Result<Option<JobRow>>> + Send;

    /// Jobs by the given filters, ordered by id.
    fn job_list(
        &mut self,
        params: &JobListParams,
    ) -> impl Future<Output = Result<Vec<JobRead>>> + Send;

    /// Cancels a job: a job that is not running becomes `cancelled` at once; a running job gets
    /// `cancel_attempted_at` in its metadata and its client is told through `river_control`.
    /// Finalized jobs are returned unchanged.
    fn job_cancel(
        &mut self,
        params: &JobCancelParams,
    ) -> impl Future<Output = Result<Option<JobRow>>> + Send;

    /// Makes a job that is not running available now, giving it one more attempt when it has
    /// used them all. Running jobs are returned unchanged.
    fn job_retry(
        &mut self,
        params: &JobRetryParams,
    ) -> impl Future<Output = Result<Option<JobRow>>> + Send;

    /// Deletes a job that is not running.
    fn job_delete(
        &mut self,
        id: millrace_types::JobId,
    ) -> impl Future<Output = Result<JobDeleteOutcome>> + Send;

    /// Fetches up to `max` available jobs of a queue, due now, in priority, time and id order,
    /// and marks them running for the client: attempt + 1, `attempted_at`, and the client id
    /// appended to `attempted_by` (the last 100 kept). One statement, `FOR UPDATE SKIP LOCKED`.
    /// With a [`FetchLimit`], the fetch is serialized with the queue's other
    /// limited fetches and takes no more per partition than the limit leaves room for.
    fn job_get_available(
        &mut self,
        params: &JobGetAvailableParams,
    ) -> impl Future<Output = Result<Vec<JobRead>>> + Send;

    /// How long until a partition of `queue` that is at its [`FetchRate`] limit has room again:
    /// the time until the oldest logged fetch of the first such partition leaves the window.
    /// `None` when no partition is at its limit. Read without the fetch's lock: it only tells
    /// a producer when to fetch next, and the fetch decides.
    fn job_rate_limit_wait(
        &mut self,
        queue: &str,
        rate: &FetchRate,
    ) -> impl Future<Output = Result<Option<std::time::Duration>>> + Send;

    /// Marks one job running for a client, as a fetch would, whatever its queue and time,
    /// unless it is running or finalized. For test harnesses that work one given job.
    fn job_start_by_id(
        &mut self,
        id: millrace_types::JobId,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<JobRow>>> + Send;

    /// Records finished attempts in one statement. Each applies only where the job is still
    /// `running` at the same attempt (the fence); a job whose cancel was requested ends
    /// `cancelled` instead of being retried or snoozed. Returns the jobs it updated.
    fn job_complete_many(
        &mut self,
        params: &[JobCompleteParams],
    ) -> impl Future<Output = Result<Vec<JobCompleted>>> + Send;

    /// Makes scheduled and retryable jobs due before the horizon available; one whose unique
    /// key another live job holds is discarded instead, as River's scheduler does.
    fn job_schedule(
        &mut self,
        params: &JobScheduleParams,
    ) -> impl Future<Output = Result<Vec<JobScheduled>>> + Send;

    /// Returns a client's running jobs in a queue that it no longer holds (a fetch whose
    /// reply was lost) to `available`, giving their attempt back. Returns how many.
    fn job_return_orphans(
        &mut self,
        params: &JobReturnOrphansParams,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Creates a queue's row, or refreshes its `updated_at` so River's queue cleaner keeps it.
    fn queue_create_or_touch(
        &mut self,
        name: &str,
    ) -> impl Future<Output = Result<QueueRow>> + Send;

    /// One queue, if it has a row.
    fn queue_get(&mut self, name: &str) -> impl Future<Output = Result<Option<QueueRow>>> + Send;

    /// Pauses (`paused = true`) or resumes a queue, or every queue for `*`, and notifies
    /// `river_control`. Returns how many rows changed.
    fn queue_set_paused(
        &mut self,
        name: &str,
        paused: bool,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Deletes an expired leader row, then makes the caller leader if no row remains.
    /// Returns the new row when the caller won.
    fn leader_attempt_elect(
        &mut self,
        params: &LeaderParams,
    ) -> impl Future<Output = Result<Option<LeaderRow>>> + Send;

    /// Extends the caller's leadership, if it still holds an unexpired row elected at
    /// `elected_at`. Returns the extended row.
    fn leader_attempt_reelect(
        &mut self,
        params: &LeaderParams,
        elected_at: Timestamp,
    ) -> impl Future<Output = Result<Option<LeaderRow>>> + Send;

    /// Deletes the caller's leader row; for River's row it also notifies `river_leadership`
    /// with `{"action":"resigned",...}`. Returns whether a row was deleted.
    fn leader_resign(
        &mut self,
        table: LeaderTable,
        leader_id: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The current leader row, expired or not.
    fn leader_get(
        &mut self,
        table: LeaderTable,
    ) -> impl Future<Output = Result<Option<LeaderRow>>> + Send;

    /// Creates or refreshes a client's heartbeat row, its lease running out after `lease`.
    fn client_heartbeat(
        &mut self,
        client_id: &str,
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Records the limits a client was built with, by queue (`queues`: a JSON object of queue
    /// name to declaration), in its heartbeat row, for other clients to compare with theirs.
    /// Says whether the row was there (a client whose row was removed after its lease ran
    /// out writes it again after its next beat).
    fn client_declare_queues(
        &mut self,
        client_id: &str,
        queues: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Ids of clients whose lease ran out.
    fn client_get_expired(&mut self, max: i32) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Deletes clients' heartbeat rows.
    fn client_delete(&mut self, client_ids: &[String]) -> impl Future<Output = Result<u64>> + Send;

    /// Deletes the heartbeat rows of the given clients whose lease is still expired and that
    /// hold no running job but persistent instances: what the dead-client rescuer does once
    /// their jobs are rescued.
    ///
    /// A client that renewed its lease meanwhile, or that took jobs after the rescuer read
    /// its running rows (a process resumed after SIGSTOP), keeps its row: deleting it would
    /// leave those jobs under no lease, and no Millrace rescuer would see them again if the
    /// client then died.
    fn client_delete_expired(
        &mut self,
        client_ids: &[String],
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Running jobs whose last `attempted_by` entry is one of the given clients, leaving out
    /// persistent instances (kinds starting with [`PERSISTENT_KIND_PREFIX`]).
    ///
    /// The exclusion is in the statement, before its limit, so a caller paging through a dead
    /// client's jobs is never handed the same instances again and again.
    fn job_get_running_of_clients(
        &mut self,
        client_ids: &[String],
        max: i32,
    ) -> impl Future<Output = Result<Vec<JobRead>>> + Send;

    /// Running jobs attempted before `horizon` (River's stuck jobs), leaving out jobs held by
    /// clients whose heartbeat lease is live.
    fn job_get_stuck(
        &mut self,
        horizon: Timestamp,
        max: i32,
    ) -> impl Future<Output = Result<Vec<JobRead>>> + Send;

    /// Deletes finalized jobs past their retention. Returns how many.
    fn job_delete_finalized(
        &mut self,
        params: &JobDeleteFinalizedParams,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Deletes queues not refreshed since `before` (River's queue cleaner). Returns their names.
    fn queue_delete_expired(
        &mut self,
        before: Timestamp,
        max: i32,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Rebuilds an index of the schema without blocking writes, where the database can.
    fn index_reindex(&mut self, index: &str) -> impl Future<Output = Result<()>> + Send;

    /// The stored next runs of periodic jobs, by id.
    fn periodic_job_get(
        &mut self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<(String, Timestamp)>>> + Send;

    /// Stores a periodic job's next run if its stored next run is still `expected` (`None`:
    /// no row yet). Returns whether it was stored; `false` means another client moved it.
    fn periodic_job_set_next(
        &mut self,
        id: &str,
        expected: Option<Timestamp>,
        next_run_at: Timestamp,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Claims a persistent worker's instance for a client in one conditional update: its row
    /// if it is available and due, or running under a holder that has not renewed within
    /// `lease`. Marks it running as a fetch would, adds one to its fencing token (metadata
    /// key [`PERSISTENT_FENCE_KEY`], never reset), and returns it.
    fn persistent_claim(
        &mut self,
        params: &PersistentClaimParams,
    ) -> impl Future<Output = Result<Option<JobRow>>> + Send;

    /// Renews a held instance: refreshes `attempted_at` while it is still running with the
    /// holder's fencing token. Returns false when the holder lost it.
    fn persistent_renew(
        &mut self,
        id: millrace_types::JobId,
        fence: i64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Merges `metadata` into a held instance's, fenced on its token. Returns false when the
    /// holder lost it.
    fn persistent_merge_metadata(
        &mut self,
        id: millrace_types::JobId,
        fence: i64,
        metadata: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Releases a held instance back to `available` (fenced on its token), recording an
    /// error, if any, with only the most recent errors kept. Returns false when the holder had
    /// lost it already.
    fn persistent_release(
        &mut self,
        params: &PersistentReleaseParams,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Merges `metadata` into a running job's, fenced on its attempt. Returns false when the
    /// job is no longer running at that attempt.
    fn job_merge_metadata_if_running(
        &mut self,
        id: millrace_types::JobId,
        attempt: i16,
        metadata: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Deletes the jobs the filters match (running jobs excepted), at most `params.limit`, in
    /// the list's order, and returns their last rows.
    fn job_delete_many(
        &mut self,
        params: &JobListParams,
    ) -> impl Future<Output = Result<Vec<JobRead>>> + Send;

    /// Merges `metadata` (a JSON object) into a job's metadata, whatever its state. Returns
    /// the updated row.
    fn job_update_metadata(
        &mut self,
        id: millrace_types::JobId,
        metadata: &str,
    ) -> impl Future<Output = Result<Option<JobRow>>> + Send;

    /// Queues by name, at most `limit`, after `after` when given.
    fn queue_list(
        &mut self,
        after: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<QueueRow>>> + Send;

    /// Replaces a queue's metadata (creating its row if missing) and notifies
    /// `river_control` with `{"action":"metadata_changed",...}`. Returns the row.
    fn queue_update_metadata(
        &mut self,
        name: &str,
        metadata: &str,
    ) -> impl Future<Output = Result<QueueRow>> + Send;

    /// Sets one top-level key of a queue's metadata to `value` (JSON text), or removes the key
    /// when `value` is `None`, keeping the other keys, in one statement (creating the row if
    /// missing), and notifies `river_control` as
    /// [`queue_update_metadata`](Executor::queue_update_metadata) does. Returns the row.
    /// Two clients setting different keys at once both keep their change, which a read and a
    /// replace would not. `key` is ASCII letters, digits and `_`: the caller's constant.
    fn queue_set_metadata_key(
        &mut self,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> impl Future<Output = Result<QueueRow>> + Send;

    /// How many jobs the filters match after `after_id` (in the list's order), counting no
    /// further than `limit`.
    fn job_count(&mut self, params: &JobListParams) -> impl Future<Output = Result<i64>> + Send;

    /// How many jobs each queue has in each of `states` (every state when empty): one row
    /// per queue and state with jobs. Runs through the `(state, queue, …)` fetch index, so
    /// its cost grows with the rows counted; see the `job_counts` docs of the client.
    fn job_count_by_queue_and_state(
        &mut self,
        states: &[JobState],
    ) -> impl Future<Output = Result<Vec<JobCountRow>>> + Send;

    /// Jobs finalized at or after `since`, counted by state and by bucket of `bucket_secs`
    /// seconds counted from `since` (bucket 0 first): one row per bucket and state with
    /// jobs. Reads a range of the `(state, finalized_at)` index, so its cost grows with the
    /// jobs finalized since then, not with the table.
    fn job_finalized_histogram(
        &mut self,
        since: Timestamp,
        bucket_secs: i64,
    ) -> impl Future<Output = Result<Vec<FinalizedBucketRow>>> + Send;

    /// The database's own estimate of the jobs in each state, from its statistics (as of the
    /// table's last analyze), read without touching the table: for counts too large to make
    /// exactly. Empty when the database keeps no such statistics (SQLite, or a PostgreSQL
    /// table never analyzed).
    fn job_state_estimates(&mut self)
    -> impl Future<Output = Result<Vec<JobStateEstimate>>> + Send;

    /// The earliest `scheduled_at` of each queue's available jobs, found by a few index
    /// probes per queue rather than a scan of them, and the database's clock.
    fn queue_oldest_available(
        &mut self,
    ) -> impl Future<Output = Result<QueueOldestAvailable>> + Send;

    /// Retries, cancels or deletes the jobs the filter matches, at most `filter.limit` of them
    /// in the list's order after `filter.after_id`, each as the single-job verb would, in one
    /// transaction. Returns one row per job looked at, applied or skipped, in the list's
    /// order; the last row's id is the cursor for the next batch. Rows are locked before
    /// their state is read, so a job that changed state since a list is judged by its new
    /// state and a running job is never overwritten.
    fn job_act_many(
        &mut self,
        params: &JobBatchParams,
    ) -> impl Future<Output = Result<Vec<JobBatchRow>>> + Send;

    /// Every stored periodic schedule, by id, with the last job each inserted.
    fn periodic_job_list(&mut self) -> impl Future<Output = Result<Vec<PeriodicJobRow>>> + Send;

    /// The live (not finalized) jobs whose kind starts with `kind_prefix`: persistent worker
    /// instances, by id.
    fn persistent_list(
        &mut self,
        kind_prefix: &str,
    ) -> impl Future<Output = Result<Vec<JobRead>>> + Send;

    /// Every row of `millrace_client`, by id.
    fn client_list(&mut self) -> impl Future<Output = Result<Vec<ClientRow>>> + Send;

    /// Running jobs counted by client (the last `attempted_by` entry), queue and kind.
    fn job_count_running_by_client(
        &mut self,
    ) -> impl Future<Output = Result<Vec<RunningCountRow>>> + Send;

    /// Promotes the next `pending` job (lowest id) of each given sequence key whose sequence
    /// has no live job and no blocking one (a discarded or cancelled job without
    /// [`SEQUENCE_CONTINUE_KEY`]), taking each key's lock first, in [`sorted_keys`] order,
    /// and waiting for it. Notifies `river_insert` for the queues that got available jobs.
    ///
    /// Every verb that finalizes or deletes a sequence job calls this for its keys; it is
    /// public for the client's admin paths and for tests.
    fn sequence_promote(
        &mut self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<SequencePromoted>>> + Send;

    /// The sequence promoter's sweep: finds up to `max` keys with `pending` jobs and nothing
    /// ahead of them (a head finished by a River client, deleted by hand, or a promotion lost
    /// with its process) and promotes them as [`Executor::sequence_promote`] does, skipping
    /// keys whose lock another transaction holds (the next sweep gets them).
    fn sequence_promote_stranded(
        &mut self,
        max: i32,
    ) -> impl Future<Output = Result<Vec<SequencePromoted>>> + Send;

    /// Sequences with unfinished work (a live, blocking or pending job), by key.
    fn sequence_list(
        &mut self,
        params: &SequenceListParams,
    ) -> impl Future<Output = Result<Vec<SequenceRow>>> + Send;

    /// The database's clock.
    fn now(&mut self) -> impl Future<Output = Result<Timestamp>> + Send;

    /// Sends notifications, each on its topic's channel in the driver's schema.
    fn notify_many(
        &mut self,
        notifications: &[(Topic, String)],
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Receives notifications on its own connection.
pub trait Listener: Send + 'static {
    /// Starts listening on a topic.
    fn listen(&mut self, topic: Topic) -> impl Future<Output = Result<()>> + Send;

    /// Waits for the next notification on any topic listened to.
    ///
    /// Returns `Ok(None)` when the connection was lost: the listener reconnects and listens again
    /// on its next call, and notifications sent in between are gone, so the caller should poll.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a notification is never lost by dropping the future.
    fn recv(&mut self) -> impl Future<Output = Result<Option<Notification>>> + Send;
}
