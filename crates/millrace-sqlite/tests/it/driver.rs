//! The SQLite driver on real files: migrations both ways, the verbs the conformance suite
//! leaves out, schemas as attached databases, and several pools (processes) on one file.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::{TempDir, TestFile};
use jiff::{SignedDuration, Timestamp};
use millrace::{MigrateOpts, Migrator};
use millrace_driver::{
    Driver, Executor, JobCompleteParams, JobDeleteFinalizedParams, JobGetAvailableParams,
    JobInsertParams, JobOutcome, LeaderParams, LeaderTable, Listener, PersistentClaimParams,
    PersistentReleaseParams, Schema, Topic,
};
use millrace_sqlite::SqliteDriver;
use millrace_types::{AttemptError, JobId, JobState, UniqueStates};
use sqlx::{AssertSqlSafe, Row, SqlitePool};

/// An error and its sources, one per line.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(&format!("\n  caused by: {e}"));
        source = e.source();
    }
    text
}

/// Params for one plain available job on the default queue, as the conformance suite makes
/// them.
fn job(kind: &str) -> JobInsertParams {
    millrace_test::driver::job(kind, "default")
}

async fn insert(driver: &SqliteDriver, jobs: &[JobInsertParams]) -> Vec<JobId> {
    driver
        .executor()
        .job_insert_many(jobs)
        .await
        .expect("insert")
        .into_iter()
        .map(|r| r.job.id)
        .collect()
}

async fn fetch(driver: &SqliteDriver, client: &str, max: i32) -> Vec<millrace_types::JobRow> {
    driver
        .executor()
        .job_get_available(&JobGetAvailableParams {
            queue: "default".to_owned(),
            max,
            client_id: client.to_owned(),
            now: None,
            limit: None,
            rate: None,
        })
        .await
        .expect("fetch")
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
}

