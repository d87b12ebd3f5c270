//! Job administration: get, list, cancel, retry and delete, with their `_tx` twins.

use jiff::{Timestamp, ToSpan};
use millrace::{
    Client, Error, InsertManyParams, InsertOpts, JOB_LIST_MAX_LIMIT, JobId, JobListParams, JobRow,
    JobState,
};
use millrace_postgres::PgDriver;
use millrace_test::TestDb;
use serde_json::json;

use crate::common::{Notifications, Other, Simple, client, set_attempts, set_state};

async fn insert(client: &Client<PgDriver>, name: &str) -> JobRow {
    client.insert(Simple::new(name), None).await.unwrap().job
}

fn ids(jobs: &[JobRow]) -> Vec<i64> {
    jobs.iter().map(|j| j.id.0).collect()
}

/// The `cancel_attempted_at` a cancel recorded, as a time.
fn cancel_attempted_at(job: &JobRow) -> Timestamp {
    job.metadata["cancel_attempted_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no cancel_attempted_at string in {}", job.metadata))
        .parse()
        .expect("cancel_attempted_at is an RFC 3339 time")
}

#[tokio::test]
async fn job_get_returns_the_row_or_job_not_found() {
    let db = TestDb::new().await;
    let client = client(&db);
    let job = insert(&client, "a").await;

    assert_eq!(client.job_get(job.id).await.unwrap(), job);
    let mut conn = db.pool().acquire().await.unwrap();
    assert_eq!(client.job_get_tx(&mut conn, job.id).await.unwrap(), job);

    let missing = JobId(job.id.0 + 1_000);
    assert!(matches!(client.job_get(missing).await, Err(Error::JobNotFound(id)) if id == missing));
    assert!(matches!(
        client.job_get_tx(&mut conn, missing).await,
        Err(Error::JobNotFound(id)) if id == missing
    ));
}

#[tokio::test]
async fn job_list_filters_by_state_kind_and_queue() {
    let db = TestDb::new().await;
    let client = client(&db);
    let in_queue = |q: &str| InsertOpts::new().queue(q);

    let results = client
        .insert_many([
            InsertManyParams::new(Simple::new("a")).opts(in_queue("one")),
            InsertManyParams::new(Simple::new("b")).opts(in_queue("two")),
            InsertManyParams::new(Other { name: "c".into() }).opts(in_queue("one")),
            InsertManyParams::new(Other { name: "d".into() })
                .opts(in_queue("two").scheduled_at(Timestamp::now() + 1.hour())),
            InsertManyParams::new(Simple::new("e")).opts(in_queue("one")),
        ])
        .await
        .unwrap();
    let id = |i: usize| results[i].job.id.0;
    set_state(&db, results[4].job.id, JobState::Completed).await;

    let list = |params: JobListParams| {
        let client = client.clone();
        async move { ids(&client.job_list(params).await.unwrap().jobs) }
    };
    assert_eq!(
        list(JobListParams::new()).await,
        [id(0), id(1), id(2), id(3), id(4)]
    );
    assert_eq!(
        list(JobListParams::new().kinds(["other"])).await,
        [id(2), id(3)]
    );
    assert_eq!(
        list(JobListParams::new().queues(["one"])).await,
        [id(0), id(2), id(4)]
    );
    assert_eq!(
        list(JobListParams::new().states([JobState::Scheduled, JobState::Completed])).await,
        [id(3), id(4)]
    );
    assert_eq!(
        list(
            JobListParams::new()
                .states([JobState::Available])
                .kinds(["simple"])
                .queues(["one"])
        )
        .await,
        [id(0)]
    );
    assert_eq!(
        list(
            JobListParams::new()
                .kinds(["simple", "other"])
                .queues(["two"])
        )
        .await,
        [id(1), id(3)]
    );
    assert!(
        list(JobListParams::new().kinds(["nobody"]))
            .await
            .is_empty()
    );
    assert!(
        list(JobListParams::new().states([JobState::Running]))
            .await
            .is_empty()
    );

    let mut tx = db.tx().await;
    let page = client
        .job_list_tx(&mut tx, JobListParams::new().queues(["two"]))
        .await
        .unwrap();
    assert_eq!(ids(&page.jobs), [id(1), id(3)]);
}

