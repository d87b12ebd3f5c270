//! Faults of the database file (issue 7, point 4): a read-only file, a corrupt file, a full
//! disk and a lock held by another process each give a clear, typed error, and no job is
//! lost.

use crate::common;

use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use common::{TempDir, TestFile};
use millrace::{Client, JobArgs};
use millrace_driver::{
    Driver, DriverError, Executor, JobCompleteParams, JobGetAvailableParams, JobInsertParams,
    JobListParams, JobOutcome,
};
use millrace_sqlite::{SqliteDriver, SqliteFault};
use millrace_types::{AttemptError, JobState};
use serde::Serialize;
use sqlx::Executor as _;

#[derive(Serialize)]
struct Payload {
    blob: String,
}

impl JobArgs for Payload {
    const KIND: &'static str = "payload";
}

fn job(args: String) -> JobInsertParams {
    JobInsertParams {
        args,
        created_at: None,
        kind: "payload".to_owned(),
        max_attempts: 25,
        metadata: "{}".to_owned(),
        priority: 1,
        queue: "default".to_owned(),
        scheduled_at: None,
        state: JobState::Available,
        tags: Vec::new(),
        unique_key: None,
        unique_states: None,
    }
}

fn big_job(kib: usize) -> JobInsertParams {
    job(serde_json::json!({ "blob": "x".repeat(kib * 1024) }).to_string())
}

async fn count(driver: &SqliteDriver) -> usize {
    driver
        .executor()
        .job_list(&JobListParams {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .expect("list jobs")
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
        .len()
}

fn fetch_params(client: &str) -> JobGetAvailableParams {
    JobGetAvailableParams {
        queue: "default".to_owned(),
        max: 10,
        client_id: client.to_owned(),
        now: None,
        limit: None,
        rate: None,
    }
}

#[tokio::test]
async fn read_only_file_refuses_writes_and_keeps_its_jobs() {
    let file = TestFile::new().await;
    file.driver
        .executor()
        .job_insert_many(&[job("{}".to_owned()), job("{}".to_owned())])
        .await
        .unwrap();
    let url = format!("sqlite://{}?mode=ro", file.path);
    let reader = SqliteDriver::open(&url)
        .await
        .expect("a read-only file opens");
    assert_eq!(count(&reader).await, 2, "reads work");

    let client = Client::builder(reader.clone()).build().unwrap();
    let err = client
        .insert(Payload { blob: "x".into() }, None)
        .await
        .expect_err("an insert into a read-only file fails");
    assert_eq!(
        SqliteFault::of(&err),
        Some(SqliteFault::ReadOnly),
        "{err:?}"
    );

    let err = reader
        .executor()
        .job_get_available(&fetch_params("reader"))
        .await
        .expect_err("a fetch from a read-only file fails");
    assert!(matches!(err, DriverError::Database(_)), "{err:?}");
    assert_eq!(SqliteFault::of(&err), Some(SqliteFault::ReadOnly));
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "the database is read-only"
    );

    // Nothing changed: both jobs are still available to a writer.
    let rows = file
        .driver
        .executor()
        .job_get_available(&fetch_params("writer"))
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.attempt == 1));
}

#[tokio::test]
async fn read_only_file_without_writers_still_reads() {
    let file = TestFile::new().await;
    file.driver
        .executor()
        .job_insert_many(&[job("{}".to_owned())])
        .await
        .unwrap();
    let path = file.path.clone();
    // The last writer closing removes the WAL files a read-only connection cannot create.
    file.driver.pool().close().await;
    let reader = SqliteDriver::open(&format!("sqlite://{path}?mode=ro"))
        .await
        .expect("a read-only file opens");
    assert_eq!(count(&reader).await, 1);
    drop(file);
}

#[tokio::test]
async fn a_file_that_is_no_database_is_a_typed_error() {
    let dir = TempDir::new();
    let path = dir.file("garbage.db");
    std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
    let err = SqliteDriver::open(&path)
        .await
        .expect_err("garbage is no database");
    assert_eq!(SqliteFault::of(&err), Some(SqliteFault::Corrupt), "{err:?}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        vec![0x5a; 64 * 1024],
        "the file is left as it was"
    );
}

