//! The PostgreSQL driver for Millrace, on sqlx.
//!
//! It holds River's PostgreSQL schema (migration line `main`, versions 1 to 8), every SQL
//! statement Millrace runs on PostgreSQL, and LISTEN/NOTIFY. Statements name their tables with
//! the configured schema, quoted, so they also run on a caller's own transaction whatever its
//! `search_path`.
//!
//! [`ConnectOptions`] builds the pool from a URL or psql's `PG*` variables, with TLS
//! (`sslmode`, root and client certificates), `application_name` and timeouts:
//!
//! ```no_run
//! use millrace_postgres::{ConnectOptions, PgDriver};
//! use millrace_driver::Schema;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = ConnectOptions::from_url("postgres://app@db.example.com/app?sslmode=verify-full")?
//!     .application_name("billing-worker")
//!     .connect()
//!     .await?;
//! let driver = PgDriver::new(pool).with_schema(Schema::new("jobs")?);
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `tls-rustls` | yes | TLS through rustls (ring), with the Mozilla roots compiled in |
//! | `tls-native-tls` | no | TLS through the platform's library and trust store (OpenSSL on Linux); wins when both are on |
//!
//! Without either (and without TLS from the application's own sqlx features), the default
//! `sslmode` is `disable` and any other mode is an error, never a silent plaintext fallback.

mod connect;
mod copy;
mod executor;
mod listener;
mod migrations;
mod queries;
mod row;

use std::sync::Arc;

use millrace_driver::{Driver, DriverError, Migration, Result, Schema};
use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Transaction};

pub use connect::{ConnectError, ConnectOptions, SslMode};
#[doc(hidden)]
pub use copy::encode_copy_text;
pub use executor::PgExecutor;
pub use listener::PgListener;
pub use sqlx;

/// The column list to select for [`decode_job_row`], each column prefixed with `prefix`
/// (`""`, or an alias such as `"j."`). A statement may select more columns after these.
///
/// ```
/// let sql = format!(
///     "SELECT {} FROM river_job WHERE kind = $1 ORDER BY id",
///     millrace_postgres::job_columns("")
/// );
/// assert!(sql.starts_with("SELECT id, args, attempt"));
/// ```
pub fn job_columns(prefix: &str) -> String {
    row::job_columns(prefix)
}

/// Decodes a `river_job` row selected with [`job_columns`], for statements of your own.
///
/// # Errors
///
/// [`DriverError::Decode`] names the column that did not decode or is missing or out of
/// place (a row not selected with [`job_columns`]), or a state this version does not know.
///
/// ```no_run
/// # async fn example(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let sql = format!(
///     "SELECT {} FROM river_job WHERE state = 'discarded' ORDER BY id LIMIT 10",
///     millrace_postgres::job_columns("")
/// );
/// for row in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await? {
///     let job = millrace_postgres::decode_job_row(&row)?;
///     println!("{} {}: {:?}", job.id, job.kind, job.errors.last());
/// }
/// # Ok(()) }
/// ```
pub fn decode_job_row(row: &sqlx::postgres::PgRow) -> Result<millrace_types::JobRow> {
    // Millrace's own statements are known to select job_columns; a caller's are checked, as
    // the columns are read by position.
    row::check_job_columns(row)?;
    row::job_row(row)
}

use queries::Queries;

/// The PostgreSQL driver: a sqlx pool and the schema its statements name.
///
/// Cloning is cheap and shares the pool.
///
/// Behind PgBouncer (or another pooler) in transaction mode, see
/// [`PgDriver::transaction_pooled`] and [`PgDriver::direct`].
///
/// ```no_run
/// # async fn example() -> Result<(), sqlx::Error> {
/// let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
/// let driver = millrace_postgres::PgDriver::new(pool);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgDriver {
    pool: PgPool,
    /// A pool straight to PostgreSQL, for what must stay on one server session.
    direct: Option<PgPool>,
    /// `pool` reaches PostgreSQL through a transaction-mode pooler.
    transaction_pooled: bool,
    queries: Arc<Queries>,
}

impl PgDriver {
    /// A driver on `pool`, using the schema `public`.
    pub fn new(pool: PgPool) -> Self {
        PgDriver {
            pool,
            direct: None,
            transaction_pooled: false,
            queries: Arc::new(Queries::new(Schema::default())),
        }
    }