#[tokio::test]
async fn job_list_pages_by_cursor_in_both_directions() {
    let db = TestDb::new().await;
    let client = client(&db);
    let results = client
        .insert_many((0..7).map(|i| InsertManyParams::new(Simple::new(format!("j{i}")))))
        .await
        .unwrap();
    let all: Vec<i64> = results.iter().map(|r| r.job.id.0).collect();

    let mut pages = Vec::new();
    let mut params = Some(JobListParams::new().limit(3));
    while let Some(p) = params {
        let page = client.job_list(p).await.unwrap();
        pages.push(ids(&page.jobs));
        params = page.next;
    }
    assert_eq!(
        pages,
        [all[0..3].to_vec(), all[3..6].to_vec(), all[6..7].to_vec()]
    );

    let mut pages = Vec::new();
    let mut params = Some(JobListParams::new().descending().limit(3));
    while let Some(p) = params {
        let page = client.job_list(p).await.unwrap();
        pages.push(ids(&page.jobs));
        params = page.next;
    }
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(
        pages,
        [
            reversed[0..3].to_vec(),
            reversed[3..6].to_vec(),
            reversed[6..7].to_vec()
        ]
    );

    // A last page that is exactly full is followed by an empty one without a next.
    let page = client
        .job_list(JobListParams::new().limit(7))
        .await
        .unwrap();
    assert_eq!(ids(&page.jobs), all);
    let next = client
        .job_list(page.next.expect("a full page has a next"))
        .await
        .unwrap();
    assert!(next.jobs.is_empty());
    assert!(next.next.is_none());

    // The cursor works with filters and from an explicit id.
    let page = client
        .job_list(JobListParams::new().after(JobId(all[4])).limit(10))
        .await
        .unwrap();
    assert_eq!(ids(&page.jobs), all[5..]);
    assert!(page.next.is_none());
    let page = client
        .job_list(JobListParams::new().descending().after(JobId(all[2])))
        .await
        .unwrap();
    assert_eq!(ids(&page.jobs), [all[1], all[0]]);
}

#[tokio::test]
async fn job_list_limit_is_bounded() {
    let db = TestDb::new().await;
    let client = client(&db);
    insert(&client, "a").await;

    for limit in [0, -1, JOB_LIST_MAX_LIMIT + 1] {
        let err = client
            .job_list(JobListParams::new().limit(limit))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
        assert!(err.to_string().contains(&limit.to_string()), "{err}");
    }
    for limit in [1, JOB_LIST_MAX_LIMIT] {
        let page = client
            .job_list(JobListParams::new().limit(limit))
            .await
            .unwrap();
        assert_eq!(page.jobs.len(), 1);
    }
    assert_eq!(JobListParams::new().limit, 100);
}

#[tokio::test]
async fn cancelling_a_job_that_is_not_running_finalizes_it() {
    let db = TestDb::new().await;
    let client = client(&db);
    let available = insert(&client, "a").await;
    let scheduled = client
        .insert(
            Simple::new("s"),
            Some(
                InsertOpts::new()
                    .scheduled_at(Timestamp::now() + 1.hour())
                    .metadata(json!({ "keep": 1 })),
            ),
        )
        .await
        .unwrap()
        .job;
    let before = Timestamp::now() - 5.seconds();

    let cancelled = client.job_cancel(available.id).await.unwrap();
    assert_eq!(cancelled.id, available.id);
    assert_eq!(cancelled.state, JobState::Cancelled);
    let finalized_at = cancelled.finalized_at.expect("finalized_at is set");
    assert!(finalized_at >= before);
    assert_eq!(cancel_attempted_at(&cancelled), finalized_at);
    assert_eq!(client.job_get(available.id).await.unwrap(), cancelled);

    let cancelled = client.job_cancel(scheduled.id).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(cancelled.metadata["keep"], 1, "other metadata is kept");
    cancel_attempted_at(&cancelled);
}

#[tokio::test]
async fn cancelling_a_running_job_marks_it_and_tells_its_client() {
    let db = TestDb::new().await;
    let mut control = Notifications::listen(&db, "river_control").await;
    let client = client(&db);
    let job = client
        .insert(Simple::new("r"), Some(InsertOpts::new().queue("busy")))
        .await
        .unwrap()
        .job;
    set_state(&db, job.id, JobState::Running).await;

    let marked = client.job_cancel(job.id).await.unwrap();
    assert_eq!(marked.state, JobState::Running);
    assert!(marked.finalized_at.is_none());
    cancel_attempted_at(&marked);
    assert_eq!(client.job_get(job.id).await.unwrap(), marked);

    assert_eq!(
        control.next().await,
        json!({ "action": "cancel", "job_id": job.id.0, "queue": "busy" })
    );
}

