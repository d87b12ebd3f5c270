//! SQLite's migrations both ways, job ids, River Pro's schema, and how times and metadata
//! are stored.

use crate::common;

use common::{TempDir, TestFile};
use jiff::{SignedDuration, Timestamp};
use millrace::{MigrateOpts, Migrator};
use millrace_driver::{Driver, Executor, JobCompleteParams, JobOutcome};
use millrace_sqlite::SqliteDriver;
use millrace_types::{JobState, UniqueStates};
use sqlx::Row;

use super::{columns, error_chain, fetch, insert, job, tables};

#[tokio::test]
async fn migrations_round_trip_step_by_step() {
    let dir = TempDir::new();
    let driver = SqliteDriver::open(&dir.file("jobs.db")).await.unwrap();
    let migrator = Migrator::new(driver.clone());
    let pool = driver.pool();
    // Up one version at a time, then down one at a time, twice over.
    for _ in 0..2 {
        for version in 1..=8 {
            let report = migrator
                .migrate_up(MigrateOpts::new().line("main").max_steps(1))
                .await
                .unwrap_or_else(|err| panic!("up to {version}: {err:#}"));
            assert_eq!(report.steps[0].version, version);
        }
        migrator
            .migrate_up(MigrateOpts::new().line("millrace"))
            .await
            .unwrap();
        assert!(migrator.validate(None).await.unwrap().is_valid());
        assert!(tables(pool).await.contains(&"millrace_client".to_owned()));
        for version in (1..=8).rev() {
            let report = migrator
                .migrate_down(MigrateOpts::new())
                .await
                .unwrap_or_else(|err| panic!("down from {version}: {err:#}"));
            let main: Vec<i64> = report
                .steps
                .iter()
                .filter(|s| s.line == "main")
                .map(|s| s.version)
                .collect();
            assert_eq!(main, [version]);
        }
        assert!(tables(pool).await.is_empty(), "{:?}", tables(pool).await);
    }
}

#[tokio::test]
async fn jobs_survive_migrating_down_and_up() {
    let file = TestFile::new().await;
    let d = &file.driver;
    let mut tagged = job("kept");
    tagged.tags = vec!["a".to_owned()];
    tagged.metadata = r#"{"m":{"deep":[1,2]}}"#.to_owned();
    tagged.unique_key = Some(vec![1; 32]);
    tagged.unique_states = Some(UniqueStates::DEFAULT);
    let ids = insert(d, &[tagged, job("plain")]).await;
    fetch(d, "c1", 1).await;
    let before = d.executor().job_get_by_id(ids[0]).await.unwrap().unwrap();
    let migrator = Migrator::new(d.clone());
    // Version 6 holds JSON as text; version 7 makes it JSONB and adds max_attempts last, as
    // River's does (version 8's down keeps the column where version 8 put it, as River's).
    migrator
        .migrate_down(MigrateOpts::new().target_version(6))
        .await
        .unwrap();
    let text: String = sqlx::query_scalar("SELECT typeof(args) FROM river_job WHERE id = ?1")
        .bind(ids[0].0)
        .fetch_one(d.pool())
        .await
        .unwrap();
    assert_eq!(text, "text", "version 6 stores JSON as text");
    migrator
        .migrate_up(MigrateOpts::new().target_version(7))
        .await
        .unwrap();
    assert_eq!(
        columns(d.pool(), "river_job")
            .await
            .last()
            .map(String::as_str),
        Some("max_attempts")
    );
    migrator.migrate_up(MigrateOpts::new()).await.unwrap();
    let blob: String = sqlx::query_scalar("SELECT typeof(args) FROM river_job WHERE id = ?1")
        .bind(ids[0].0)
        .fetch_one(d.pool())
        .await
        .unwrap();
    assert_eq!(blob, "blob", "version 7 stores JSONB");
    let after = d.executor().job_get_by_id(ids[0]).await.unwrap().unwrap();
    assert_eq!(after, before);
    // The unique index came back: the key is still taken.
    let mut dup = job("dup");
    dup.unique_key = Some(vec![1; 32]);
    dup.unique_states = Some(UniqueStates::DEFAULT);
    let result = d.executor().job_insert_many(&[dup]).await.unwrap();
    assert!(result[0].unique_skipped_as_duplicate);
    assert_eq!(result[0].job.id, ids[0]);
}

