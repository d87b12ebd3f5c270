//! A running client's control of its jobs: remote cancel, soft and hard stop, the
//! completion fence, and pausing a queue.

use std::time::Duration;

use millrace::{Client, Event, EventKind, InsertOpts, JobState, QueueConfig};
use sqlx::AssertSqlSafe;

use crate::fixture::{TestDb, run_attempt_elsewhere, settle_before_pause};

use super::{DEADLINE, Running, Script, Scripted, ScriptedWorker, builder, start, wait_for_state};

#[tokio::test]
async fn remote_cancel_reaches_a_running_job() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b.job_timeout(None)).await;
    let id = rt.insert(Script::WaitForToken, None).await;
    wait_for_state(&rt.client, id, JobState::Running).await;
    // From another client, as an admin tool would.
    let admin = Client::builder(db.driver()).build().unwrap();
    admin.job_cancel(id).await.unwrap();
    let (kind, _) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobCancelled);
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Cancelled);
    assert!(row.metadata.get("cancel_attempted_at").is_some());
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn soft_stop_lets_running_jobs_finish() {
    let db = TestDb::new().await;
    let rt = start(&db, |b| b).await;
    let id = rt.insert(Script::Ignore { millis: 300 }, None).await;
    wait_for_state(&rt.client, id, JobState::Running).await;
    rt.client.stop().await.unwrap();
    assert_eq!(
        rt.client.job_get(id).await.unwrap().state,
        JobState::Completed
    );
}

#[tokio::test]
async fn hard_stop_returns_jobs_without_spending_an_attempt() {
    let db = TestDb::new().await;
    let rt = start(&db, |b| b.job_timeout(None)).await;
    let cooperative = rt.insert(Script::WaitForToken, None).await;
    let stubborn = rt.insert(Script::Ignore { millis: 60_000 }, None).await;
    wait_for_state(&rt.client, cooperative, JobState::Running).await;
    wait_for_state(&rt.client, stubborn, JobState::Running).await;
    tokio::time::timeout(DEADLINE, rt.client.stop_and_cancel())
        .await
        .expect("hard stop ends within the grace period")
        .unwrap();
    for id in [cooperative, stubborn] {
        let row = rt.client.job_get(id).await.unwrap();
        assert_eq!(row.state, JobState::Available, "job {id}");
        assert_eq!(row.attempt, 0, "job {id} keeps its attempt");
        assert!(row.errors.is_empty());
    }
}

#[tokio::test]
async fn stop_timeout_escalates_to_cancel() {
    let db = TestDb::new().await;
    let rt = start(&db, |b| b.job_timeout(None)).await;
    let id = rt.insert(Script::WaitForToken, None).await;
    wait_for_state(&rt.client, id, JobState::Running).await;
    tokio::time::timeout(
        DEADLINE,
        rt.client.stop_with_timeout(Duration::from_millis(200)),
    )
    .await
    .expect("stop ends")
    .unwrap();
    assert_eq!(
        rt.client.job_get(id).await.unwrap().state,
        JobState::Available
    );
}

#[tokio::test]
async fn completion_is_fenced_on_the_attempt() {
    let db = TestDb::new().await;
    let rt = start(&db, |b| b.job_timeout(None)).await;
    let id = rt.insert(Script::Ignore { millis: 500 }, None).await;
    wait_for_state(&rt.client, id, JobState::Running).await;
    // A rescuer takes the job for stuck and another client runs it as attempt 2 meanwhile.
    run_attempt_elsewhere(&db, id).await;
    rt.client.stop().await.unwrap();
    // The late worker's completion of attempt 1 must not overwrite attempt 2.
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Running);
    assert_eq!(row.attempt, 2);
}

// Issue 13, item 4: a completion the fence kept out used to be dropped without a word.
#[tokio::test]
async fn fenced_out_completion_is_reported_and_leaves_the_row() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b.job_timeout(None)).await;
    let id = rt.insert(Script::Ignore { millis: 500 }, None).await;
    wait_for_state(&rt.client, id, JobState::Running).await;
    // A rescue takes the job and another client runs it as attempt 2 while the worker runs.
    run_attempt_elsewhere(&db, id).await;
    let wait = async {
        loop {
            match rt.events.recv().await.unwrap() {
                Event::CompletionsFencedOut { jobs } => return jobs,
                Event::Job { kind, job, .. } if job.id == id => {
                    panic!("a fenced-out completion reported as {kind:?}")
                }
                _ => {}
            }
        }
    };
    let jobs = tokio::time::timeout(DEADLINE, wait)
        .await
        .expect("the fenced-out completion is reported");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].id, id);
    assert_eq!(
        jobs[0].attempt, 1,
        "the event names the attempt that was fenced out"
    );
    rt.client.stop().await.unwrap();
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(
        row.state,
        JobState::Running,
        "left as the other side left it"
    );
    assert_eq!(row.attempt, 2);
    assert_eq!(row.attempted_by.last().map(String::as_str), Some("other"));
}

#[tokio::test]
async fn paused_queue_is_not_fetched_until_resumed() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    settle_before_pause(&db).await;
    rt.client.queue_pause("default").await.unwrap();
    let id = rt.insert(Script::Succeed, None).await;
    // Prove the pause holds by completing a job of another queue after the insert.
    rt.client
        .queue_add("other", QueueConfig::new())
        .await
        .unwrap();
    let other = rt
        .insert(Script::Succeed, Some(InsertOpts::new().queue("other")))
        .await;
    rt.outcome(other).await;
    assert_eq!(
        rt.client.job_get(id).await.unwrap().state,
        JobState::Available
    );
    let queue = db.schema().qualify("river_queue");
    let paused: Option<bool> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT paused_at IS NOT NULL FROM {queue} WHERE name = 'default'"
    )))
    .fetch_optional(db.pool())
    .await
    .unwrap();
    assert_eq!(paused, Some(true));
    rt.client.queue_resume("default").await.unwrap();
    assert_eq!(rt.outcome(id).await.0, EventKind::JobCompleted);
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_started_on_a_paused_queue_takes_nothing_from_it() {
    let db = TestDb::new().await;
    let worker = ScriptedWorker::default();
    let client = builder(&db, worker.clone())
        .queue("other", QueueConfig::new())
        .build()
        .expect("build");
    let events = client.subscribe();
    client.queue_pause("default").await.unwrap();
    let id = client
        .insert(
            Scripted {
                script: Script::Succeed,
            },
            None,
        )
        .await
        .unwrap()
        .job
        .id;
    client.start().await.expect("start");
    let mut rt = Running {
        client,
        events,
        worker,
    };
    // A job of another queue completing shows the producers are running; the paused
    // queue's job must still be waiting, not taken by a first fetch before the first refresh.
    let other = rt
        .insert(Script::Succeed, Some(InsertOpts::new().queue("other")))
        .await;
    rt.outcome(other).await;
    assert_eq!(
        rt.client.job_get(id).await.unwrap().state,
        JobState::Available
    );
    rt.client.queue_resume("default").await.unwrap();
    assert_eq!(rt.outcome(id).await.0, EventKind::JobCompleted);
    rt.client.stop().await.unwrap();
}