#[tokio::test]
async fn cancel_tx_takes_effect_and_notifies_at_commit() {
    let db = TestDb::new().await;
    let mut control = Notifications::listen(&db, "river_control").await;
    let client = client(&db);
    let idle = insert(&client, "idle").await;
    let running = insert(&client, "running").await;
    set_state(&db, running.id, JobState::Running).await;

    // Rolled back: nothing changes and nobody is told.
    let mut tx = db.tx().await;
    assert_eq!(
        client.job_cancel_tx(&mut tx, idle.id).await.unwrap().state,
        JobState::Cancelled
    );
    client.job_cancel_tx(&mut tx, running.id).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(client.job_get(idle.id).await.unwrap(), idle);
    assert!(
        client
            .job_get(running.id)
            .await
            .unwrap()
            .metadata
            .get("cancel_attempted_at")
            .is_none()
    );

    let mut tx = db.tx().await;
    client.job_cancel_tx(&mut tx, idle.id).await.unwrap();
    client.job_cancel_tx(&mut tx, running.id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        client.job_get(idle.id).await.unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(
        control.next().await,
        json!({ "action": "cancel", "job_id": running.id.0, "queue": "default" }),
        "the rolled-back cancel sent nothing, so this is the first notification"
    );
}

#[tokio::test]
async fn cancelling_a_finalized_job_leaves_it_unchanged() {
    let db = TestDb::new().await;
    let client = client(&db);
    for state in [
        JobState::Completed,
        JobState::Discarded,
        JobState::Cancelled,
    ] {
        let job = insert(&client, state.as_str()).await;
        set_state(&db, job.id, state).await;
        let before = client.job_get(job.id).await.unwrap();

        let after = client.job_cancel(job.id).await.unwrap();
        assert_eq!(after, before, "{state}");
        assert_eq!(client.job_get(job.id).await.unwrap(), before, "{state}");
    }
}

#[tokio::test]
async fn cancelling_a_missing_job_is_job_not_found() {
    let db = TestDb::new().await;
    let client = client(&db);
    let missing = JobId(i64::MAX);
    assert!(
        matches!(client.job_cancel(missing).await, Err(Error::JobNotFound(id)) if id == missing)
    );
    let mut tx = db.tx().await;
    assert!(matches!(
        client.job_cancel_tx(&mut tx, missing).await,
        Err(Error::JobNotFound(_))
    ));
}

#[tokio::test]
async fn retrying_a_discarded_job_gives_it_one_more_attempt() {
    let db = TestDb::new().await;
    let client = client(&db);
    let job = client
        .insert(
            Simple::new("d"),
            Some(
                InsertOpts::new()
                    .max_attempts(3)
                    .scheduled_at(Timestamp::now() + 1.hour()),
            ),
        )
        .await
        .unwrap()
        .job;
    set_attempts(&db, job.id, 3, 3).await;
    set_state(&db, job.id, JobState::Discarded).await;
    let before = Timestamp::now() - 5.seconds();

    let retried = client.job_retry(job.id).await.unwrap();
    assert_eq!(retried.state, JobState::Available);
    assert_eq!(retried.max_attempts, 4);
    assert_eq!(retried.attempt, 3);
    assert!(retried.finalized_at.is_none());
    assert!(
        retried.scheduled_at >= before && retried.scheduled_at <= Timestamp::now() + 5.seconds()
    );
    assert_eq!(client.job_get(job.id).await.unwrap(), retried);
}

#[tokio::test]
async fn retrying_keeps_max_attempts_when_attempts_remain() {
    let db = TestDb::new().await;
    let client = client(&db);
    let completed = insert(&client, "c").await;
    set_attempts(&db, completed.id, 1, 25).await;
    set_state(&db, completed.id, JobState::Completed).await;
    let scheduled = client
        .insert(
            Simple::new("s"),
            Some(InsertOpts::new().scheduled_at(Timestamp::now() + 1.hour())),
        )
        .await
        .unwrap()
        .job;

    let retried = client.job_retry(completed.id).await.unwrap();
    assert_eq!(retried.state, JobState::Available);
    assert_eq!(retried.max_attempts, 25);
    assert!(retried.finalized_at.is_none());

    let retried = client.job_retry(scheduled.id).await.unwrap();
    assert_eq!(retried.state, JobState::Available);
    assert!(retried.scheduled_at < scheduled.scheduled_at);
}

#[tokio::test]
async fn retrying_a_running_job_leaves_it_unchanged() {
    let db = TestDb::new().await;
    let client = client(&db);
    let job = insert(&client, "r").await;
    set_state(&db, job.id, JobState::Running).await;
    let before = client.job_get(job.id).await.unwrap();

    assert_eq!(client.job_retry(job.id).await.unwrap(), before);
    assert_eq!(client.job_get(job.id).await.unwrap(), before);
}

#[tokio::test]
async fn retry_tx_applies_at_commit() {
    let db = TestDb::new().await;
    let client = client(&db);
    let job = insert(&client, "d").await;
    set_attempts(&db, job.id, 25, 25).await;
    set_state(&db, job.id, JobState::Discarded).await;
    let discarded = client.job_get(job.id).await.unwrap();

    let mut tx = db.tx().await;
    assert_eq!(
        client.job_retry_tx(&mut tx, job.id).await.unwrap().state,
        JobState::Available
    );
    tx.rollback().await.unwrap();
    assert_eq!(client.job_get(job.id).await.unwrap(), discarded);

    let mut tx = db.tx().await;
    client.job_retry_tx(&mut tx, job.id).await.unwrap();
    tx.commit().await.unwrap();
    let retried = client.job_get(job.id).await.unwrap();
    assert_eq!(retried.state, JobState::Available);
    assert_eq!(retried.max_attempts, 26);

    let missing = JobId(i64::MAX);
    assert!(
        matches!(client.job_retry(missing).await, Err(Error::JobNotFound(id)) if id == missing)
    );
    let mut tx = db.tx().await;
    assert!(matches!(
        client.job_retry_tx(&mut tx, missing).await,
        Err(Error::JobNotFound(_))
    ));
}

#[tokio::test]
async fn delete_removes_a_job_that_is_not_running() {
    let db = TestDb::new().await;
    let client = client(&db);
    let available = insert(&client, "a").await;
    let completed = insert(&client, "c").await;
    set_state(&db, completed.id, JobState::Completed).await;
    let completed = client.job_get(completed.id).await.unwrap();

    assert_eq!(client.job_delete(available.id).await.unwrap(), available);
    assert!(matches!(
        client.job_get(available.id).await,
        Err(Error::JobNotFound(_))
    ));
    assert_eq!(client.job_delete(completed.id).await.unwrap(), completed);
    assert!(matches!(
        client.job_delete(available.id).await,
        Err(Error::JobNotFound(id)) if id == available.id
    ));
}

#[tokio::test]
async fn delete_refuses_a_running_job() {
    let db = TestDb::new().await;
    let client = client(&db);
    let job = insert(&client, "r").await;
    set_state(&db, job.id, JobState::Running).await;
    let running = client.job_get(job.id).await.unwrap();

    let err = client.job_delete(job.id).await.unwrap_err();
    assert!(
        matches!(err, Error::JobRunning(id) if id == job.id),
        "{err:?}"
    );
    assert_eq!(err.to_string(), format!("job {} is running", job.id));
    let mut tx = db.tx().await;
    assert!(matches!(
        client.job_delete_tx(&mut tx, job.id).await,
        Err(Error::JobRunning(_))
    ));
    drop(tx);
    assert_eq!(client.job_get(job.id).await.unwrap(), running);
}

#[tokio::test]
async fn delete_tx_applies_at_commit() {
    let db = TestDb::new().await;
    let client = client(&db);
    let job = insert(&client, "a").await;

    let mut tx = db.tx().await;
    assert_eq!(client.job_delete_tx(&mut tx, job.id).await.unwrap(), job);
    assert!(matches!(
        client.job_get_tx(&mut tx, job.id).await,
        Err(Error::JobNotFound(_))
    ));
    tx.rollback().await.unwrap();
    assert_eq!(client.job_get(job.id).await.unwrap(), job);

    let mut tx = db.tx().await;
    client.job_delete_tx(&mut tx, job.id).await.unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(
        client.job_get(job.id).await,
        Err(Error::JobNotFound(_))
    ));
    let mut tx = db.tx().await;
    assert!(matches!(
        client.job_delete_tx(&mut tx, job.id).await,
        Err(Error::JobNotFound(_))
    ));
}
