//! A migrated schema per test, from a pool of schemas reused across tests and test processes.

use std::error::Error as StdError;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;
use std::time::Duration;

use millrace::{MigrateOpts, Migrator};
use millrace_driver::{Driver, Schema};
use millrace_postgres::PgDriver;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Postgres, Row, Transaction};

/// The environment variable naming the test database.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// Tried in order when [`TEST_DATABASE_URL`] is unset: the local server, as the `postgres`
/// role or as `root` (a cluster `initdb` made as root's own role).
const DEFAULT_URLS: [&str; 2] = [
    "postgres://postgres@127.0.0.1:5432/test",
    "postgres://root@127.0.0.1:5432/test",
];

/// The first advisory-lock key of every schema lock (`pg_try_advisory_lock(class, n)`), one per
/// kind of schema, so the locks never meet an application's.
const LOCK_CLASS_MIGRATED: i32 = 0x6d72_7401;
const LOCK_CLASS_EMPTY: i32 = 0x6d72_7402;

/// More schemas than tests ever run at once.
const MAX_SCHEMAS: i32 = 1_000;

/// Bumped when the way a schema is prepared changes, so older schemas are rebuilt.
const PREPARATION_VERSION: u32 = 1;

/// The migration lines a schema is migrated through.
const LINES: [&str; 2] = ["main", "millrace"];

/// The URL that worked first in this process, so later tests skip the ones that failed.
static RESOLVED_URL: OnceLock<String> = OnceLock::new();

/// A PostgreSQL schema of its own for one test: River's tables (and Millrace's), migrated to
/// the newest version and empty.
///
/// Mirrors River's `riverdbtest`: schemas named `millrace_test_<n>` are created and migrated
/// once, then reused. A test holds its schema through a session advisory lock on a dedicated
/// connection, so tests running at the same time, in one process or in many (nextest runs
/// each test in a process of its own), never share one; the lock goes when the `TestDb` is
/// dropped, or when its process dies. Checking a schema out empties every table but
/// `river_migration`, which costs a few milliseconds; migrating a new schema costs a few
/// hundred. A schema migrated by a different set of migrations (a migration was added or
/// edited since) is dropped and built again.
///
/// The database is [`TEST_DATABASE_URL`], or else the local server on `127.0.0.1:5432`,
/// database `test`, as `postgres` or `root`; the database is created when it is missing.
///
/// Statements name the schema explicitly (as the driver's do); the pool's `search_path` is
/// left alone.
///
/// # Examples
///
/// ```no_run
/// use millrace::Client;
/// use millrace_test::TestDb;
///
/// # async fn example() {
/// let db = TestDb::new().await;
/// let client = Client::builder(db.driver()).build().unwrap();
/// let page = client.job_list(millrace::JobListParams::new()).await.unwrap();
/// assert!(page.jobs.is_empty());
/// # }
/// ```
pub struct TestDb {
    url: String,
    pool: PgPool,
    driver: PgDriver,
    schema: Schema,
    /// Holds the advisory lock on the schema until the `TestDb` is dropped.
    _lock: PgConnection,
}

impl fmt::Debug for TestDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDb")
            .field("url", &self.url)
            .field("schema", &self.schema.name())
            .finish_non_exhaustive()
    }
}

impl TestDb {
    /// A schema migrated to the newest version of every migration line, with empty tables.
    ///
    /// # Panics
    ///
    /// When no database answers, or a schema cannot be prepared: this is a test helper, and
    /// the message says what failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() {
    /// let db = millrace_test::TestDb::new().await;
    /// assert!(db.schema().name().starts_with("millrace_test_"));
    /// # }
    /// ```
    pub async fn new() -> TestDb {
        Self::checkout(Kind::Migrated).await
    }

    /// A schema with nothing in it, for tests of migrations themselves.
    ///
    /// Its name is `millrace_test_empty_<n>`; it is dropped and created again at each checkout.
    /// A test that changes the schema's objects (migrates down, drops a table) should use this
    /// rather than [`TestDb::new`], whose schemas are reused as they are left.
    ///
    /// # Panics
    ///
    /// As [`TestDb::new`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() {
    /// use millrace::{MigrateOpts, Migrator};
    ///
    /// let db = millrace_test::TestDb::empty().await;
    /// Migrator::new(db.driver()).migrate_up(MigrateOpts::new().target_version(7)).await.unwrap();
    /// # }
    /// ```
    pub async fn empty() -> TestDb {
        Self::checkout(Kind::Empty).await
    }