#[tokio::test]
async fn job_ids_are_never_reused() {
    let file = TestFile::new().await;
    let d = &file.driver;
    let ids = insert(d, &[job("a"), job("b"), job("c")]).await;
    d.executor().job_delete(ids[2]).await.unwrap();
    let next = insert(d, &[job("d")]).await;
    assert!(next[0] > ids[2], "{next:?} reuses {:?}", ids[2]);
    // The rebuild of version 8 carried the sequence over.
    let migrator = Migrator::new(d.clone());
    migrator
        .migrate_down(MigrateOpts::new().target_version(7))
        .await
        .unwrap();
    migrator.migrate_up(MigrateOpts::new()).await.unwrap();
    d.executor().job_delete(next[0]).await.unwrap();
    let again = insert(d, &[job("e")]).await;
    assert!(again[0] > next[0]);
}

#[tokio::test]
async fn river_pro_schema_blocks_version_8() {
    let dir = TempDir::new();
    let driver = SqliteDriver::open(&dir.file("jobs.db")).await.unwrap();
    let migrator = Migrator::new(driver.clone());
    migrator
        .migrate_up(MigrateOpts::new().target_version(7))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE river_workflow (id integer PRIMARY KEY)")
        .execute(driver.pool())
        .await
        .unwrap();
    let err = migrator
        .migrate_up(MigrateOpts::new().line("main"))
        .await
        .unwrap_err();
    let chain = error_chain(&err);
    assert!(chain.contains("river_pro_schema_must_be_absent"), "{chain}");
    let applied: Vec<i64> = migrator
        .list()
        .await
        .unwrap()
        .iter()
        .filter(|m| m.line == "main" && m.is_applied())
        .map(|m| m.version)
        .collect();
    assert_eq!(applied, [1, 2, 3, 4, 5, 6, 7], "version 8 rolled back");
}

#[tokio::test]
async fn stored_times_use_rivers_text_form() {
    let file = TestFile::new().await;
    let d = &file.driver;
    let mut scheduled = job("later");
    scheduled.state = JobState::Scheduled;
    scheduled.scheduled_at = Some("2031-02-03T04:05:06.789Z".parse().unwrap());
    let ids = insert(d, &[scheduled]).await;
    let row = sqlx::query("SELECT scheduled_at, created_at FROM river_job WHERE id = ?1")
        .bind(ids[0].0)
        .fetch_one(d.pool())
        .await
        .unwrap();
    assert_eq!(
        row.get::<String, _>("scheduled_at"),
        "2031-02-03 04:05:06.789"
    );
    let created: String = row.get("created_at");
    assert_eq!(created.len(), "2031-02-03 04:05:06.789".len(), "{created}");
    assert!(!created.contains('T'));
}

#[tokio::test]
async fn completion_merges_metadata_like_postgres() {
    let file = TestFile::new().await;
    let d = &file.driver;
    let mut with_meta = job("meta");
    with_meta.metadata = r#"{"keep":1,"nested":{"a":1,"b":2},"gone":"x"}"#.to_owned();
    insert(d, &[with_meta]).await;
    let row = fetch(d, "c", 1).await.remove(0);
    d.executor()
        .job_complete_many(&[JobCompleteParams {
            id: row.id,
            attempt: row.attempt,
            outcome: JobOutcome::Snoozed {
                until: Timestamp::now() + SignedDuration::from_secs(600),
            },
            metadata_merge: Some(
                r#"{"nested":{"a":9},"gone":null,"new":[1,"two",true]}"#.to_owned(),
            ),
        }])
        .await
        .unwrap();
    let row = d.executor().job_get_by_id(row.id).await.unwrap().unwrap();
    // Top-level keys replace whole values, nulls included, as PostgreSQL's `||` does.
    assert_eq!(
        row.metadata,
        serde_json::json!({
            "keep": 1,
            "nested": {"a": 9},
            "gone": null,
            "new": [1, "two", true],
            "snoozes": 1,
        })
    );
}
