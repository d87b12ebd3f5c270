//! Decoding `river_job` rows selected by statements of the caller's own.

use millrace_driver::{Driver, DriverError, Executor, JobInsertParams};
use millrace_postgres::{decode_job_row, job_columns};
use millrace_types::JobState;
use sqlx::AssertSqlSafe;

fn job(kind: &str) -> JobInsertParams {
    JobInsertParams {
        args: r#"{"n":7}"#.to_owned(),
        created_at: None,
        kind: kind.to_owned(),
        max_attempts: 5,
        metadata: r#"{"m":true}"#.to_owned(),
        priority: 2,
        queue: "decode".to_owned(),
        scheduled_at: None,
        state: JobState::Available,
        tags: vec!["a".to_owned()],
        unique_key: None,
        unique_states: None,
    }
}

#[tokio::test]
async fn rows_selected_with_job_columns_decode() {
    let db = millrace_test::TestDb::new().await;
    let inserted = db
        .driver()
        .executor()
        .job_insert_many(&[job("first"), job("second")])
        .await
        .unwrap();
    let sql = format!(
        "SELECT {}, 42 AS extra FROM {} AS j ORDER BY id",
        job_columns("j."),
        db.schema().qualify("river_job")
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(db.pool())
        .await
        .unwrap();
    let jobs: Vec<_> = rows.iter().map(|r| decode_job_row(r).unwrap()).collect();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0], inserted[0].job);
    assert_eq!(jobs[1].kind, "second");
    assert_eq!(jobs[1].args["n"], 7);
    assert_eq!(jobs[1].metadata["m"], true);
    assert_eq!(jobs[1].tags, ["a"]);
    assert_eq!(jobs[1].max_attempts, 5);
}

#[tokio::test]
async fn rows_with_other_columns_are_refused() {
    let db = millrace_test::TestDb::new().await;
    db.driver()
        .executor()
        .job_insert_many(&[job("only")])
        .await
        .unwrap();
    // The same columns with two swapped, which would decode by position without the check.
    let sql = format!(
        "SELECT id, args, attempt, attempted_at, attempted_by, created_at, errors, queue, \
         max_attempts, metadata, priority, kind, scheduled_at, tags, unique_key, finalized_at, \
         state::text AS state, unique_states::int AS unique_states FROM {}",
        db.schema().qualify("river_job")
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .fetch_one(db.pool())
        .await
        .unwrap();
    match decode_job_row(&row) {
        Err(DriverError::Decode { column, message }) => {
            assert_eq!(column, "kind");
            assert!(message.contains("found Some(\"queue\")"), "{message}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}
