//! The SQLite driver for Millrace, on sqlx: the embedded default, for one machine.
//!
//! It holds River's SQLite schema (migration line `main`, versions 1 to 8), every SQL
//! statement Millrace runs on SQLite, and notifications through River's polled
//! `river_notification` outbox, so River's SQLite clients and tools read and work the same
//! file. sqlx's `sqlite` feature bundles SQLite (3.51), which has the JSONB functions River's
//! schema needs (3.45 or newer).
//!
//! ```no_run
//! use millrace::{Client, MigrateOpts, Migrator};
//! use millrace_sqlite::SqliteDriver;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let driver = SqliteDriver::open("jobs.db").await?;
//! Migrator::new(driver.clone()).migrate_up(MigrateOpts::new()).await?;
//! let client = Client::builder(driver).build()?;
//! # Ok(()) }
//! ```
//!
//! # Several processes on one file
//!
//! [`SqliteDriver::open`] sets WAL mode (readers never wait for the writer), a busy timeout
//! (a writer waits up to 5 s for another's lock instead of failing) and `synchronous =
//! NORMAL`. Every write the driver makes on its own runs in a `BEGIN IMMEDIATE` transaction,
//! which takes the write lock before reading, so it never fails half-way on a stale snapshot;
//! a lock still busy after the timeout is retried a few times, then reported as a connection
//! error (retrying may succeed). A fetch takes its jobs in one `UPDATE … RETURNING` inside
//! such a transaction: SQLite's single writer is the lock PostgreSQL's `FOR UPDATE SKIP
//! LOCKED` takes.
//!
//! Notifications are rows in `river_notification`; listeners poll it for new ids about every
//! 100 ms, so an insert in one process wakes the workers of another within that time. Rows
//! older than five minutes are deleted as new ones are written.
//!
//! # Your own transactions
//!
//! `insert_tx` and the other `_tx` methods take a `sqlx::Transaction<'_, Sqlite>`. Begin it
//! with `pool.begin_with("BEGIN IMMEDIATE")`, as [`Driver::begin`] does: a deferred
//! transaction that reads before it writes fails with `SQLITE_BUSY` when another connection
//! wrote in between.
//!
//! # Differences from PostgreSQL
//!
//! - Times are stored to the millisecond (PostgreSQL keeps microseconds), as UTC text.
//! - Notifications arrive by polling, within about 100 ms, not at once.
//! - `insert_many_fast` is one batched `INSERT` (there is no `COPY`).
//! - Reindexing holds the write lock (there is no `REINDEX CONCURRENTLY`), and `args` and
//!   `metadata` have no GIN indexes, as in River's SQLite schema.
//! - A schema is an attached database rather than a PostgreSQL schema, as in River's SQLite
//!   driver; see [`SqliteDriver::with_schema`].
//! - One process writes at a time; many read at once.
//! - A job list's metadata filter (PostgreSQL's `@>`) is checked row by row, without an
//!   index. It matches as `@>` does for objects at any depth, scalars (numbers by value, so
//!   `1` matches `1.0`) and arrays (each element of the filter's array contained in some
//!   element of the stored one) nested up to three deep inside arrays; deeper than that,
//!   array elements match only when written identically.

mod error;
mod executor;
mod listener;
mod migrations;
mod queries;
mod row;
mod time;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use millrace_driver::{Backoff, Driver, Migration, Result, Schema};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};

pub use error::{SqliteFault, SqliteFaultError};
pub use executor::SqliteExecutor;
pub use listener::SqliteListener;
pub use sqlx;

use error::{db_error, is_busy};
use queries::Queries;

/// How long a connection waits for another's write lock before `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times a write transaction is begun again after the busy timeout ran out.
const BUSY_RETRIES: u32 = 3;
/// Connections [`SqliteDriver::open`] pools: SQLite has one writer at a time, and readers
/// need few.
const POOL_SIZE: u32 = 4;
/// How old a notification row may get before it is deleted, as River's SQLite cleaner.
const NOTIFICATION_RETENTION: Duration = Duration::from_secs(5 * 60);
/// How often notification rows are cleaned at most, as River's SQLite cleaner.
const NOTIFICATION_CLEAN_INTERVAL: Duration = Duration::from_secs(60);

/// The SQLite driver: a sqlx pool and the schema its statements name.
///
/// Cloning is cheap and shares the pool.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let driver = millrace_sqlite::SqliteDriver::open("sqlite://jobs.db").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteDriver {
    pool: SqlitePool,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queries: Queries,
    /// When notification rows were last cleaned, in Unix seconds.
    notifications_cleaned_at: AtomicI64,
}

