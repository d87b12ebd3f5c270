//! Administering jobs and queues, and what a worker records while it runs (issue 8): job lists
//! by every filter, bulk deletes, job and queue updates, job output and metadata, insert-only
//! clients. Shared with the SQLite driver: `crates/millrace-sqlite/tests/it/main.rs` compiles
//! this file against its own `fixture`.

use std::time::Duration;

use millrace::{
    Client, Error, InsertOpts, JOB_LIST_MAX_LIMIT, Job, JobArgs, JobId, JobListParams, JobRow,
    JobState, JobUpdateParams, QueueConfig, QueueUpdateParams, WorkError, Worker, Workers,
};
use millrace_driver::{Driver as _, Executor as _, JobGetAvailableParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::fixture::{D, TestDb, begin};

mod output;
mod queues;

/// The longest a test waits for what it expects.
const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize)]
struct Note {
    n: i64,
}

impl JobArgs for Note {
    const KIND: &'static str = "note";
}

/// Marks `id` running, as a client's fetch does.
async fn fetch_running(driver: &D, id: JobId) -> JobRow {
    let rows = driver
        .executor()
        .job_get_available(&JobGetAvailableParams {
            queue: millrace::QUEUE_DEFAULT.to_owned(),
            max: 100,
            client_id: "elsewhere".to_owned(),
            now: None,
            limit: None,
            rate: None,
        })
        .await
        .unwrap();
    rows.into_iter()
        .map(Result::unwrap)
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("job {id} fetched"))
}

async fn insert(client: &Client<D>, n: i64, opts: InsertOpts) -> JobId {
    client.insert(Note { n }, Some(opts)).await.unwrap().job.id
}

fn ids(jobs: &[JobRow]) -> Vec<JobId> {
    jobs.iter().map(|j| j.id).collect()
}

/// Works `note` jobs without looking at them.
struct NoteWorker;

impl Worker for NoteWorker {
    type Args = Note;

    async fn work(&self, _job: Job<Note>) -> Result<(), WorkError> {
        Ok(())
    }
}

fn started_builder(db: &TestDb, workers: Workers) -> millrace::ClientBuilder<D> {
    Client::builder(db.driver())
        .workers(workers)
        .queue(millrace::QUEUE_DEFAULT, QueueConfig::new())
        .fetch_cooldown(Duration::from_millis(10))
        .fetch_poll_interval(Duration::from_millis(100))
}

#[tokio::test]
async fn job_list_filters_by_ids_priorities_tags_and_metadata() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let a = insert(
        &client,
        1,
        InsertOpts::new()
            .priority(2)
            .tags(["red", "big"])
            .metadata(json!({ "tenant": 7, "owner": { "team": "core", "ids": [1, 2] } })),
    )
    .await;
    let b = insert(
        &client,
        2,
        InsertOpts::new()
            .priority(3)
            .tags(["red"])
            .metadata(json!({ "tenant": 7, "owner": { "team": "edge" } })),
    )
    .await;
    let c = insert(
        &client,
        3,
        InsertOpts::new()
            .priority(2)
            .metadata(json!({ "tenant": 8 })),
    )
    .await;
    let list = |params: JobListParams| {
        let client = client.clone();
        async move { ids(&client.job_list(params).await.unwrap().jobs) }
    };
    assert_eq!(list(JobListParams::new().ids([c, a])).await, [a, c]);
    assert_eq!(list(JobListParams::new().priorities([3])).await, [b]);
    assert_eq!(list(JobListParams::new().tags(["red"])).await, [a, b]);
    assert_eq!(
        list(JobListParams::new().tags(["red", "big"])).await,
        [a],
        "a job must carry every tag"
    );
    assert_eq!(
        list(JobListParams::new().metadata(json!({ "tenant": 7 }))).await,
        [a, b]
    );
    assert_eq!(
        list(JobListParams::new().metadata(json!({ "owner": { "ids": [2] } }))).await,
        [a],
        "containment reaches into nested objects and arrays"
    );
    assert_eq!(
        list(
            JobListParams::new()
                .priorities([2])
                .metadata(json!({ "tenant": 8 }))
        )
        .await,
        [c]
    );
    assert_eq!(
        list(JobListParams::new().kinds(["note"]).ids([b]).tags(["red"])).await,
        [b]
    );
}

#[tokio::test]
async fn job_list_pages_by_cursor_both_ways() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let mut all = Vec::new();
    for n in 0..5 {
        all.push(insert(&client, n, InsertOpts::new().tags(["paged"])).await);
    }
    insert(&client, 99, InsertOpts::new()).await;
    for descending in [false, true] {
        let mut params = Some(JobListParams::new().tags(["paged"]).limit(2));
        if descending {
            params = params.map(JobListParams::descending);
        }
        let mut pages = Vec::new();
        while let Some(p) = params {
            let page = client.job_list(p).await.unwrap();
            pages.push(ids(&page.jobs));
            params = page.next;
        }
        let mut expected = all.clone();
        if descending {
            expected.reverse();
        }
        assert_eq!(
            pages,
            [
                expected[0..2].to_vec(),
                expected[2..4].to_vec(),
                expected[4..].to_vec()
            ],
            "descending: {descending}; the filter holds on every page"
        );
    }
}

