//! Millrace's SQLite files against River's own Rust crate (`riverqueue` 0.5.0): the schema
//! River's migrator makes, version by version, and jobs crossing between the two clients.

use crate::common;

use std::time::Duration;

use common::{TempDir, TestFile};
use millrace::{
    Client, InsertManyParams, InsertOpts, Job, JobArgs, JobListParams, JobState, MigrateOpts,
    Migrator, QueueConfig, UniqueOpts, WorkError, Worker, Workers,
};
use millrace_sqlite::SqliteDriver;
use riverqueue::migrate::{Direction, MigrateOpts as RiverMigrateOpts, SqliteMigrator};
use serde::{Deserialize, Serialize};
use sqlx::{Row, SqlitePool};

const DEADLINE: Duration = Duration::from_secs(30);

/// The schema of a file as SQLite reports it: every table with its columns (type, NOT NULL,
/// default, key), whether its key is AUTOINCREMENT, and every index with its columns,
/// uniqueness and definition (whitespace aside). Millrace's own tables are left out.
async fn describe(pool: &SqlitePool) -> Vec<String> {
    let objects = sqlx::query(
        "SELECT type, name, tbl_name, sql FROM sqlite_master \
         WHERE name NOT LIKE 'sqlite_%' AND name NOT LIKE 'millrace_%' ORDER BY type, name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out = Vec::new();
    for object in &objects {
        let kind: String = object.get("type");
        let name: String = object.get("name");
        let sql: Option<String> = object.get("sql");
        let sql = sql.unwrap_or_default();
        match kind.as_str() {
            "table" => {
                out.push(format!(
                    "table {name} autoincrement={}",
                    sql.to_uppercase().contains("AUTOINCREMENT")
                ));
                let columns = sqlx::query(
                    "SELECT cid, name, type, \"notnull\", dflt_value, pk \
                     FROM pragma_table_info(?1) ORDER BY cid",
                )
                .bind(&name)
                .fetch_all(pool)
                .await
                .unwrap();
                for c in &columns {
                    out.push(format!(
                        "  column {} {} {} notnull={} default={:?} pk={}",
                        c.get::<i64, _>("cid"),
                        c.get::<String, _>("name"),
                        c.get::<String, _>("type"),
                        c.get::<i64, _>("notnull"),
                        c.get::<Option<String>, _>("dflt_value"),
                        c.get::<i64, _>("pk"),
                    ));
                }
            }
            "index" => {
                let table: String = object.get("tbl_name");
                let cols: Vec<String> =
                    sqlx::query_scalar("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
                        .bind(&name)
                        .fetch_all(pool)
                        .await
                        .unwrap();
                // The definition without whitespace: the partial unique index must be River's
                // expression for expression, for River's ON CONFLICT clauses to match it.
                let definition: String = sql
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect::<String>()
                    .replace("\"main\".", "");
                out.push(format!(
                    "index {name} on {table} ({}) {definition}",
                    cols.join(", ")
                ));
            }
            other => out.push(format!("{other} {name}")),
        }
    }
    out
}

async fn open(dir: &TempDir, name: &str) -> SqliteDriver {
    SqliteDriver::open(&dir.file(name)).await.unwrap()
}

#[tokio::test]
async fn schema_matches_rivers_at_every_version() {
    let dir = TempDir::new();
    let ours = open(&dir, "millrace.db").await;
    let theirs = open(&dir, "river.db").await;
    let migrator = Migrator::new(ours.clone());
    let river = SqliteMigrator::new(theirs.pool().clone());
    for version in 1..=8 {
        migrator
            .migrate_up(MigrateOpts::new().line("main").target_version(version))
            .await
            .unwrap();
        river
            .migrate(
                Direction::Up,
                RiverMigrateOpts::new().with_target_version(version),
            )
            .await
            .unwrap();
        let (a, b) = (describe(ours.pool()).await, describe(theirs.pool()).await);
        assert_eq!(a, b, "version {version}:\nMillrace {a:#?}\nRiver {b:#?}");
    }
    // And back down, each version.
    for version in (0..8).rev() {
        migrator
            .migrate_down(MigrateOpts::new().target_version(version))
            .await
            .unwrap();
        river
            .migrate(
                Direction::Down,
                RiverMigrateOpts::new().with_target_version(if version == 0 {
                    -1
                } else {
                    version
                }),
            )
            .await
            .unwrap();
        let (a, b) = (describe(ours.pool()).await, describe(theirs.pool()).await);
        assert_eq!(a, b, "down to {version}:\nMillrace {a:#?}\nRiver {b:#?}");
    }
}

#[tokio::test]
async fn each_migrator_finds_the_others_work_applied() {
    let file = TestFile::new().await;
    let river = SqliteMigrator::new(file.driver.pool().clone());
    assert_eq!(
        river.existing_versions().await.unwrap(),
        (1..=8).collect::<Vec<_>>()
    );
    assert!(river.migrate_up().await.unwrap().is_empty());

    let dir = TempDir::new();
    let theirs = open(&dir, "river.db").await;
    SqliteMigrator::new(theirs.pool().clone())
        .migrate_up()
        .await
        .unwrap();
    let migrator = Migrator::new(theirs.clone());
    let report = migrator.migrate_up(MigrateOpts::new()).await.unwrap();
    let lines: Vec<&str> = report.steps.iter().map(|s| s.line).collect();
    assert_eq!(
        lines,
        ["millrace", "millrace", "millrace"],
        "River's versions are adopted as they are; line millrace (versions 1 to 3) is new"
    );
    assert!(migrator.validate(None).await.unwrap().is_valid());
}

/// Args as River's Rust client declares them.
#[derive(Debug, Clone, Serialize, Deserialize, riverqueue::JobArgs)]
#[river(kind = "crossing")]
struct RiverCrossing {
    n: i64,
}

/// The same kind and JSON, as Millrace declares them.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Crossing {
    n: i64,
}

impl JobArgs for Crossing {
    const KIND: &'static str = "crossing";
}

struct CrossingWorker;

impl Worker for CrossingWorker {
    type Args = Crossing;

    async fn work(&self, _job: Job<Crossing>) -> Result<(), WorkError> {
        Ok(())
    }
}

async fn wait_all_completed(client: &Client<SqliteDriver>, total: usize) {
    let wait = async {
        loop {
            let done = client
                .job_list(
                    JobListParams::new()
                        .states([JobState::Completed])
                        .limit(1_000),
                )
                .await
                .unwrap()
                .jobs
                .len();
            if done == total {
                return;
            }
            // Polling rows: completions by another client raise no event here.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("not all {total} jobs completed within {DEADLINE:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_inserted_by_riverqueue_are_worked_by_millrace() {
    let file = TestFile::new().await;
    let river = riverqueue::Client::builder(file.driver.pool().clone())
        .build()
        .expect("build the River client");
    river.insert(RiverCrossing { n: 0 }).await.unwrap();
    let opts = riverqueue::InsertOpts::default()
        .with_max_attempts(5)
        .with_priority(2)
        .with_tags(["from_river"]);
    river
        .insert(RiverCrossing { n: 1 })
        .opts(opts)
        .await
        .unwrap();
    // A unique insert names Millrace's partial index in its ON CONFLICT clause.
    let unique = riverqueue::InsertOpts::default()
        .with_unique(riverqueue::UniqueOpts::default().with_by_args(true));
    let first = river
        .insert(RiverCrossing { n: 2 })
        .opts(unique.clone())
        .await
        .unwrap();
    let again = river
        .insert(RiverCrossing { n: 2 })
        .opts(unique)
        .await
        .unwrap();
    assert!(again.unique_skipped_as_duplicate);
    assert_eq!(again.job.id(), first.job.id());
    let past = riverqueue::jiff::Timestamp::now() - riverqueue::jiff::SignedDuration::from_secs(1);
    river
        .insert(RiverCrossing { n: 3 })
        .opts(riverqueue::InsertOpts::default().with_scheduled_at(past))
        .await
        .unwrap();
    river
        .insert_many((4..20).map(|n| RiverCrossing { n }))
        .await
        .unwrap();

    let mut workers = Workers::new();
    workers.register(CrossingWorker).unwrap();
    let millrace = Client::builder(file.driver.clone())
        .workers(workers)
        .queue("default", QueueConfig::new().max_workers(5))
        .fetch_poll_interval(Duration::from_millis(200))
        .schedule_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    // Millrace reads River's rows: options, times and unique keys.
    let tagged = millrace
        .job_list(JobListParams::new().limit(100))
        .await
        .unwrap()
        .jobs
        .into_iter()
        .find(|j| j.tags == ["from_river"])
        .expect("the tagged job");
    assert_eq!((tagged.max_attempts, tagged.priority), (5, 2));
    let unique_row = millrace
        .job_get(millrace::JobId(first.job.id()))
        .await
        .unwrap();
    assert!(unique_row.unique_key.is_some());
    millrace.start().await.unwrap();
    wait_all_completed(&millrace, 20).await;
    millrace.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_inserted_by_millrace_are_worked_by_riverqueue() {
    let file = TestFile::new().await;
    let millrace = Client::builder(file.driver.clone()).build().unwrap();
    let inserted = millrace
        .insert(
            Crossing { n: 0 },
            Some(
                InsertOpts::new()
                    .max_attempts(5)
                    .priority(2)
                    .tags(["from_millrace"])
                    .metadata(serde_json::json!({"origin": "millrace"})),
            ),
        )
        .await
        .unwrap();
    let unique = InsertOpts::new().unique(UniqueOpts::new().by_args());
    millrace
        .insert(Crossing { n: 1 }, Some(unique.clone()))
        .await
        .unwrap();
    let mut tx = file
        .driver
        .pool()
        .begin_with("BEGIN IMMEDIATE")
        .await
        .unwrap();
    millrace
        .insert_tx(&mut tx, Crossing { n: 2 }, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    millrace
        .insert_many((3..10).map(|n| InsertManyParams::new(Crossing { n })))
        .await
        .unwrap();
    millrace
        .insert_many_fast((10..20).map(|n| InsertManyParams::new(Crossing { n })))
        .await
        .unwrap();

    let mut workers = riverqueue::Workers::new();
    workers
        .add_fn(
            |_ctx: riverqueue::WorkContext, _job: riverqueue::Job<RiverCrossing>| async {
                Ok::<_, riverqueue::BoxError>(riverqueue::WorkOutcome::Complete)
            },
        )
        .unwrap();
    let river = riverqueue::Client::builder(file.driver.pool().clone())
        .workers(workers)
        .queue(
            "default",
            riverqueue::QueueConfig::new(5).with_fetch_poll_interval(Duration::from_millis(200)),
        )
        .build()
        .expect("build the River client");
    // River reads Millrace's row as Millrace wrote it.
    let row = river
        .jobs()
        .get(inserted.job.id.0)
        .await
        .expect("River finds and decodes the job");
    assert_eq!(row.kind, "crossing");
    assert_eq!(row.max_attempts, 5);
    assert_eq!(row.priority, 2);
    assert_eq!(row.tags, ["from_millrace"]);
    assert_eq!(row.scheduled_at, inserted.job.scheduled_at);
    // River's unique insert finds Millrace's live row.
    let dup = river
        .insert(RiverCrossing { n: 1 })
        .opts(
            riverqueue::InsertOpts::default()
                .with_unique(riverqueue::UniqueOpts::default().with_by_args(true)),
        )
        .await
        .unwrap();
    assert!(dup.unique_skipped_as_duplicate, "the unique keys agree");

    let mut run = river.start().expect("start the River client");
    wait_all_completed(&millrace, 20).await;
    run.stop().await.unwrap();
}