impl SqliteDriver {
    /// A driver on `pool`, using SQLite's `main` database.
    ///
    /// The pool's connections should have a busy timeout (sqlx's default is 5 s) and, for
    /// several processes on one file, WAL mode; [`SqliteDriver::open`] sets both.
    pub fn new(pool: SqlitePool) -> Self {
        Self::with_queries(pool, Queries::new(main_schema()))
    }

    fn with_queries(pool: SqlitePool, queries: Queries) -> Self {
        SqliteDriver {
            pool,
            shared: Arc::new(Shared {
                queries,
                notifications_cleaned_at: AtomicI64::new(0),
            }),
        }
    }

    /// The same driver on an attached database: SQLite's schemas are the databases a
    /// connection has attached, as in River's SQLite driver. Every connection of the pool must
    /// attach it under that name (for instance in `SqlitePoolOptions::after_connect`).
    /// [`Schema::default`] means `main`.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// use millrace_driver::Schema;
    /// use sqlx::Executor as _;
    ///
    /// let pool = sqlx::sqlite::SqlitePoolOptions::new()
    ///     .after_connect(|conn, _| {
    ///         Box::pin(async move {
    ///             conn.execute("ATTACH DATABASE 'jobs.db' AS jobs").await?;
    ///             Ok(())
    ///         })
    ///     })
    ///     .connect("sqlite://app.db")
    ///     .await?;
    /// let driver = millrace_sqlite::SqliteDriver::new(pool).with_schema(Schema::new("jobs")?);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_schema(self, schema: Schema) -> Self {
        let schema = if schema == Schema::default() {
            main_schema()
        } else {
            schema
        };
        Self::with_queries(self.pool, Queries::new(schema))
    }

    /// Opens (creating it if needed) the database at a path or `sqlite://` URL, with WAL
    /// mode, a 5 s busy timeout, foreign keys on and `synchronous = NORMAL`, and a pool of
    /// a few connections. It migrates nothing: run [`millrace::Migrator`] for that.
    ///
    /// A URL with `mode=ro` opens the file read-only (every write then fails with
    /// [`SqliteFault::ReadOnly`]); `mode=rw` opens it without creating it.
    ///
    /// # Errors
    ///
    /// [`DriverError::Database`](millrace_driver::DriverError::Database) for a bad URL or a file that is not a database
    /// ([`SqliteFault::Corrupt`]) or cannot be opened ([`SqliteFault::CantOpen`]).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let driver = millrace_sqlite::SqliteDriver::open("data/jobs.db").await?;
    /// let reader = millrace_sqlite::SqliteDriver::open("sqlite://data/jobs.db?mode=ro").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// [`millrace::Migrator`]: https://docs.rs/millrace/latest/millrace/struct.Migrator.html
    pub async fn open(path_or_url: &str) -> Result<Self> {
        Self::open_with(Self::connect_options(path_or_url)?).await
    }

    /// The connect options [`SqliteDriver::open`] uses, to adjust before
    /// [`SqliteDriver::open_with`].
    ///
    /// # Errors
    ///
    /// [`DriverError::Database`](millrace_driver::DriverError::Database) for a URL sqlx cannot parse.
    ///
    /// ```
    /// let options = millrace_sqlite::SqliteDriver::connect_options("jobs.db")
    ///     .unwrap()
    ///     .pragma("cache_size", "-65536");
    /// # let _ = options;
    /// ```
    pub fn connect_options(path_or_url: &str) -> Result<SqliteConnectOptions> {
        let is_url = path_or_url.starts_with("sqlite:");
        let mode = is_url
            .then(|| {
                path_or_url.split_once('?').and_then(|(_, query)| {
                    query.split('&').find_map(|pair| pair.strip_prefix("mode="))
                })
            })
            .flatten();
        let options = if is_url {
            SqliteConnectOptions::from_str(path_or_url).map_err(db_error)?
        } else {
            SqliteConnectOptions::new().filename(path_or_url)
        };
        let options = options.busy_timeout(BUSY_TIMEOUT).foreign_keys(true);
        Ok(match mode {
            // A read-only connection cannot switch the journal mode; it reads whatever the
            // writers set.
            Some("ro") => options,
            Some("memory") => options.synchronous(SqliteSynchronous::Normal),
            Some(_) => options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal),
            None => options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal),
        })
    }

    /// Opens a pool with the given options, as [`SqliteDriver::open`] does.
    ///
    /// # Errors
    ///
    /// As [`SqliteDriver::open`].
    pub async fn open_with(options: SqliteConnectOptions) -> Result<Self> {
        let mut backoff = busy_backoff();
        loop {
            // Switching a new file to WAL takes a lock the busy timeout does not wait for, so
            // two processes creating one file at once may see SQLITE_BUSY here.
            match SqlitePoolOptions::new()
                .max_connections(POOL_SIZE)
                .connect_with(options.clone())
                .await
            {
                Ok(pool) => return Ok(Self::new(pool)),
                Err(err) if is_busy(&err) && backoff.failures() < BUSY_RETRIES => {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(err) => return Err(db_error(err)),
            }
        }
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) fn queries(&self) -> &Queries {
        &self.shared.queries
    }

    /// Begins a write transaction: `BEGIN IMMEDIATE`, retried while the database is busy.
    pub(crate) async fn begin_immediate(&self) -> Result<Transaction<'static, Sqlite>> {
        let mut backoff = busy_backoff();
        loop {
            match self.pool.begin_with("BEGIN IMMEDIATE").await {
                Ok(tx) => return Ok(tx),
                Err(err) if is_busy(&err) && backoff.failures() < BUSY_RETRIES => {
                    let delay = backoff.next_delay();
                    tracing::debug!(
                        attempt = backoff.failures(),
                        "database busy; beginning the write again"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(err) => return Err(db_error(err)),
            }
        }
    }

    /// Whether notification rows are due for cleaning; if so, records that they are cleaned
    /// now.
    pub(crate) fn notifications_clean_due(&self) -> bool {
        let now = jiff::Timestamp::now().as_second();
        let last = self.shared.notifications_cleaned_at.load(Ordering::Relaxed);
        now - last >= NOTIFICATION_CLEAN_INTERVAL.as_secs() as i64
            && self
                .shared
                .notifications_cleaned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

fn main_schema() -> Schema {
    Schema::new("main").expect("main is a valid schema name")
}

/// The backoff while the database is busy: jittered, so that processes that collided do not
/// collide again.
fn busy_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(50), Duration::from_millis(1600))
}

impl Driver for SqliteDriver {
    type Conn = SqliteConnection;
    type Tx = Transaction<'static, Sqlite>;
    type Executor<'a> = SqliteExecutor<'a>;
    type Listener = SqliteListener;

    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn schema(&self) -> &Schema {
        &self.shared.queries.schema
    }

    fn executor(&self) -> SqliteExecutor<'_> {
        SqliteExecutor::pool(self)
    }

    fn conn_executor<'a>(&'a self, conn: &'a mut SqliteConnection) -> SqliteExecutor<'a> {
        SqliteExecutor::conn(self, conn)
    }

    /// Begins a `BEGIN IMMEDIATE` transaction, which holds the write lock from the start.
    async fn begin(&self) -> Result<Self::Tx> {
        self.begin_immediate().await
    }

    fn tx_conn(tx: &mut Self::Tx) -> &mut SqliteConnection {
        tx
    }

    async fn commit(tx: Self::Tx) -> Result<()> {
        tx.commit().await.map_err(db_error)
    }

    async fn listener(&self) -> Result<SqliteListener> {
        SqliteListener::connect(self).await
    }

    // `connect` keeps its default (no connection of its own, so the heartbeat uses the pool):
    // an attached schema or an in-memory database exists only in the pool's connections, so
    // a connection opened beside them could see another database; and SQLite's writes all
    // wait for the one write lock, a connection of its own or not.

    /// True: the polled `river_notification` outbox delivers notifications to every process
    /// on the file within about 100 ms, which is what the client's notifier and its insert
    /// notifications need.
    fn supports_listen_notify(&self) -> bool {
        true
    }

    fn migrations(&self, line: &str) -> Option<&'static [Migration]> {
        match line {
            "main" => Some(migrations::MAIN),
            "millrace" => Some(migrations::MILLRACE),
            _ => None,
        }
    }
}

impl From<SqlitePool> for SqliteDriver {
    fn from(pool: SqlitePool) -> Self {
        Self::new(pool)
    }
}

/// The notification retention, as SQLite's `datetime` modifier.
pub(crate) fn notification_retention_modifier() -> String {
    format!("-{} seconds", NOTIFICATION_RETENTION.as_secs())
}