    /// The database URL the schema lives in.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() {
    /// let db = millrace_test::TestDb::new().await;
    /// let listener = sqlx::postgres::PgListener::connect(db.url()).await.unwrap();
    /// # }
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A pool on the database (at most 10 connections), with the default `search_path`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() {
    /// let db = millrace_test::TestDb::new().await;
    /// let sql = format!("SELECT count(*) FROM {}", db.schema().qualify("river_job"));
    /// let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
    ///     .fetch_one(db.pool())
    ///     .await
    ///     .unwrap();
    /// assert_eq!(count, 0);
    /// # }
    /// ```
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A PostgreSQL driver on [`TestDb::pool`] and [`TestDb::schema`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() {
    /// let db = millrace_test::TestDb::new().await;
    /// let client = millrace::Client::builder(db.driver()).build().unwrap();
    /// # }
    /// ```
    pub fn driver(&self) -> PgDriver {
        self.driver.clone()
    }

    pub(crate) fn driver_ref(&self) -> &PgDriver {
        &self.driver
    }

    /// The test's schema.
    ///
    /// Notification channels are named after it: `<schema>.river_insert`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() {
    /// let db = millrace_test::TestDb::new().await;
    /// let channel = format!("{}.river_insert", db.schema().name());
    /// # }
    /// ```
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// A transaction on the pool, rolled back when dropped unless committed: for tests that
    /// need no notifications (which PostgreSQL delivers only at commit).
    ///
    /// # Panics
    ///
    /// When the transaction cannot be opened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() {
    /// # #[derive(serde::Serialize)] struct Ping {}
    /// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// let db = millrace_test::TestDb::new().await;
    /// let client = millrace::Client::builder(db.driver()).build().unwrap();
    /// let mut tx = db.tx().await;
    /// client.insert_tx(&mut tx, Ping {}, None).await.unwrap();
    /// // Dropping `tx` rolls the insert back.
    /// # }
    /// ```
    pub async fn tx(&self) -> Transaction<'static, Postgres> {
        self.pool
            .begin()
            .await
            .unwrap_or_else(|err| panic!("TestDb: cannot begin a transaction: {}", chain(&err)))
    }

    async fn checkout(kind: Kind) -> TestDb {
        let (url, mut lock) = connect_any().await;
        let options: PgConnectOptions = url
            .parse()
            .unwrap_or_else(|err| panic!("TestDb: invalid database URL {url:?}: {err}"));
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(options);

        for n in 1..=MAX_SCHEMAS {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(kind.lock_class())
                .bind(n)
                .fetch_one(&mut lock)
                .await
                .unwrap_or_else(|err| panic!("TestDb: cannot take a schema lock: {}", chain(&err)));
            if !locked {
                continue;
            }
            let name = kind.schema_name(n);
            let schema = Schema::new(name.clone()).expect("test schema names are valid");
            let driver = PgDriver::new(pool.clone()).with_schema(schema.clone());
            match kind {
                Kind::Migrated => prepare_migrated(&mut lock, &driver).await,
                Kind::Empty => recreate(&mut lock, &name).await,
            }
            return TestDb {
                url,
                pool,
                driver,
                schema,
                _lock: lock,
            };
        }
        panic!("TestDb: all {MAX_SCHEMAS} test schemas are in use");
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Migrated,
    Empty,
}

impl Kind {
    fn lock_class(self) -> i32 {
        match self {
            Kind::Migrated => LOCK_CLASS_MIGRATED,
            Kind::Empty => LOCK_CLASS_EMPTY,
        }
    }

    fn schema_name(self, n: i32) -> String {
        match self {
            Kind::Migrated => format!("millrace_test_{n}"),
            Kind::Empty => format!("millrace_test_empty_{n}"),
        }
    }
}

/// Connects to the first database URL that answers, creating its database when it is missing.
async fn connect_any() -> (String, PgConnection) {
    if let Some(url) = RESOLVED_URL.get() {
        return match connect(url).await {
            Ok(conn) => (url.clone(), conn),
            Err(err) => panic!("TestDb: cannot connect to {url}: {}", chain(&err)),
        };
    }
    let candidates: Vec<String> = match std::env::var(TEST_DATABASE_URL) {
        Ok(url) if !url.is_empty() => vec![url],
        _ => DEFAULT_URLS.iter().map(|u| (*u).to_owned()).collect(),
    };
    let mut failures = Vec::new();
    for url in candidates {
        match connect(&url).await {
            Ok(conn) => {
                let _ = RESOLVED_URL.set(url.clone());
                return (url, conn);
            }
            Err(err) => failures.push(format!("  {url}: {}", chain(&err))),
        }
    }
    panic!(
        "TestDb: no test database answers; start PostgreSQL (bash scripts/test.sh does) or set \
         {TEST_DATABASE_URL}:\n{}",
        failures.join("\n")
    );
}

async fn connect(url: &str) -> Result<PgConnection, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    match PgConnection::connect_with(&options).await {
        Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("3D000") => {
            create_database(&options).await?;
            PgConnection::connect_with(&options).await
        }
        result => result,
    }
}

/// Creates the URL's database from the `postgres` database; another process creating it at
/// the same moment is fine.
async fn create_database(options: &PgConnectOptions) -> Result<(), sqlx::Error> {
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres")).await?;
    let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match sqlx::query(AssertSqlSafe(sql)).execute(&mut admin).await {
        Ok(_) => Ok(()),
        // duplicate_database, or the catalog's unique index when two creations race.
        Err(sqlx::Error::Database(err))
            if matches!(err.code().as_deref(), Some("42P04" | "23505")) =>
        {
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// Makes the locked schema ready: emptied when it was migrated by the current migrations,
/// else built again.
async fn prepare_migrated(lock: &mut PgConnection, driver: &PgDriver) {
    let name = driver.schema().name().to_owned();
    let fingerprint = fingerprint(driver);
    let comment: Option<Option<String>> = sqlx::query_scalar(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1",
    )
    .bind(&name)
    .fetch_optional(&mut *lock)
    .await
    .unwrap_or_else(|err| panic!("TestDb: cannot read schema {name}: {}", chain(&err)));

    if comment.flatten().as_deref() == Some(fingerprint.as_str())
        && migrations_complete(lock, driver).await
    {
        truncate(lock, &name).await;
        return;
    }

    recreate(lock, &name).await;
    if let Err(err) = Migrator::new(driver.clone())
        .migrate_up(MigrateOpts::default())
        .await
    {
        panic!("TestDb: cannot migrate schema {name}: {}", chain(&err));
    }
    let sql = format!("COMMENT ON SCHEMA \"{name}\" IS '{fingerprint}'");
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *lock)
        .await
        .unwrap_or_else(|err| panic!("TestDb: cannot mark schema {name}: {}", chain(&err)));
}

/// Whether `river_migration` records exactly the versions the driver has, so a test that
/// migrated its schema down (it should have used [`TestDb::empty`]) does not leave a broken
/// schema for the next.
async fn migrations_complete(lock: &mut PgConnection, driver: &PgDriver) -> bool {
    let mut expected: Vec<(String, i64)> = LINES
        .iter()
        .flat_map(|line| {
            driver
                .migrations(line)
                .unwrap_or_default()
                .iter()
                .map(|m| ((*line).to_owned(), m.version))
        })
        .collect();
    expected.sort();
    let sql = format!(
        "SELECT line, version FROM {} ORDER BY line, version",
        driver.schema().qualify("river_migration")
    );
    match sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *lock).await {
        Ok(rows) => {
            let applied: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            applied == expected
        }
        Err(_) => false,
    }
}

/// Empties every table but `river_migration`.
async fn truncate(lock: &mut PgConnection, name: &str) {
    let tables: Option<String> = sqlx::query_scalar(
        "SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') FROM pg_tables \
         WHERE schemaname = $1 AND tablename <> 'river_migration'",
    )
    .bind(name)
    .fetch_one(&mut *lock)
    .await
    .unwrap_or_else(|err| panic!("TestDb: cannot list tables of {name}: {}", chain(&err)));
    if let Some(tables) = tables {
        sqlx::raw_sql(AssertSqlSafe(format!("TRUNCATE {tables}")))
            .execute(&mut *lock)
            .await
            .unwrap_or_else(|err| panic!("TestDb: cannot empty schema {name}: {}", chain(&err)));
    }
}

/// Drops the schema with everything in it and creates it empty.
async fn recreate(lock: &mut PgConnection, name: &str) {
    let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE; CREATE SCHEMA \"{name}\"");
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *lock)
        .await
        .unwrap_or_else(|err| panic!("TestDb: cannot create schema {name}: {}", chain(&err)));
}

/// Identifies the migrations a schema was built with. `DefaultHasher` may change between Rust
/// releases; that only rebuilds the schemas once.
fn fingerprint(driver: &PgDriver) -> String {
    let mut hasher = DefaultHasher::new();
    PREPARATION_VERSION.hash(&mut hasher);
    for line in LINES {
        line.hash(&mut hasher);
        for m in driver.migrations(line).unwrap_or_default() {
            (m.version, m.name, m.up, m.down).hash(&mut hasher);
        }
    }
    format!("millrace-test {:016x}", hasher.finish())
}

/// An error with its sources, for panic messages.
fn chain(err: &dyn StdError) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        message.push_str(": ");
        message.push_str(&err.to_string());
        source = err.source();
    }
    message
}