    /// The same driver for a pool that reaches PostgreSQL through PgBouncer (or another
    /// pooler) in transaction mode, where consecutive transactions of one client connection
    /// may run on different server connections.
    ///
    /// In this mode:
    /// - No named prepared statement is created. A named statement lives in one server
    ///   connection, so another client handed that connection later fails with "prepared
    ///   statement … already exists", and the next statement of this one, sent to another
    ///   server connection, with "… does not exist". A zero-capacity statement cache does not
    ///   help: sqlx still names the statements it prepares.
    /// - A statement run on the pool (not in a transaction of its own) is wrapped in one.
    ///   sqlx prepares an unnamed statement and executes it in two exchanges, each ending in a
    ///   `Sync`; outside a transaction the pooler may hand the server connection to another
    ///   client in between, whose own unnamed statement then replaces this one ("bind message
    ///   supplies 12 parameters, but prepared statement "" requires 0", or, worse, another
    ///   statement with as many parameters runs). Inside `BEGIN … COMMIT` the pooler keeps the
    ///   server connection for the whole statement. This costs two round trips per statement;
    ///   batches (fetches, completions, inserts) spread them over many jobs.
    /// - LISTEN needs a session, which the pooler does not give: notifications go through the
    ///   [`direct`](PgDriver::direct) pool when there is one. Without it,
    ///   [`supports_listen_notify`](Driver::supports_listen_notify) is `false` and the client
    ///   polls, as it does on SQLite.
    ///
    /// Nothing else Millrace runs needs a session: the migration lock is
    /// `pg_advisory_xact_lock`, taken in the migration's transaction; leadership and
    /// persistent-worker leases are rows with expiry times; nothing runs `SET` or creates
    /// temporary tables. Statements you run on the same pool yourself must follow the same
    /// rules (`sqlx::query(..).persistent(false)`, inside a transaction).
    ///
    /// PgBouncer 1.21 and later can track named statements itself (`max_prepared_statements`);
    /// this mode works with and without it. Defaults to off.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), sqlx::Error> {
    /// use millrace_postgres::PgDriver;
    ///
    /// // PgBouncer in transaction mode, and PostgreSQL itself for LISTEN and leadership.
    /// let bouncer = sqlx::PgPool::connect("postgres://app@pgbouncer:6432/app").await?;
    /// let direct = sqlx::postgres::PgPoolOptions::new()
    ///     .max_connections(2)
    ///     .connect("postgres://app@db:5432/app")
    ///     .await?;
    /// let driver = PgDriver::new(bouncer).transaction_pooled().direct(direct);
    /// assert!(driver.is_transaction_pooled());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn transaction_pooled(mut self) -> Self {
        self.transaction_pooled = true;
        self
    }

    /// The same driver with a second pool that connects straight to PostgreSQL, not through a
    /// pooler, for what needs a server session of its own: the LISTEN connection, and
    /// leader election, so that the leader's renewals never queue behind job traffic for the
    /// pooler's few server connections and lose leadership to a timeout.
    ///
    /// One listener connection per client, plus a leader election every few seconds: two
    /// connections are plenty. Defaults to none: everything goes through the main pool.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), sqlx::Error> {
    /// # let bouncer = sqlx::PgPool::connect("postgres://app@pgbouncer:6432/app").await?;
    /// let direct = sqlx::postgres::PgPoolOptions::new()
    ///     .max_connections(2)
    ///     .connect_lazy("postgres://app@db:5432/app")?;
    /// let driver = millrace_postgres::PgDriver::new(bouncer)
    ///     .transaction_pooled()
    ///     .direct(direct);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn direct(mut self, pool: PgPool) -> Self {
        self.direct = Some(pool);
        self
    }

    /// Whether the driver is in [transaction-pooled](PgDriver::transaction_pooled) mode.
    ///
    /// ```
    /// # async fn example() {
    /// let pool = sqlx::PgPool::connect_lazy("postgres://localhost/app").unwrap();
    /// let driver = millrace_postgres::PgDriver::new(pool);
    /// assert!(!driver.is_transaction_pooled());
    /// # }
    /// ```
    pub fn is_transaction_pooled(&self) -> bool {
        self.transaction_pooled
    }

    /// The same driver on another schema.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
    /// use millrace_driver::Schema;
    /// let driver = millrace_postgres::PgDriver::new(pool).with_schema(Schema::new("jobs")?);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_schema(self, schema: Schema) -> Self {
        PgDriver {
            queries: Arc::new(Queries::new(schema)),
            ..self
        }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pool straight to PostgreSQL given with [`PgDriver::direct`], if any.
    ///
    /// ```
    /// # async fn example() {
    /// let pool = sqlx::PgPool::connect_lazy("postgres://localhost/app").unwrap();
    /// assert!(millrace_postgres::PgDriver::new(pool).direct_pool().is_none());
    /// # }
    /// ```
    pub fn direct_pool(&self) -> Option<&PgPool> {
        self.direct.as_ref()
    }

    /// The pool for a session-scoped connection: the direct one when given, else the main
    /// pool unless that goes through a transaction-mode pooler.
    pub(crate) fn session_pool(&self) -> Option<&PgPool> {
        match &self.direct {
            Some(direct) => Some(direct),
            None if self.transaction_pooled => None,
            None => Some(&self.pool),
        }
    }

    pub(crate) fn queries(&self) -> &Queries {
        &self.queries
    }
}

