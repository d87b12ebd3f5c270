//! Conformance checks of the hot path: fetching jobs, starting one by id, and storing each
//! outcome under its attempt's fence.

use jiff::{SignedDuration, Timestamp};
use millrace_driver::{
    Driver, Executor, JobCancelParams, JobCompleteParams, JobInsertParams, JobOutcome,
};
use millrace_types::{JobId, JobRow, JobState, UniqueStates};

use super::{
    CLIENT, DriverFixture, attempt_error, complete, fetch, get, in_secs, insert, job, running,
};

/// A fetch takes available, due jobs of its queue only, in priority, time and id order, at
/// most `max`, and marks them running for the client.
pub async fn fetch_takes_due_jobs_in_order<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut low = job("low", "default");
    low.priority = 4;
    let mut high = job("high", "default");
    high.priority = 1;
    let mut future = job("future", "default");
    future.state = JobState::Scheduled;
    future.scheduled_at = Some(in_secs(3600));
    let other_queue = job("other", "elsewhere");
    insert(&d, &[low, job("mid", "default"), high, future, other_queue]).await;
    let rows = fetch(&d, "default", 2).await;
    let mut kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["high", "mid"], "priority 1 jobs first, at most max");
    for row in &rows {
        assert_eq!(row.state, JobState::Running);
        assert_eq!(row.attempt, 1);
        assert!(row.attempted_at.is_some());
        assert_eq!(row.attempted_by, [CLIENT]);
    }
    let rest = fetch(&d, "default", 10).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].kind, "low");
    assert!(
        fetch(&d, "default", 10).await.is_empty(),
        "scheduled jobs wait"
    );
    // A fetched row is the stored row, unique key and mask, tags and metadata included.
    let mut full = job("full", "full");
    full.tags = vec!["one".to_owned()];
    full.metadata = r#"{"m":1}"#.to_owned();
    full.unique_key = Some(vec![1, 2, 3]);
    full.unique_states = Some(UniqueStates::DEFAULT);
    insert(&d, &[full]).await;
    let fetched = fetch(&d, "full", 1).await;
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].unique_states, Some(UniqueStates::DEFAULT));
    for row in rows.iter().chain(&rest).chain(&fetched) {
        assert_eq!(*row, get(&d, row.id).await, "job {}", row.kind);
    }
}

/// Two fetches at once never take the same job.
pub async fn concurrent_fetches_take_disjoint_jobs<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let jobs: Vec<JobInsertParams> = (0..200).map(|_| job("many", "default")).collect();
    insert(&d, &jobs).await;
    let (a, b) = tokio::join!(fetch(&d, "default", 120), fetch(&d, "default", 120));
    let mut ids: Vec<JobId> = a.iter().chain(&b).map(|r| r.id).collect();
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "no job fetched twice");
    assert_eq!(total, 200);
}

/// `attempted_by` keeps the last 100 client ids.
pub async fn attempted_by_keeps_the_last_hundred<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let row = running(&d, "default").await;
    let mut current = row;
    for _ in 0..105 {
        complete(&d, &current, JobOutcome::Returned).await;
        current = fetch(&d, "default", 1).await.remove(0);
    }
    assert_eq!(current.attempted_by.len(), 100);
}

/// Completion records each outcome as River does.
pub async fn completion_records_each_outcome<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();

    let ok = running(&d, "default").await;
    assert_eq!(complete(&d, &ok, JobOutcome::Completed).await, [ok.id]);
    let ok = get(&d, ok.id).await;
    assert_eq!(ok.state, JobState::Completed);
    assert!(ok.finalized_at.is_some());

    let retry = running(&d, "default").await;
    let later = in_secs(600);
    let error = attempt_error(&retry, "boom");
    complete(
        &d,
        &retry,
        JobOutcome::Errored {
            error: error.clone(),
            retry_at: later,
            discard: false,
        },
    )
    .await;
    let retry = get(&d, retry.id).await;
    assert_eq!(retry.state, JobState::Retryable);
    assert_eq!(retry.errors, [error]);
    assert_eq!(retry.attempt, 1);
    assert!(retry.finalized_at.is_none());
    assert!(retry.scheduled_at.duration_since(later).abs() < SignedDuration::from_millis(1));

    let soon = running(&d, "default").await;
    complete(
        &d,
        &soon,
        JobOutcome::Errored {
            error: attempt_error(&soon, "x"),
            retry_at: in_secs(2),
            discard: false,
        },
    )
    .await;
    assert_eq!(
        get(&d, soon.id).await.state,
        JobState::Available,
        "a retry within 5 s is available"
    );

    let discard = running(&d, "default").await;
    complete(
        &d,
        &discard,
        JobOutcome::Errored {
            error: attempt_error(&discard, "last"),
            retry_at: later,
            discard: true,
        },
    )
    .await;
    let discard = get(&d, discard.id).await;
    assert_eq!(discard.state, JobState::Discarded);
    assert!(discard.finalized_at.is_some());

    let cancel = running(&d, "default").await;
    complete(
        &d,
        &cancel,
        JobOutcome::Cancelled {
            error: attempt_error(&cancel, "stop"),
        },
    )
    .await;
    let cancel = get(&d, cancel.id).await;
    assert_eq!(cancel.state, JobState::Cancelled);
    assert_eq!(cancel.errors.len(), 1);

    let snooze = running(&d, "default").await;
    complete(&d, &snooze, JobOutcome::Snoozed { until: later }).await;
    let snooze = get(&d, snooze.id).await;
    assert_eq!(snooze.state, JobState::Scheduled);
    assert_eq!(snooze.attempt, 0, "a snooze gives the attempt back");
    assert_eq!(snooze.metadata["snoozes"], 1);
    assert!(snooze.errors.is_empty());

    let returned = running(&d, "default").await;
    complete(&d, &returned, JobOutcome::Returned).await;
    let returned = get(&d, returned.id).await;
    assert_eq!(returned.state, JobState::Available);
    assert_eq!(returned.attempt, 0);
    assert!(returned.scheduled_at <= Timestamp::now() + SignedDuration::from_secs(1));
}