#[tokio::test]
async fn damaged_pages_are_a_typed_error() {
    let file = TestFile::new().await;
    let jobs: Vec<JobInsertParams> = (0..300).map(|_| big_job(1)).collect();
    file.driver.executor().job_insert_many(&jobs).await.unwrap();
    let path = file.path.clone();
    // Closing the last connection checkpoints the WAL into the file.
    file.driver.pool().close().await;
    let len = std::fs::metadata(&path).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    // Keep the first pages (the header and the schema), ruin the rest.
    f.seek(SeekFrom::Start(8 * 4096)).unwrap();
    f.write_all(&vec![0xff; (len - 8 * 4096) as usize]).unwrap();
    f.sync_all().unwrap();
    drop(f);

    // The damage shows when the schema is read (opening) or when a job page is read.
    let err = match SqliteDriver::open(&path).await {
        Err(err) => err,
        Ok(driver) => driver
            .executor()
            .job_list(&JobListParams {
                limit: 10_000,
                ..Default::default()
            })
            .await
            .expect_err("reading ruined pages fails"),
    };
    assert_eq!(SqliteFault::of(&err), Some(SqliteFault::Corrupt), "{err:?}");
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "the database file is corrupt or is not a database"
    );
    drop(file);
}

#[tokio::test]
async fn full_disk_fails_whole_batches_and_loses_no_job() {
    let file = TestFile::new().await;
    let page_count: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(file.driver.pool())
        .await
        .unwrap();
    // A pool whose connections may grow the file by a few pages only: SQLite reports
    // SQLITE_FULL exactly as on a full disk.
    let options = SqliteDriver::connect_options(&file.path)
        .unwrap()
        .pragma("max_page_count", (page_count + 8).to_string());
    let full = SqliteDriver::open_with(options).await.unwrap();

    let mut stored = 0;
    let err = loop {
        match full
            .executor()
            .job_insert_many(&[big_job(3), big_job(3)])
            .await
        {
            Ok(rows) => stored += rows.len(),
            Err(err) => break err,
        }
        assert!(stored < 1_000, "the page limit never hit");
    };
    assert_eq!(SqliteFault::of(&err), Some(SqliteFault::Full), "{err:?}");
    assert!(err.to_string().contains("database operation failed"));
    assert_eq!(
        count(&file.driver).await,
        stored,
        "a failed batch stores nothing"
    );

    let client = Client::builder(full.clone()).build().unwrap();
    let err = client
        .insert(
            Payload {
                blob: "y".repeat(64 * 1024),
            },
            None,
        )
        .await
        .expect_err("an insert into a full file fails");
    assert_eq!(SqliteFault::of(&err), Some(SqliteFault::Full));

    // A running job whose outcome cannot be stored stays running at its attempt, for the
    // completer to retry and the rescuer to find: it is not lost.
    let running = file
        .driver
        .executor()
        .job_get_available(&JobGetAvailableParams {
            max: 1,
            ..fetch_params("worker")
        })
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
        .remove(0);
    let outcome = JobOutcome::Errored {
        error: AttemptError {
            at: running.attempted_at.unwrap(),
            attempt: 1,
            error: "e".repeat(256 * 1024),
            trace: String::new(),
        },
        retry_at: jiff::Timestamp::now(),
        discard: false,
    };
    let complete = JobCompleteParams {
        id: running.id,
        attempt: running.attempt,
        outcome,
        metadata_merge: None,
    };
    let err = full
        .executor()
        .job_complete_many(std::slice::from_ref(&complete))
        .await
        .expect_err("no room for the error");
    assert_eq!(SqliteFault::of(&err), Some(SqliteFault::Full));
    let row = file
        .driver
        .executor()
        .job_get_by_id(running.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, JobState::Running);
    assert_eq!(row.attempt, running.attempt);
    // With room again, the same outcome is stored.
    let done = file
        .driver
        .executor()
        .job_complete_many(&[complete])
        .await
        .unwrap();
    assert_eq!(done.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_the_busy_timeout_is_a_retryable_error() {
    let file = TestFile::new().await;
    let options = SqliteDriver::connect_options(&file.path)
        .unwrap()
        .busy_timeout(Duration::from_millis(50));
    let impatient = SqliteDriver::open_with(options).await.unwrap();

    // Another process holds the write lock.
    let mut holder = file.driver.pool().acquire().await.unwrap();
    holder.execute("BEGIN IMMEDIATE").await.unwrap();
    let err = impatient
        .executor()
        .job_insert_many(&[job("{}".to_owned())])
        .await
        .expect_err("the lock is held");
    assert!(err.is_connection(), "retrying may succeed: {err:?}");
    assert_eq!(SqliteFault::of(&err), Some(SqliteFault::Busy));
    holder.execute("ROLLBACK").await.unwrap();
    drop(holder);

    impatient
        .executor()
        .job_insert_many(&[job("{}".to_owned())])
        .await
        .expect("the insert works once the lock is released");
    assert_eq!(
        count(&file.driver).await,
        1,
        "the failed insert stored nothing"
    );
    assert_eq!(file.driver.name(), "sqlite");
}