#[tokio::test]
async fn job_list_bounds_its_limit_and_checks_the_metadata_filter() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    for limit in [0, -1, JOB_LIST_MAX_LIMIT + 1] {
        assert!(
            matches!(
                client.job_list(JobListParams::new().limit(limit)).await,
                Err(Error::InvalidArgument(_))
            ),
            "limit {limit}"
        );
    }
    client
        .job_list(JobListParams::new().limit(JOB_LIST_MAX_LIMIT))
        .await
        .unwrap();
    assert!(matches!(
        client
            .job_list(JobListParams::new().metadata(json!(["not", "an", "object"])))
            .await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn job_delete_many_refuses_an_empty_filter_unless_asked_and_spares_running_jobs() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let running = insert(&client, 0, InsertOpts::new()).await;
    fetch_running(&db.driver(), running).await;
    let red = insert(&client, 1, InsertOpts::new().tags(["red"])).await;
    let blue = insert(&client, 2, InsertOpts::new().tags(["blue"])).await;
    let other = insert(&client, 3, InsertOpts::new()).await;

    let refused = client.job_delete_many(JobListParams::new()).await;
    assert!(
        matches!(refused, Err(Error::InvalidArgument(ref m)) if m.contains("unfiltered")),
        "{refused:?}"
    );
    assert_eq!(
        client
            .job_list(JobListParams::new())
            .await
            .unwrap()
            .jobs
            .len(),
        4
    );

    let deleted = client
        .job_delete_many(JobListParams::new().tags(["red"]))
        .await
        .unwrap()
        .jobs;
    assert_eq!(ids(&deleted), [red]);
    let deleted = client
        .job_delete_many(JobListParams::new().unfiltered().descending())
        .await
        .unwrap()
        .jobs;
    assert_eq!(
        ids(&deleted),
        [other, blue],
        "every job but the running one, newest first"
    );
    let left = client.job_list(JobListParams::new()).await.unwrap().jobs;
    assert_eq!(ids(&left), [running]);
    assert_eq!(left[0].state, JobState::Running);
    assert!(matches!(
        client
            .job_delete_many(JobListParams::new().unfiltered().limit(0))
            .await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn job_delete_many_tx_rolled_back_leaves_the_rows() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let a = insert(&client, 1, InsertOpts::new().queue("old")).await;
    let b = insert(&client, 2, InsertOpts::new().queue("old")).await;
    let mut tx = begin(&db).await;
    let deleted = client
        .job_delete_many_tx(&mut tx, JobListParams::new().queues(["old"]))
        .await
        .unwrap()
        .jobs;
    assert_eq!(ids(&deleted), [a, b]);
    tx.rollback().await.unwrap();
    assert_eq!(
        ids(&client
            .job_list(JobListParams::new().queues(["old"]))
            .await
            .unwrap()
            .jobs),
        [a, b]
    );
    let mut tx = begin(&db).await;
    client
        .job_delete_many_tx(&mut tx, JobListParams::new().ids([a]))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(
        client.job_get(a).await,
        Err(Error::JobNotFound(_))
    ));
}

#[tokio::test]
async fn job_update_merges_metadata_and_its_tx_twin_follows_the_transaction() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let id = insert(
        &client,
        1,
        InsertOpts::new().metadata(json!({ "keep": 1, "nested": { "a": 1, "b": 2 } })),
    )
    .await;
    let updated = client
        .job_update(
            id,
            JobUpdateParams::new().metadata(json!({ "nested": { "a": 9 }, "note": "checked" })),
        )
        .await
        .unwrap();
    let expected = json!({ "keep": 1, "nested": { "a": 9 }, "note": "checked" });
    assert_eq!(updated.metadata, expected, "top-level keys are replaced");
    assert_eq!(client.job_get(id).await.unwrap().metadata, expected);

    let mut tx = begin(&db).await;
    let in_tx = client
        .job_update_tx(
            &mut tx,
            id,
            JobUpdateParams::new().metadata(json!({ "tx": 1 })),
        )
        .await
        .unwrap();
    assert_eq!(in_tx.metadata["tx"], 1);
    tx.rollback().await.unwrap();
    assert_eq!(client.job_get(id).await.unwrap().metadata, expected);
    let mut tx = begin(&db).await;
    client
        .job_update_tx(
            &mut tx,
            id,
            JobUpdateParams::new().metadata(json!({ "tx": 2 })),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(client.job_get(id).await.unwrap().metadata["tx"], 2);

    assert!(matches!(
        client
            .job_update(JobId(i64::MAX), JobUpdateParams::new())
            .await,
        Err(Error::JobNotFound(_))
    ));
    assert!(matches!(
        client
            .job_update(id, JobUpdateParams::new().metadata(json!("text")))
            .await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn an_insert_only_client_inserts_and_administers_but_cannot_start() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let id = insert(&client, 1, InsertOpts::new()).await;
    assert_eq!(
        client
            .job_list(JobListParams::new())
            .await
            .unwrap()
            .jobs
            .len(),
        1
    );
    client
        .job_update(id, JobUpdateParams::new().metadata(json!({ "seen": true })))
        .await
        .unwrap();
    client
        .queue_update(
            millrace::QUEUE_DEFAULT,
            QueueUpdateParams::new().metadata(json!({ "owner": "ops" })),
        )
        .await
        .unwrap();
    client.queue_pause(millrace::QUEUE_DEFAULT).await.unwrap();
    client.queue_resume(millrace::QUEUE_DEFAULT).await.unwrap();
    assert_eq!(
        client.job_cancel(id).await.unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(
        client
            .job_delete_many(JobListParams::new().states([JobState::Cancelled]))
            .await
            .unwrap()
            .jobs
            .len(),
        1
    );
    assert!(matches!(client.start().await, Err(Error::NoWorkers)));
}