impl Driver for PgDriver {
    type Conn = PgConnection;
    type Tx = Transaction<'static, Postgres>;
    type Executor<'a> = PgExecutor<'a>;
    type Listener = PgListener;

    fn name(&self) -> &'static str {
        "postgres"
    }

    fn schema(&self) -> &Schema {
        &self.queries.schema
    }

    fn executor(&self) -> PgExecutor<'_> {
        PgExecutor::pool(self)
    }

    fn conn_executor<'a>(&'a self, conn: &'a mut PgConnection) -> PgExecutor<'a> {
        PgExecutor::conn(self, conn)
    }

    async fn begin(&self) -> Result<Self::Tx> {
        // BEGIN is a simple query: no prepared statement, safe through any pooler.
        self.pool.begin().await.map_err(db_error)
    }

    fn tx_conn(tx: &mut Self::Tx) -> &mut PgConnection {
        tx
    }

    async fn commit(tx: Self::Tx) -> Result<()> {
        tx.commit().await.map_err(db_error)
    }

    async fn listener(&self) -> Result<PgListener> {
        PgListener::connect(self).await
    }

    /// A connection opened with the [direct](PgDriver::direct) pool's options when the
    /// driver has one (straight to PostgreSQL, as for leader election), else with the main
    /// pool's. Only the options are taken: a pool's `after_connect` hook does not run on it,
    /// which the statements it serves do not need (they name their schema).
    async fn connect(&self) -> Result<Option<PgConnection>> {
        let pool = self.direct.as_ref().unwrap_or(&self.pool);
        let options = pool.connect_options();
        PgConnection::connect_with(&options)
            .await
            .map(Some)
            .map_err(db_error)
    }

    async fn disconnect(conn: PgConnection) {
        // The connection is going either way; a failed goodbye changes nothing.
        let _ = conn.close().await;
    }

    fn supports_listen_notify(&self) -> bool {
        self.session_pool().is_some()
    }

    fn migrations(&self, line: &str) -> Option<&'static [Migration]> {
        match line {
            "main" => Some(migrations::MAIN),
            "millrace" => Some(migrations::MILLRACE),
            _ => None,
        }
    }
}

/// Classifies a sqlx error: connection-level failures are retryable, the rest are not.
pub(crate) fn db_error(err: sqlx::Error) -> DriverError {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => DriverError::Connection(Box::new(err)),
        sqlx::Error::Database(ref db)
            // Class 08 (connection exception), 57P01..57P03 (admin shutdown, crash shutdown,
            // cannot connect now): the server went away, not the statement.
            if db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")) =>
        {
            DriverError::Connection(Box::new(err))
        }
        // The database's own error, not sqlx's wrapper, whose message repeats it.
        sqlx::Error::Database(db) => {
            let db: Box<dyn std::error::Error + Send + Sync> = db;
            DriverError::Database(db)
        }
        other => DriverError::Database(Box::new(other)),
    }
}