/// The user tables of the file, by name.
async fn tables(pool: &SqlitePool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn columns(pool: &SqlitePool, table: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
        .bind(table)
        .fetch_all(pool)
        .await
        .unwrap()
}

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

#[tokio::test]
async fn leader_election_follows_river() {
    let file = TestFile::new().await;
    let d = &file.driver;
    for table in [LeaderTable::River, LeaderTable::Millrace] {
        let params = |id: &str, ttl_ms: u64| LeaderParams {
            table,
            leader_id: id.to_owned(),
            ttl: Duration::from_millis(ttl_ms),
        };
        let won = d
            .executor()
            .leader_attempt_elect(&params("a", 300))
            .await
            .unwrap()
            .expect("the first client wins");
        assert_eq!(won.leader_id, "a");
        assert!(won.expires_at > won.elected_at);
        assert!(
            d.executor()
                .leader_attempt_elect(&params("b", 300))
                .await
                .unwrap()
                .is_none()
        );
        let kept = d
            .executor()
            .leader_attempt_reelect(&params("a", 5_000), won.elected_at)
            .await
            .unwrap()
            .expect("the leader extends its lease");
        assert!(kept.expires_at > won.expires_at);
        assert!(
            d.executor()
                .leader_attempt_reelect(&params("b", 5_000), won.elected_at)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            d.executor().leader_get(table).await.unwrap(),
            Some(kept.clone())
        );
        assert!(d.executor().leader_resign(table, "a").await.unwrap());
        assert!(!d.executor().leader_resign(table, "a").await.unwrap());
        // An expired lease goes to the next client.
        let short = d
            .executor()
            .leader_attempt_elect(&params("a", 1))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let next = d
            .executor()
            .leader_attempt_elect(&params("b", 5_000))
            .await
            .unwrap()
            .expect("an expired leader is replaced");
        assert_eq!(next.leader_id, "b");
        assert!(
            d.executor()
                .leader_attempt_reelect(&params("a", 5_000), short.elected_at)
                .await
                .unwrap()
                .is_none()
        );
        d.executor().leader_resign(table, "b").await.unwrap();
    }
}

#[tokio::test]
async fn resigning_river_leadership_is_announced() {
    let file = TestFile::new().await;
    let d = &file.driver;
    let mut listener = d.listener().await.unwrap();
    listener.listen(Topic::Leadership).await.unwrap();
    let params = LeaderParams {
        table: LeaderTable::River,
        leader_id: "a".to_owned(),
        ttl: Duration::from_secs(5),
    };
    d.executor().leader_attempt_elect(&params).await.unwrap();
    d.executor()
        .leader_resign(LeaderTable::River, "a")
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(n.topic, Topic::Leadership);
    let payload: serde_json::Value = serde_json::from_str(&n.payload).unwrap();
    assert_eq!(payload["action"], "resigned");
    assert_eq!(payload["leader_id"], "a");
}

#[tokio::test]
async fn heartbeats_expire_and_stuck_jobs_spare_live_clients() {
    let file = TestFile::new().await;
    let d = &file.driver;
    d.executor()
        .client_heartbeat("alive", Duration::from_secs(60))
        .await
        .unwrap();
    d.executor()
        .client_heartbeat("dying", Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        d.executor().client_get_expired(10).await.unwrap(),
        ["dying"]
    );

    insert(d, &[job("a"), job("b"), job("c")]).await;
    let alive = fetch(d, "alive", 1).await.remove(0);
    let dying = fetch(d, "dying", 1).await.remove(0);
    let stranger = fetch(d, "river_client", 1).await.remove(0);
    let of_dying = d
        .executor()
        .job_get_running_of_clients(&["dying".to_owned()], 10)
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    assert_eq!(
        of_dying.iter().map(|j| j.id).collect::<Vec<_>>(),
        [dying.id]
    );

    let horizon = Timestamp::now() + SignedDuration::from_secs(1);
    let stuck: HashSet<JobId> = d
        .executor()
        .job_get_stuck(horizon, 10)
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(
        stuck,
        HashSet::from([dying.id, stranger.id]),
        "live clients' jobs are spared"
    );
    assert!(!stuck.contains(&alive.id));

    assert_eq!(
        d.executor()
            .client_delete(&["dying".to_owned()])
            .await
            .unwrap(),
        1
    );
    assert!(
        d.executor()
            .client_get_expired(10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn finalized_jobs_and_idle_queues_are_cleaned() {
    let file = TestFile::new().await;
    let d = &file.driver;
    insert(d, &[job("a"), job("b")]).await;
    let rows = fetch(d, "c", 2).await;
    for row in &rows {
        d.executor()
            .job_complete_many(&[JobCompleteParams {
                id: row.id,
                attempt: row.attempt,
                outcome: JobOutcome::Completed,
                metadata_merge: None,
            }])
            .await
            .unwrap();
    }
    let keep_all = JobDeleteFinalizedParams {
        completed_before: None,
        cancelled_before: None,
        discarded_before: None,
        max: 100,
    };
    assert_eq!(
        d.executor().job_delete_finalized(&keep_all).await.unwrap(),
        0
    );
    let soon = Timestamp::now() + SignedDuration::from_secs(1);
    let one = JobDeleteFinalizedParams {
        completed_before: Some(soon),
        max: 1,
        ..keep_all.clone()
    };
    assert_eq!(d.executor().job_delete_finalized(&one).await.unwrap(), 1);
    assert_eq!(d.executor().job_delete_finalized(&one).await.unwrap(), 1);
    assert_eq!(d.executor().job_delete_finalized(&one).await.unwrap(), 0);

    d.executor().queue_create_or_touch("old").await.unwrap();
    let gone = d
        .executor()
        .queue_delete_expired(Timestamp::now() + SignedDuration::from_secs(1), 10)
        .await
        .unwrap();
    assert_eq!(gone, ["old"]);
    assert!(d.executor().queue_get("old").await.unwrap().is_none());

    for index in ["river_job_kind", "river_job_unique_idx"] {
        d.executor().index_reindex(index).await.unwrap();
    }
    assert!(d.executor().index_reindex("bad name;").await.is_err());
}

#[tokio::test]
async fn periodic_next_runs_are_compare_and_set() {
    let file = TestFile::new().await;
    let d = &file.driver;
    let first: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    let second: Timestamp = "2030-01-01T01:00:00.5Z".parse().unwrap();
    assert!(
        d.executor()
            .periodic_job_set_next("p", None, first)
            .await
            .unwrap()
    );
    assert!(
        !d.executor()
            .periodic_job_set_next("p", None, second)
            .await
            .unwrap(),
        "exists"
    );
    assert!(
        !d.executor()
            .periodic_job_set_next("p", Some(second), second)
            .await
            .unwrap(),
        "another client moved it"
    );
    assert!(
        d.executor()
            .periodic_job_set_next("p", Some(first), second)
            .await
            .unwrap()
    );
    let stored = d
        .executor()
        .periodic_job_get(&["p".to_owned(), "missing".to_owned()])
        .await
        .unwrap();
    assert_eq!(stored, [("p".to_owned(), second)]);
}

#[tokio::test]
async fn notifications_are_cleaned_after_five_minutes() {
    let file = TestFile::new().await;
    let d = &file.driver;
    sqlx::query(
        "INSERT INTO river_notification (created_at, topic, payload) \
         VALUES (strftime('%Y-%m-%d %H:%M:%f', 'now', '-10 minutes'), 'river_insert', '{}')",
    )
    .execute(d.pool())
    .await
    .unwrap();
    d.executor()
        .notify_many(&[(Topic::Insert, r#"{"queue":"a"}"#.to_owned())])
        .await
        .unwrap();
    let left: Vec<String> = sqlx::query_scalar("SELECT payload FROM river_notification")
        .fetch_all(d.pool())
        .await
        .unwrap();
    assert_eq!(left, [r#"{"queue":"a"}"#]);
}

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
