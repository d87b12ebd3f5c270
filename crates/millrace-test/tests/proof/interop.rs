//! Jobs crossing between Millrace and River's own clients: the `riverqueue` crate both ways,
//! and River's Python client inserting.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use millrace::{Client, InsertManyParams, InsertOpts, Schema, UniqueOpts};
use millrace_test::TestDb;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgPool};

use super::jobs::{assert_exactly_once, create_runs_table, wait_until};
use super::load_worker::{LoadArgs, load_client, load_pool};
use super::{INTEROP_DEADLINE, INTEROP_JOBS, MAX_WORKERS, POOL_SIZE};

/// River's own Rust client inserts (every insert path, into the test's schema); Millrace works
/// the jobs. River's migrator finds the schema Millrace migrated up to date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_inserted_by_riverqueue_are_worked_by_millrace() {
    use riverqueue::database::{PostgresDatabase, SchemaName};

    let db = TestDb::new().await;
    create_runs_table(db.pool(), db.schema()).await;
    let river_schema = SchemaName::new(db.schema().name()).expect("valid schema");
    let applied = riverqueue::migrate::PostgresMigrator::new(db.pool().clone())
        .with_schema(river_schema.clone())
        .migrate_up()
        .await
        .expect("River's migrator runs on Millrace's schema");
    assert!(
        applied.is_empty(),
        "River's migrator applied {applied:?} on a current schema"
    );
    let river = riverqueue::Client::builder(
        PostgresDatabase::new(db.pool().clone()).with_schema(river_schema),
    )
    .build()
    .expect("build the River client");

    river.insert(RiverLoad { n: 0 }).await.expect("insert");
    let opts = riverqueue::InsertOpts::default()
        .with_max_attempts(5)
        .with_priority(2)
        .with_tags(["from_river"]);
    river
        .insert(RiverLoad { n: 1 })
        .opts(opts)
        .await
        .expect("insert with options");
    let unique = riverqueue::InsertOpts::default()
        .with_unique(riverqueue::UniqueOpts::default().with_by_args(true));
    river
        .insert(RiverLoad { n: 2 })
        .opts(unique)
        .await
        .expect("insert unique");
    let past = riverqueue::jiff::Timestamp::now() - riverqueue::jiff::SignedDuration::from_secs(1);
    let scheduled = riverqueue::InsertOpts::default().with_scheduled_at(past);
    river
        .insert(RiverLoad { n: 3 })
        .opts(scheduled)
        .await
        .expect("insert scheduled");
    let rest = (4..INTEROP_JOBS).map(|n| RiverLoad { n });
    river.insert_many(rest).await.expect("insert many");

    assert_options_kept(db.pool(), db.schema(), "from_river").await;
    let pool = load_pool(db.url(), "mrproof_interop", POOL_SIZE).expect("pool");
    let millrace = load_client(pool, db.schema(), "millrace_worker", MAX_WORKERS).expect("client");
    millrace.start().await.expect("start");
    wait_until(db.pool(), db.schema(), INTEROP_DEADLINE, |done| {
        done == INTEROP_JOBS
    })
    .await;
    millrace.stop().await.expect("stop");

    let runs = assert_exactly_once(db.pool(), db.schema(), INTEROP_JOBS).await;
    assert_eq!(runs.keys().collect::<Vec<_>>(), ["millrace_worker"]);
}

/// Millrace inserts (every insert path); River's own Rust client works the jobs, woken by
/// Millrace's notifications on the schema's channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_inserted_by_millrace_are_worked_by_riverqueue() {
    use riverqueue::database::{PostgresDatabase, SchemaName};

    let db = TestDb::new().await;
    create_runs_table(db.pool(), db.schema()).await;
    let millrace = Client::builder(db.driver())
        .build()
        .expect("build the Millrace client");
    millrace
        .insert(LoadArgs { n: 0 }, None)
        .await
        .expect("insert");
    let opts = InsertOpts::new()
        .max_attempts(5)
        .priority(2)
        .tags(["from_millrace"]);
    millrace
        .insert(LoadArgs { n: 1 }, Some(opts))
        .await
        .expect("insert with options");
    let unique = InsertOpts::new().unique(UniqueOpts::new().by_args());
    millrace
        .insert(LoadArgs { n: 2 }, Some(unique))
        .await
        .expect("insert unique");
    let mut tx = db.tx().await;
    millrace
        .insert_tx(&mut tx, LoadArgs { n: 3 }, None)
        .await
        .expect("insert in a transaction");
    tx.commit().await.expect("commit");
    let half = INTEROP_JOBS / 2;
    millrace
        .insert_many((4..half).map(|n| InsertManyParams::new(LoadArgs { n })))
        .await
        .expect("insert many");
    millrace
        .insert_many_fast((half..INTEROP_JOBS).map(|n| InsertManyParams::new(LoadArgs { n })))
        .await
        .expect("insert many by COPY");

    let runs_table = db.schema().qualify("load_runs");
    let record: Arc<str> = format!(
        "INSERT INTO {runs_table} (run_id, job_id, attempt, client) VALUES ($1, $2, $3, $4)"
    )
    .into();
    let record_pool = db.pool().clone();
    let mut workers = riverqueue::Workers::new();
    workers
        .add_fn(
            move |_ctx: riverqueue::WorkContext, job: riverqueue::Job<RiverLoad>| {
                let (pool, record) = (record_pool.clone(), record.clone());
                async move {
                    let run_id = format!("river_worker:{}:{}", job.row.id, job.row.attempt);
                    sqlx::query(AssertSqlSafe(record))
                        .bind(run_id)
                        .bind(job.row.id)
                        .bind(job.row.attempt)
                        .bind("river_worker")
                        .execute(&pool)
                        .await?;
                    Ok::<_, riverqueue::BoxError>(riverqueue::WorkOutcome::Complete)
                }
            },
        )
        .expect("register the River worker");
    let queue = riverqueue::QueueConfig::new(MAX_WORKERS)
        .with_fetch_cooldown(Duration::from_millis(10))
        .with_fetch_poll_interval(Duration::from_millis(200));
    let river_schema = SchemaName::new(db.schema().name()).expect("valid schema");
    let river = riverqueue::Client::builder(
        PostgresDatabase::new(db.pool().clone()).with_schema(river_schema),
    )
    .id("river_worker")
    .workers(workers)
    .queue(millrace::QUEUE_DEFAULT, queue)
    .build()
    .expect("build the River client");
    let mut run = river.start().expect("start the River client");
    wait_until(db.pool(), db.schema(), INTEROP_DEADLINE, |done| {
        done == INTEROP_JOBS
    })
    .await;
    run.stop().await.expect("stop the River client");

    let runs = assert_exactly_once(db.pool(), db.schema(), INTEROP_JOBS).await;
    assert_eq!(runs.keys().collect::<Vec<_>>(), ["river_worker"]);
}

