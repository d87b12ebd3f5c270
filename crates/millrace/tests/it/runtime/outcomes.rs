//! Every outcome of an attempt as River records it: completion, failure and retry, discard,
//! cancel, snooze, panic, timeout, and the errors of unknown kinds and undecodable args.

use std::sync::atomic::Ordering;
use std::time::Duration;

use millrace::{Client, Event, EventKind, InsertOpts, JobArgs, JobId, JobState};
use serde::Serialize;

use crate::fixture::{TestDb, set_metadata_raw};

use super::{DEADLINE, Script, Scripted, start};

#[tokio::test]
async fn successful_job_completes() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    let id = rt.insert(Script::Succeed, None).await;
    let (kind, _) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobCompleted);
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Completed);
    assert_eq!(row.attempt, 1);
    assert!(row.finalized_at.is_some());
    assert_eq!(row.attempted_by, vec![rt.client.id().to_owned()]);
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn failed_job_is_retried_with_an_attempt_error() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    let id = rt.insert(Script::Fail, None).await;
    let (kind, _) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobFailed);
    let row = rt.client.job_get(id).await.unwrap();
    // River's first retry comes after about 1 s: within 5 s, so straight to available.
    assert_eq!(row.state, JobState::Available);
    assert_eq!(row.errors.len(), 1);
    assert_eq!(row.errors[0].attempt, 1);
    assert_eq!(row.errors[0].error, "scripted failure");
    assert_eq!(Some(row.errors[0].at), row.attempted_at);
    // It runs again once due, as attempt 2.
    let (_, second) = rt.outcome(id).await;
    assert_eq!(second.attempt, 2);
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn an_error_holding_nul_is_recorded_and_its_batch_completes() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    // Inserted together so that they are fetched, and completed, in one batch.
    let bad = rt.insert(Script::FailWithNul, None).await;
    let good = rt.insert(Script::Succeed, None).await;
    let (kind, _) = rt.outcome(bad).await;
    assert_eq!(kind, EventKind::JobFailed);
    let row = rt.client.job_get(bad).await.unwrap();
    assert_eq!(row.errors.len(), 1);
    assert_eq!(row.errors[0].error, "bad\u{FFFD}byte");
    assert!(row.metadata.get("p").is_none());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let row = rt.client.job_get(good).await.unwrap();
        if row.state == JobState::Completed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job beside it is {:?}",
            row.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn last_attempt_failure_discards() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    let id = rt
        .insert(Script::Fail, Some(InsertOpts::new().max_attempts(1)))
        .await;
    let (kind, job) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobFailed);
    assert_eq!(job.state, JobState::Discarded);
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Discarded);
    assert!(row.finalized_at.is_some());
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn cancel_error_cancels_the_job() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    let id = rt.insert(Script::Cancel, None).await;
    let (kind, _) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobCancelled);
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Cancelled);
    assert_eq!(row.errors.last().unwrap().error, "scripted cancel");
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn snooze_gives_the_attempt_back_and_counts_snoozes() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    let id = rt.insert(Script::Snooze { millis: 10 }, None).await;
    for n in 1..=3 {
        let (kind, _) = rt.outcome(id).await;
        assert_eq!(kind, EventKind::JobSnoozed);
        let row = rt.client.job_get(id).await.unwrap();
        assert!(row.errors.is_empty(), "a snooze records no error");
        assert!(row.metadata["snoozes"].as_i64().unwrap() >= n);
        assert!(row.attempt <= 1, "snoozing never spends attempts");
    }
    rt.client.stop().await.unwrap();
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(row.attempt, 0);
}

#[tokio::test]
async fn long_snooze_schedules_the_job() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    let id = rt.insert(Script::Snooze { millis: 60_000 }, None).await;
    rt.outcome(id).await;
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Scheduled);
    assert_eq!(row.attempt, 0);
    assert_eq!(row.metadata["snoozes"], 1);
    rt.client.stop().await.unwrap();
}