/// A completion applies only while the job runs at the same attempt.
pub async fn completion_is_fenced<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let row = running(&d, "default").await;
    let mut stale = row.clone();
    stale.attempt = row.attempt + 1;
    assert!(
        complete(&d, &stale, JobOutcome::Completed).await.is_empty(),
        "other attempt"
    );
    complete(&d, &row, JobOutcome::Returned).await;
    assert!(
        complete(&d, &row, JobOutcome::Completed).await.is_empty(),
        "no longer running"
    );
    assert_eq!(get(&d, row.id).await.state, JobState::Available);
}

/// In one batch, each completion is fenced by its own attempt: jobs at different attempts
/// are stored together, and a stale attempt among them is left running.
pub async fn completion_batch_fences_each_attempt<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let first = running(&d, "batch").await;
    // A second job errors, comes back at once and runs again, at attempt 2.
    let second = running(&d, "batch").await;
    complete(
        &d,
        &second,
        JobOutcome::Errored {
            error: attempt_error(&second, "again"),
            retry_at: in_secs(-1),
            discard: false,
        },
    )
    .await;
    let mut rerun = fetch(&d, "batch", 10).await;
    assert_eq!(rerun.len(), 1, "the errored job is due again");
    let second = rerun.remove(0);
    assert_eq!(second.attempt, 2);
    let third = running(&d, "batch").await;
    let params = |row: &JobRow, attempt: i16| JobCompleteParams {
        id: row.id,
        attempt,
        outcome: JobOutcome::Completed,
        metadata_merge: None,
    };
    let mut stored: Vec<JobId> = d
        .executor()
        .job_complete_many(&[
            params(&first, 1),
            params(&second, 2),
            // Stale: the third job runs at attempt 1.
            params(&third, 2),
        ])
        .await
        .expect("complete")
        .into_iter()
        .map(|c| c.id)
        .collect();
    stored.sort();
    assert_eq!(stored, [first.id, second.id]);
    assert_eq!(get(&d, first.id).await.state, JobState::Completed);
    assert_eq!(get(&d, second.id).await.state, JobState::Completed);
    assert_eq!(get(&d, third.id).await.state, JobState::Running);
}

/// A job whose cancel was requested while running ends cancelled instead of retrying,
/// snoozing or returning.
pub async fn cancel_requested_turns_retry_into_cancel<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    for outcome in ["retry", "snooze", "return"] {
        let row = running(&d, "default").await;
        let cancelled = d
            .executor()
            .job_cancel(&JobCancelParams {
                id: row.id,
                now: None,
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            cancelled.state,
            JobState::Running,
            "a running job keeps running"
        );
        assert!(cancelled.metadata.get("cancel_attempted_at").is_some());
        let outcome = match outcome {
            "retry" => JobOutcome::Errored {
                error: attempt_error(&row, "after cancel"),
                retry_at: in_secs(600),
                discard: false,
            },
            "snooze" => JobOutcome::Snoozed {
                until: in_secs(600),
            },
            _ => JobOutcome::Returned,
        };
        complete(&d, &row, outcome).await;
        let row = get(&d, row.id).await;
        assert_eq!(row.state, JobState::Cancelled);
        assert!(row.finalized_at.is_some());
    }
}

/// A job can be started by id, as the test harness does; running and finalized jobs cannot.
pub async fn start_by_id_runs_one_job<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut scheduled = job("s", "default");
    scheduled.state = JobState::Scheduled;
    scheduled.scheduled_at = Some(in_secs(3600));
    let rows = insert(&d, &[scheduled]).await;
    let started = d
        .executor()
        .job_start_by_id(rows[0].id, CLIENT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(started.state, JobState::Running);
    assert_eq!(started.attempt, 1);
    assert!(
        d.executor()
            .job_start_by_id(rows[0].id, CLIENT)
            .await
            .unwrap()
            .is_none()
    );
}