/// River's Python client (PyPI `riverqueue`, SQLAlchemy on psycopg 3) inserts; Millrace works
/// the jobs. The Python client has no schema option, so the script points its connections at
/// the test's schema through `search_path`. Fails, with the command to run, when the client
/// is not installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_inserted_by_rivers_python_client_are_worked_by_millrace() {
    require_python_client();
    let db = TestDb::new().await;
    create_runs_table(db.pool(), db.schema()).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/insert_jobs.py");
    let output = tokio::task::spawn_blocking({
        let (url, schema) = (db.url().to_owned(), db.schema().name().to_owned());
        move || {
            Command::new("python3")
                .arg(script)
                .args([url, schema, INTEROP_JOBS.to_string()])
                .output()
        }
    })
    .await
    .expect("join")
    .expect("run python3");
    assert!(
        output.status.success(),
        "insert_jobs.py failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("insert_jobs.py prints JSON");
    assert_eq!(summary["inserted"], INTEROP_JOBS);

    assert_options_kept(db.pool(), db.schema(), "from_python").await;
    let pool = load_pool(db.url(), "mrproof_interop", POOL_SIZE).expect("pool");
    let millrace = load_client(pool, db.schema(), "millrace_worker", MAX_WORKERS).expect("client");
    millrace.start().await.expect("start");
    wait_until(db.pool(), db.schema(), INTEROP_DEADLINE, |done| {
        done == INTEROP_JOBS
    })
    .await;
    millrace.stop().await.expect("stop");

    let runs = assert_exactly_once(db.pool(), db.schema(), INTEROP_JOBS).await;
    assert_eq!(runs.keys().collect::<Vec<_>>(), ["millrace_worker"]);
}

/// Load args as River's Rust client declares them: the same kind and JSON as [`LoadArgs`].
#[derive(Debug, Clone, Serialize, Deserialize, riverqueue::JobArgs)]
#[river(kind = "millrace_load")]
struct RiverLoad {
    n: i64,
}

/// The job inserted with options (n = 1) kept them, and the one inserted scheduled in the past
/// (n = 3) is `scheduled`, for Millrace's scheduler.
async fn assert_options_kept(pool: &PgPool, schema: &Schema, tag: &str) {
    let sql = format!(
        "SELECT priority, max_attempts, tags::text[] FROM {} WHERE args ->> 'n' = '1'",
        schema.qualify("river_job")
    );
    let (priority, max_attempts, tags): (i16, i16, Vec<String>) =
        sqlx::query_as(AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
            .expect("read the job inserted with options");
    assert_eq!((priority, max_attempts, tags), (2, 5, vec![tag.to_owned()]));
    let sql = format!(
        "SELECT count(*) FROM {} WHERE state = 'scheduled'",
        schema.qualify("river_job")
    );
    let scheduled: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .expect("count scheduled jobs");
    assert_eq!(
        scheduled, 1,
        "the job scheduled in the past should wait for the scheduler"
    );
}

/// Fails, saying how to install it, when River's Python client cannot be imported.
fn require_python_client() {
    const INSTALL: &str =
        "python3 -m pip install riverqueue \"sqlalchemy[asyncio]\" \"psycopg[binary]\"";
    // River's SQLAlchemy driver imports SQLAlchemy's asyncio support, which needs greenlet.
    let check = Command::new("python3")
        .args([
            "-c",
            "import psycopg; from riverqueue.driver import riversqlalchemy",
        ])
        .output();
    match check {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "River's Python client is not installed ({}); install it with `{INSTALL}` \
             (scripts/test.sh does)",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("no output")
        ),
        Err(err) => panic!("cannot run python3 ({err}); install Python 3, then `{INSTALL}`"),
    }
}
