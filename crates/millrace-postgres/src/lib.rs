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
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

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
/// ```no_run
/// # async fn example() -> Result<(), sqlx::Error> {
/// let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
/// let driver = millrace_postgres::PgDriver::new(pool);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgDriver {
    pool: PgPool,
    queries: Arc<Queries>,
}

impl PgDriver {
    /// A driver on `pool`, using the schema `public`.
    pub fn new(pool: PgPool) -> Self {
        PgDriver {
            pool,
            queries: Arc::new(Queries::new(Schema::default())),
        }
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
            pool: self.pool,
            queries: Arc::new(Queries::new(schema)),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
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
