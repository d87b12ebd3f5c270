//! One SQLite file shared: schemas as attached databases, several pools (processes) fetching,
//! notifying and waiting on the write lock, and persistent instances across them.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::{TempDir, TestFile};
use jiff::{SignedDuration, Timestamp};
use millrace::{MigrateOpts, Migrator};
use millrace_driver::{
    Driver, Executor, JobInsertParams, Listener, PersistentClaimParams, PersistentReleaseParams,
    Schema, Topic,
};
use millrace_sqlite::SqliteDriver;
use millrace_types::{AttemptError, JobId, JobState};
use sqlx::AssertSqlSafe;

use super::{fetch, insert, job, tables};

#[tokio::test]
async fn schema_is_an_attached_database() {
    let dir = TempDir::new();
    let main = dir.file("app.db");
    let jobs = dir.file("jobs.db");
    let attach = format!("ATTACH DATABASE '{jobs}' AS jobs");
    let options = SqliteDriver::connect_options(&main).unwrap();
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(2)
        .after_connect(move |conn, _| {
            let attach = attach.clone();
            Box::pin(async move {
                sqlx::raw_sql(AssertSqlSafe(attach)).execute(conn).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .unwrap();
    let driver = SqliteDriver::new(pool.clone()).with_schema(Schema::new("jobs").unwrap());
    Migrator::new(driver.clone())
        .migrate_up(MigrateOpts::new())
        .await
        .unwrap();
    assert!(tables(&pool).await.is_empty(), "nothing lands in main");
    insert(&driver, &[job("attached")]).await;
    assert_eq!(fetch(&driver, "c", 10).await.len(), 1);
    let on_disk = SqliteDriver::open(&jobs).await.unwrap();
    assert!(
        tables(on_disk.pool())
            .await
            .contains(&"river_job".to_owned())
    );
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM river_job")
        .fetch_all(on_disk.pool())
        .await
        .unwrap();
    assert_eq!(kinds, ["attached"]);
    // The default schema is `main`.
    let default = SqliteDriver::new(pool).with_schema(Schema::default());
    assert_eq!(default.schema().name(), "main");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_fetch_disjoint_jobs_from_one_file() {
    let file = TestFile::new().await;
    let other = file.reopen().await;
    let jobs: Vec<JobInsertParams> = (0..400).map(|i| job(&format!("k{i}"))).collect();
    // Inserts from both pools at once, then fetches from both at once.
    let (mut exec_a, mut exec_b) = (file.driver.executor(), other.executor());
    let (a, b) = tokio::join!(
        exec_a.job_insert_many(&jobs[..200]),
        exec_b.job_insert_many(&jobs[200..])
    );
    assert_eq!(a.unwrap().len() + b.unwrap().len(), 400);
    let mut tasks = Vec::new();
    for (n, driver) in [file.driver.clone(), other.clone()]
        .into_iter()
        .cycle()
        .take(8)
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let mut taken = Vec::new();
            loop {
                let rows = fetch(&driver, &format!("client{n}"), 7).await;
                if rows.is_empty() {
                    return taken;
                }
                taken.extend(rows.into_iter().map(|r| r.id));
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let total = all.len();
    let unique: HashSet<JobId> = all.into_iter().collect();
    assert_eq!(total, 400, "every job fetched");
    assert_eq!(unique.len(), 400, "no job fetched twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_cross_pools() {
    let file = TestFile::new().await;
    let other = file.reopen().await;
    let mut listener = other.listener().await.unwrap();
    listener.listen(Topic::Insert).await.unwrap();
    // Sent before the listener existed: not replayed.
    let mut early = file.driver.listener().await.unwrap();
    early.listen(Topic::Control).await.unwrap();
    file.driver
        .executor()
        .notify_many(&[
            (
                Topic::Control,
                r#"{"action":"pause","queue":"q"}"#.to_owned(),
            ),
            (Topic::Insert, r#"{"queue":"q"}"#.to_owned()),
        ])
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(n.topic, Topic::Insert, "topics not listened to are skipped");
    assert_eq!(n.payload, r#"{"queue":"q"}"#);
    let c = tokio::time::timeout(Duration::from_secs(10), early.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(c.topic, Topic::Control);
    // A rolled-back notification is never seen.
    let mut tx = file.driver.begin().await.unwrap();
    file.driver
        .conn_executor(SqliteDriver::tx_conn(&mut tx))
        .notify_many(&[(Topic::Insert, r#"{"queue":"rolled_back"}"#.to_owned())])
        .await
        .unwrap();
    drop(tx);
    file.driver
        .executor()
        .notify_many(&[(Topic::Insert, r#"{"queue":"after"}"#.to_owned())])
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(n.payload, r#"{"queue":"after"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_write_lock_makes_others_wait_not_fail() {
    let file = TestFile::new().await;
    let other = file.reopen().await;
    let mut tx = file.driver.begin().await.unwrap();
    file.driver
        .conn_executor(SqliteDriver::tx_conn(&mut tx))
        .job_insert_many(&[job("first")])
        .await
        .unwrap();
    let waiting =
        tokio::spawn(async move { other.executor().job_insert_many(&[job("second")]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the second writer waits for the lock"
    );
    SqliteDriver::commit(tx).await.unwrap();
    let second = waiting
        .await
        .unwrap()
        .expect("the second insert succeeds once the lock frees");
    assert_eq!(second[0].job.kind, "second");
}

#[tokio::test]
async fn persistent_instances_are_claimed_renewed_and_released() {
    let file = TestFile::new().await;
    let d = &file.driver;
    let mut instance = job("pw");
    instance.queue = "persistent".to_owned();
    let id = insert(d, &[instance]).await[0];
    let claim = |client: &str, lease_ms: u64| PersistentClaimParams {
        kind: "pw".to_owned(),
        queue: "persistent".to_owned(),
        client_id: client.to_owned(),
        lease: Duration::from_millis(lease_ms),
    };
    let error = |n: i32| AttemptError {
        at: Timestamp::now(),
        attempt: n,
        error: format!("e{n}"),
        trace: String::new(),
    };
    let fence_of = |row: &millrace_types::JobRow| row.metadata["millrace:fence"].as_i64().unwrap();
    let release = |fence: i64, error: Option<AttemptError>| PersistentReleaseParams {
        id,
        fence,
        // A millisecond back: stored times round to the millisecond, possibly up.
        available_at: Timestamp::now() - SignedDuration::from_millis(1),
        error,
        keep_errors: 2,
    };

    let held = d
        .executor()
        .persistent_claim(&claim("a", 60_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (held.id, held.state, held.attempt),
        (id, JobState::Running, 1)
    );
    assert_eq!(held.attempted_by, ["a"]);
    assert_eq!(fence_of(&held), 1);
    assert!(
        d.executor()
            .persistent_claim(&claim("b", 60_000))
            .await
            .unwrap()
            .is_none()
    );
    assert!(d.executor().persistent_renew(id, 1).await.unwrap());
    assert!(
        !d.executor().persistent_renew(id, 2).await.unwrap(),
        "fenced"
    );
    assert!(
        d.executor()
            .persistent_merge_metadata(id, 1, r#"{"progress":{"done":5}}"#)
            .await
            .unwrap()
    );
    assert!(
        !d.executor()
            .persistent_merge_metadata(id, 2, "{}")
            .await
            .unwrap()
    );

    // Each failed run records its error; only the two most recent stay.
    for n in 1..=3 {
        assert!(
            d.executor()
                .persistent_release(&release(n.into(), Some(error(n.into()))))
                .await
                .unwrap()
        );
        let row = d.executor().job_get_by_id(id).await.unwrap().unwrap();
        assert_eq!((row.state, row.attempt), (JobState::Available, n));
        let claimed = d
            .executor()
            .persistent_claim(&claim("a", 60_000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.attempt, n + 1);
        assert_eq!(fence_of(&claimed), i64::from(n) + 1);
    }
    let row = d.executor().job_get_by_id(id).await.unwrap().unwrap();
    let messages: Vec<&str> = row.errors.iter().map(|e| e.error.as_str()).collect();
    assert_eq!(messages, ["e2", "e3"]);
    assert_eq!(row.metadata["progress"]["done"], 5);

    // A hand-over without an error keeps the attempt and the token: the next holder's are
    // higher, so they stay fencing tokens.
    assert!(
        d.executor()
            .persistent_release(&release(4, None))
            .await
            .unwrap()
    );
    let row = d.executor().job_get_by_id(id).await.unwrap().unwrap();
    assert_eq!((row.attempt, fence_of(&row)), (4, 4));

    // A holder that stops renewing loses the instance after its lease.
    let old = d
        .executor()
        .persistent_claim(&claim("a", 10))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let taken = d
        .executor()
        .persistent_claim(&claim("b", 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.attempt, old.attempt + 1);
    assert_eq!(fence_of(&taken), fence_of(&old) + 1);
    assert_eq!(taken.attempted_by.last().map(String::as_str), Some("b"));
    assert!(
        !d.executor()
            .persistent_renew(id, fence_of(&old))
            .await
            .unwrap()
    );
    assert!(
        !d.executor()
            .persistent_release(&release(fence_of(&old), None))
            .await
            .unwrap()
    );
}