// Issue 13, item 2: a snooze on metadata that is not an object used to append to it on
// every snooze (PostgreSQL) or leave it unchanged (SQLite), so the count never grew.
#[tokio::test]
async fn snooze_on_metadata_that_is_not_an_object_keeps_it_and_counts() {
    let db = TestDb::new().await;
    let foreign = ["[]", r#""str""#, "5", "null", r#"[{"snoozes": 7}]"#];
    let inserter = Client::builder(db.driver()).build().unwrap();
    let mut ids = Vec::new();
    for raw in foreign {
        let id = inserter
            .insert(
                Scripted {
                    script: Script::Snooze { millis: 10 },
                },
                None,
            )
            .await
            .unwrap()
            .job
            .id;
        set_metadata_raw(&db, id, raw).await;
        ids.push(id);
    }
    let mut rt = start(&db, |b| b).await;
    let mut snoozed = std::collections::HashMap::<JobId, usize>::new();
    let wait = async {
        while ids
            .iter()
            .any(|id| snoozed.get(id).copied().unwrap_or(0) < 3)
        {
            if let Event::Job { kind, job, .. } = rt.events.recv().await.unwrap() {
                assert_eq!(kind, EventKind::JobSnoozed, "job {} {kind:?}", job.id);
                *snoozed.entry(job.id).or_default() += 1;
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .expect("every job snoozes three times");
    rt.client.stop().await.unwrap();
    for (id, raw) in ids.iter().zip(foreign) {
        let row = rt.client.job_get(*id).await.unwrap();
        let old: serde_json::Value = serde_json::from_str(raw).unwrap();
        let object = row.metadata.as_object().expect("metadata became an object");
        assert_eq!(object.len(), 2, "{raw}: {}", row.metadata);
        assert_eq!(object["millrace:replaced_metadata"], old, "{raw}");
        assert!(
            object["snoozes"].as_i64().unwrap() >= 3,
            "{raw}: {}",
            row.metadata
        );
        assert_eq!(row.attempt, 0, "{raw}: snoozing spends no attempt");
        assert!(row.errors.is_empty());
    }
}

// Issue 13, item 2: a snooze past year 9999 used to run the job again at once.
#[tokio::test]
async fn snooze_past_year_9999_fails_the_attempt() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    let ten_thousand_years = 10_000 * 366 * 86_400 * 1_000;
    let id = rt
        .insert(
            Script::Snooze {
                millis: ten_thousand_years,
            },
            Some(InsertOpts::new().max_attempts(1)),
        )
        .await;
    let (kind, _) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobFailed);
    rt.client.stop().await.unwrap();
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Discarded);
    assert_eq!(row.attempt, 1, "a refused snooze spends its attempt");
    assert_eq!(row.errors.len(), 1);
    assert!(
        row.errors[0].error.contains("snooze") && row.errors[0].error.contains("9999"),
        "{}",
        row.errors[0].error
    );
    assert!(row.metadata.get("snoozes").is_none());
}

#[tokio::test]
async fn panic_is_recorded_with_a_trace_and_the_client_lives_on() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    let id = rt.insert(Script::Panic, None).await;
    let (kind, _) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobFailed);
    let row = rt.client.job_get(id).await.unwrap();
    let error = row.errors.last().unwrap();
    assert_eq!(error.error, "panic: scripted panic");
    assert!(!error.trace.is_empty(), "a panic records a stack trace");
    // The client still works jobs.
    let ok = rt.insert(Script::Succeed, None).await;
    assert_eq!(rt.outcome(ok).await.0, EventKind::JobCompleted);
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn timeout_fires_the_token_and_records_an_error() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b.job_timeout(Some(Duration::from_millis(100)))).await;
    let id = rt.insert(Script::WaitForToken, None).await;
    let (kind, _) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobFailed);
    let row = rt.client.job_get(id).await.unwrap();
    assert!(
        row.errors[0].error.contains("timed out"),
        "{:?}",
        row.errors
    );
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn timeout_aborts_work_that_ignores_its_token() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b.job_timeout(Some(Duration::from_millis(100)))).await;
    let id = rt.insert(Script::Ignore { millis: 60_000 }, None).await;
    let (kind, _) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobFailed);
    let row = rt.client.job_get(id).await.unwrap();
    assert!(row.errors[0].error.contains("timed out"));
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_kind_is_an_error_with_a_clear_message() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    #[derive(Serialize)]
    struct Stranger {}
    impl JobArgs for Stranger {
        const KIND: &'static str = "stranger";
    }
    let id = rt.client.insert(Stranger {}, None).await.unwrap().job.id;
    rt.outcome(id).await;
    let row = rt.client.job_get(id).await.unwrap();
    assert!(
        row.errors[0]
            .error
            .contains("no worker is registered for kind \"stranger\"")
    );
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn undecodable_args_are_an_error_with_a_clear_message() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    #[derive(Serialize)]
    struct Wrong {
        script: i64,
    }
    impl JobArgs for Wrong {
        const KIND: &'static str = "scripted";
    }
    let id = rt
        .client
        .insert(Wrong { script: 5 }, None)
        .await
        .unwrap()
        .job
        .id;
    rt.outcome(id).await;
    let row = rt.client.job_get(id).await.unwrap();
    assert!(
        row.errors[0]
            .error
            .contains("failed to decode args of kind \"scripted\""),
        "{}",
        row.errors[0].error
    );
    assert_eq!(rt.worker.runs.load(Ordering::SeqCst), 0);
    rt.client.stop().await.unwrap();
}
