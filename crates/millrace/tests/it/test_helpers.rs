//! The test helpers of `millrace-test` against a real PostgreSQL: schemas of their own, and
//! the insertion assertions.

use std::any::Any;

use millrace::{InsertManyParams, InsertOpts, JobState, MigrateOpts, Migrator};
use millrace_test::{
    ExpectedJob, RequireInsertedOpts, TestDb, require_inserted, require_many_inserted,
    require_many_inserted_tx, require_not_inserted, require_not_inserted_tx,
};
use sqlx::AssertSqlSafe;

use crate::common::{Configured, Other, Simple, client, count_jobs};

async fn tables(db: &TestDb) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY tablename",
    )
    .bind(db.schema().name())
    .fetch_all(db.pool())
    .await
    .unwrap()
}

fn panic_message(panic: Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[tokio::test]
async fn test_dbs_held_at_once_have_schemas_of_their_own() {
    let a = TestDb::new().await;
    let b = TestDb::new().await;
    assert_ne!(a.schema().name(), b.schema().name());
    assert!(a.schema().name().starts_with("millrace_test_"));

    client(&a)
        .insert(Simple::new("only in a"), None)
        .await
        .unwrap();
    assert_eq!(count_jobs(&a).await, 1);
    assert_eq!(count_jobs(&b).await, 0);
}

#[tokio::test]
async fn a_test_db_is_migrated_and_empty() {
    let db = TestDb::new().await;
    assert_eq!(count_jobs(&db).await, 0);
    let tables = tables(&db).await;
    for table in [
        "river_job",
        "river_leader",
        "river_migration",
        "river_queue",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing from {tables:?}"
        );
    }
    let migrator = Migrator::new(db.driver());
    let validation = migrator.validate(None).await.unwrap();
    assert!(validation.is_valid(), "{validation}");

    // The URL reaches the same database.
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let sql = format!(
        "SELECT count(*) FROM {}",
        db.schema().qualify("river_migration")
    );
    let versions: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(versions >= 8);
}

#[tokio::test]
async fn an_empty_test_db_has_no_tables_until_migrated() {
    let db = TestDb::empty().await;
    assert!(db.schema().name().starts_with("millrace_test_empty_"));
    assert!(tables(&db).await.is_empty());

    Migrator::new(db.driver())
        .migrate_up(MigrateOpts::new().target_version(7))
        .await
        .unwrap();
    assert!(tables(&db).await.iter().any(|t| t == "river_job"));
}

#[tokio::test]
async fn assertions_see_inside_a_transaction() {
    let db = TestDb::new().await;
    let client = client(&db);
    let driver = db.driver();

    let mut tx = db.tx().await;
    client
        .insert_many_tx(
            &mut tx,
            [
                InsertManyParams::new(Simple::new("a")),
                InsertManyParams::new(Configured { n: 1 }),
                InsertManyParams::new(Simple::new("b"))
                    .opts(InsertOpts::new().queue("other_queue")),
            ],
        )
        .await
        .unwrap();

    let rows = require_many_inserted_tx(
        &driver,
        &mut tx,
        &[
            ExpectedJob::of::<Simple>(),
            ExpectedJob::of::<Configured>().opts(
                RequireInsertedOpts::new()
                    .queue("from_args")
                    .priority(3)
                    .max_attempts(7)
                    .tags(["from_args"])
                    .state(JobState::Available),
            ),
            ExpectedJob::kind("simple").opts(RequireInsertedOpts::new().queue("other_queue")),
        ],
    )
    .await;
    assert_eq!(rows.len(), 3);
    require_not_inserted_tx::<Other, _>(&driver, &mut tx, None).await;
    require_not_inserted_tx::<Simple, _>(
        &driver,
        &mut tx,
        Some(RequireInsertedOpts::new().state(JobState::Running)),
    )
    .await;

    // Outside the transaction nothing is there yet.
    require_not_inserted::<Simple>(&driver, None).await;
    tx.commit().await.unwrap();
    require_many_inserted(
        &driver,
        &[ExpectedJob::of::<Simple>(), ExpectedJob::of::<Simple>()],
    )
    .await;
}

#[tokio::test]
async fn failed_assertions_panic_with_what_differed() {
    let db = TestDb::new().await;
    let client = client(&db);
    client.insert(Simple::new("a"), None).await.unwrap();

    let driver = db.driver();
    let panic = tokio::spawn(async move {
        require_inserted::<Simple>(&driver, Some(RequireInsertedOpts::new().queue("elsewhere")))
            .await;
    })
    .await
    .unwrap_err()
    .into_panic();
    let message = panic_message(panic);
    assert!(
        message.contains("queue: expected \"elsewhere\", found \"default\""),
        "{message}"
    );

    let driver = db.driver();
    let panic = tokio::spawn(async move {
        require_not_inserted::<Simple>(&driver, None).await;
    })
    .await
    .unwrap_err()
    .into_panic();
    assert!(panic_message(panic).contains("was inserted"));

    client.insert(Simple::new("b"), None).await.unwrap();
    let driver = db.driver();
    let panic = tokio::spawn(async move {
        require_inserted::<Simple>(&driver, None).await;
    })
    .await
    .unwrap_err()
    .into_panic();
    assert!(panic_message(panic).contains("2 jobs of kind \"simple\""));
}
