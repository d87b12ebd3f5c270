//! The driver conformance suite: every driver-level behaviour the client relies on, run
//! against each driver (River's `riverdrivertest`).
//!
//! A driver's tests call [`driver_conformance!`](crate::driver_conformance) with a
//! [`DriverFixture`], which expands to one `#[tokio::test]` per check, so a failure names the
//! behaviour that broke. Any change to a driver verb extends this suite.
//!
//! ```ignore
//! // crates/millrace-postgres/tests/conformance.rs
//! millrace_test::driver_conformance!(millrace_test::TestDb);
//! ```

use std::future::Future;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use millrace_driver::{
    Driver, Executor, JobCancelParams, JobCompleteParams, JobDeleteOutcome, JobGetAvailableParams,
    JobInsertParams, JobListParams, JobOutcome, JobRetryParams, JobReturnOrphansParams,
    JobScheduleParams, Listener, SequenceListParams, Topic,
};
use millrace_types::{AttemptError, JobId, JobRow, JobState, UniqueStates};

mod inspect;

pub use inspect::*;

/// A fresh, migrated database for one check, and the driver on it.
pub trait DriverFixture: Send + Sized + 'static {
    /// The driver under test.
    type Driver: Driver;

    /// A fresh database (or schema) migrated to the newest version, with empty tables.
    fn create() -> impl Future<Output = Self> + Send;

    /// The driver on it.
    fn driver(&self) -> Self::Driver;
}

impl DriverFixture for crate::TestDb {
    type Driver = millrace_postgres::PgDriver;

    async fn create() -> Self {
        crate::TestDb::new().await
    }

    fn driver(&self) -> Self::Driver {
        crate::TestDb::driver(self)
    }
}

const CLIENT: &str = "conformance-client";

/// Params for one plain available job.
pub fn job(kind: &str, queue: &str) -> JobInsertParams {
    JobInsertParams {
        args: r#"{"n":1}"#.to_owned(),
        created_at: None,
        kind: kind.to_owned(),
        max_attempts: 25,
        metadata: "{}".to_owned(),
        priority: 1,
        queue: queue.to_owned(),
        scheduled_at: None,
        state: JobState::Available,
        tags: Vec::new(),
        unique_key: None,
        unique_states: None,
    }
}

async fn insert<D: Driver>(driver: &D, jobs: &[JobInsertParams]) -> Vec<JobRow> {
    driver
        .executor()
        .job_insert_many(jobs)
        .await
        .expect("insert")
        .into_iter()
        .map(|r| r.job)
        .collect()
}

async fn fetch<D: Driver>(driver: &D, queue: &str, max: i32) -> Vec<JobRow> {
    driver
        .executor()
        .job_get_available(&JobGetAvailableParams {
            queue: queue.to_owned(),
            max,
            client_id: CLIENT.to_owned(),
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

async fn get<D: Driver>(driver: &D, id: JobId) -> JobRow {
    driver
        .executor()
        .job_get_by_id(id)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("job {id} exists"))
}

/// Inserts one job and fetches it, so it is running at attempt 1.
async fn running<D: Driver>(driver: &D, queue: &str) -> JobRow {
    insert(driver, &[job("conformance", queue)]).await;
    let mut rows = fetch(driver, queue, 1).await;
    assert_eq!(rows.len(), 1, "one job fetched");
    rows.remove(0)
}

async fn complete<D: Driver>(driver: &D, row: &JobRow, outcome: JobOutcome) -> Vec<JobId> {
    driver
        .executor()
        .job_complete_many(&[JobCompleteParams {
            id: row.id,
            attempt: row.attempt,
            outcome,
            metadata_merge: None,
        }])
        .await
        .expect("complete")
        .into_iter()
        .map(|c| c.id)
        .collect()
}

fn attempt_error(row: &JobRow, message: &str) -> AttemptError {
    AttemptError {
        at: row.attempted_at.expect("a running job has attempted_at"),
        attempt: i32::from(row.attempt),
        error: message.to_owned(),
        trace: String::new(),
    }
}

fn in_secs(secs: i64) -> Timestamp {
    Timestamp::now() + SignedDuration::from_secs(secs)
}

/// Inserted rows come back in input order with every option stored.
pub async fn insert_many_returns_rows_in_order<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut second = job("second", "q2");
    second.priority = 3;
    second.max_attempts = 7;
    second.tags = vec!["abc".to_owned(), "de_f".to_owned()];
    second.metadata = r#"{"m":true}"#.to_owned();
    second.args = r#"{"text":"tab\there \\ \"quoted\" ünï"}"#.to_owned();
    let mut third = job("third", "q3");
    third.state = JobState::Scheduled;
    third.scheduled_at = Some(in_secs(3600));
    let rows = insert(&d, &[job("first", "q1"), second, third]).await;
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["first", "second", "third"]);
    assert_eq!(rows[0].state, JobState::Available);
    assert_eq!(rows[0].attempt, 0);
    assert_eq!(rows[1].priority, 3);
    assert_eq!(rows[1].max_attempts, 7);
    assert_eq!(rows[1].tags, ["abc", "de_f"]);
    assert_eq!(rows[1].metadata["m"], true);
    assert_eq!(rows[1].args["text"], "tab\there \\ \"quoted\" ünï");
    assert_eq!(rows[2].state, JobState::Scheduled);
    assert!(rows[2].scheduled_at > Timestamp::now());
    // The rows returned are the rows stored, to the microsecond.
    for row in &rows {
        assert_eq!(*row, get(&d, row.id).await, "job {}", row.kind);
    }
    // Numbers and keys the way serde_json and the database each write them.
    let mut numbers = job("numbers", "q1");
    numbers.args =
        r#"{"b":1.50,"a":1e3,"big":123456789012345678901234567890,"d":1,"d":2}"#.to_owned();
    let mut zero = job("zero", "q1");
    zero.args = r#"{"z":-0,"f":-0.0,"date":"2024-01-05","hex":"3e4f","e":"1e3"}"#.to_owned();
    zero.metadata = r#"{"m":2E2}"#.to_owned();
    let mut plain = job("plain", "q1");
    plain.args = r#"{"n":-12,"x":0.25,"s":"\u00e9\"e1"}"#.to_owned();
    let inserted = insert(&d, &[numbers, zero, plain]).await;
    for row in &inserted {
        assert_eq!(*row, get(&d, row.id).await, "job {}", row.kind);
    }
}

/// A unique job whose key is live returns the live row unchanged, flagged as a duplicate;
/// once the live row leaves the unique states, the key is free again.
pub async fn unique_insert_reports_duplicates<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut unique = job("unique", "default");
    unique.unique_key = Some(vec![7; 32]);
    unique.unique_states = Some(UniqueStates::DEFAULT);
    let first = d
        .executor()
        .job_insert_many(&[unique.clone()])
        .await
        .unwrap();
    assert!(!first[0].unique_skipped_as_duplicate);
    let mut other_kind = unique.clone();
    other_kind.kind = "other_kind".to_owned();
    let dup = d.executor().job_insert_many(&[other_kind]).await.unwrap();
    assert!(dup[0].unique_skipped_as_duplicate);
    assert_eq!(dup[0].job.id, first[0].job.id);
    assert_eq!(
        dup[0].job.kind, "unique",
        "the live row is returned unchanged"
    );
    assert_eq!(dup[0].job.unique_key.as_deref(), Some(&[7u8; 32][..]));
    assert_eq!(dup[0].job.unique_states, Some(UniqueStates::DEFAULT));

    // Cancelled is outside the default states: the key is free again.
    d.executor()
        .job_cancel(&JobCancelParams {
            id: first[0].job.id,
            now: None,
        })
        .await
        .unwrap();
    let again = d.executor().job_insert_many(&[unique]).await.unwrap();
    assert!(!again[0].unique_skipped_as_duplicate);
    assert_ne!(again[0].job.id, first[0].job.id);
}

/// The fast path inserts and counts; its rows read back like any other.
pub async fn insert_fast_counts_rows<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut jobs: Vec<JobInsertParams> = (0..50).map(|_| job("fast", "default")).collect();
    jobs[0].args = "{\"s\":\"line\\nbreak\\ttab \\\\ back\"}".to_owned();
    jobs[1].tags = vec!["t_1".to_owned(), "t-2".to_owned()];
    jobs[2].scheduled_at = Some(in_secs(60));
    jobs[2].state = JobState::Scheduled;
    jobs[3].metadata = "{\"source\":\"fast\"}".to_owned();
    assert_eq!(d.executor().job_insert_fast(&jobs).await.unwrap(), 50);
    // Without tags or metadata in the batch, those columns take their defaults.
    let plain: Vec<JobInsertParams> = (0..3).map(|_| job("plain", "defaults")).collect();
    assert_eq!(d.executor().job_insert_fast(&plain).await.unwrap(), 3);
    let rows = d
        .executor()
        .job_list(&JobListParams {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    assert_eq!(rows.len(), 53);
    assert_eq!(rows[0].args["s"], "line\nbreak\ttab \\ back");
    assert_eq!(rows[1].tags, ["t_1", "t-2"]);
    assert_eq!(rows[2].state, JobState::Scheduled);
    assert!(rows[2].scheduled_at > Timestamp::now());
    assert_eq!(rows[3].metadata["source"], "fast");
    assert_eq!(rows[4].metadata, serde_json::json!({}));
    for row in &rows[50..] {
        assert_eq!(row.kind, "plain");
        assert!(row.tags.is_empty());
        assert_eq!(row.metadata, serde_json::json!({}));
        assert_eq!(row.state, JobState::Available);
    }
}

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

/// Cancel, retry and delete outside a run.
pub async fn admin_verbs_follow_river<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let rows = insert(&d, &[job("a", "default"), job("b", "default")]).await;
    let cancelled = d
        .executor()
        .job_cancel(&JobCancelParams {
            id: rows[0].id,
            now: None,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert!(cancelled.finalized_at.is_some());
    assert!(
        d.executor()
            .job_cancel(&JobCancelParams {
                id: JobId(i64::MAX),
                now: None
            })
            .await
            .unwrap()
            .is_none()
    );

    let retried = d
        .executor()
        .job_retry(&JobRetryParams {
            id: rows[0].id,
            now: None,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retried.state, JobState::Available);
    assert!(retried.finalized_at.is_none());

    let run = fetch(&d, "default", 10).await;
    assert_eq!(run.len(), 2);
    match d.executor().job_delete(rows[1].id).await.unwrap() {
        JobDeleteOutcome::Running(row) => assert_eq!(row.id, rows[1].id),
        other => panic!("deleting a running job must be refused, got {other:?}"),
    }
    complete(&d, &run[0], JobOutcome::Completed).await;
    match d.executor().job_delete(run[0].id).await.unwrap() {
        JobDeleteOutcome::Deleted(row) => assert_eq!(row.id, run[0].id),
        other => panic!("expected a delete, got {other:?}"),
    }
    assert_eq!(
        d.executor().job_delete(run[0].id).await.unwrap(),
        JobDeleteOutcome::NotFound
    );
}

/// Lists filter by state, kind and queue, and page by id both ways.
pub async fn list_filters_and_pages<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let rows = insert(
        &d,
        &[
            job("a", "q1"),
            job("b", "q1"),
            job("a", "q2"),
            job("c", "q2"),
        ],
    )
    .await;
    let list = |params: JobListParams| {
        let d = d.clone();
        async move {
            d.executor()
                .job_list(&params)
                .await
                .unwrap()
                .into_iter()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        }
    };
    let by_kind = list(JobListParams {
        kinds: vec!["a".into()],
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(
        by_kind.iter().map(|r| r.id).collect::<Vec<_>>(),
        [rows[0].id, rows[2].id]
    );
    let by_queue = list(JobListParams {
        queues: vec!["q2".into()],
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(by_queue.len(), 2);
    let by_state = list(JobListParams {
        states: vec![JobState::Running],
        limit: 10,
        ..Default::default()
    })
    .await;
    assert!(by_state.is_empty());
    let page = list(JobListParams {
        after_id: Some(rows[1].id),
        limit: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(page[0].id, rows[2].id);
    let desc = list(JobListParams {
        after_id: Some(rows[2].id),
        descending: true,
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(
        desc.iter().map(|r| r.id).collect::<Vec<_>>(),
        [rows[1].id, rows[0].id]
    );
}

/// Lists also filter by ids, priorities, tags (all of them) and metadata containment
/// (PostgreSQL's `@>`), each combined with the others.
pub async fn list_filters_by_ids_priorities_tags_and_metadata<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut a = job("a", "default");
    a.priority = 2;
    a.tags = vec!["red".into(), "big".into()];
    a.metadata = r#"{"tenant":7,"owner":{"team":"core","ids":[1,2,3]}}"#.to_owned();
    let mut b = job("b", "default");
    b.priority = 3;
    b.tags = vec!["red".into()];
    b.metadata = r#"{"tenant":7,"owner":{"team":"edge"}}"#.to_owned();
    let mut c = job("c", "default");
    c.priority = 2;
    c.metadata = r#"{"tenant":8}"#.to_owned();
    let rows = insert(&d, &[a, b, c]).await;
    let ids = |params: JobListParams| {
        let d = d.clone();
        async move {
            d.executor()
                .job_list(&JobListParams {
                    limit: if params.limit == 0 { 10 } else { params.limit },
                    ..params
                })
                .await
                .unwrap()
                .into_iter()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    let (a, b, c) = (rows[0].id, rows[1].id, rows[2].id);
    let by_ids = ids(JobListParams {
        ids: vec![c, a, JobId(i64::MAX)],
        ..Default::default()
    })
    .await;
    assert_eq!(by_ids, [a, c]);
    let by_priority = ids(JobListParams {
        priorities: vec![2],
        ..Default::default()
    })
    .await;
    assert_eq!(by_priority, [a, c]);
    let red = ids(JobListParams {
        tags: vec!["red".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(red, [a, b]);
    let red_and_big = ids(JobListParams {
        tags: vec!["big".into(), "red".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(red_and_big, [a], "every tag must be present");
    let contains = |json: &str| JobListParams {
        metadata_contains: Some(json.to_owned()),
        ..Default::default()
    };
    assert_eq!(ids(contains(r#"{"tenant":7}"#)).await, [a, b]);
    assert_eq!(ids(contains(r#"{"owner":{"team":"core"}}"#)).await, [a]);
    assert_eq!(ids(contains(r#"{"owner":{"ids":[3,1]}}"#)).await, [a]);
    assert_eq!(
        ids(contains(r#"{"owner":{"ids":[4]}}"#)).await,
        Vec::<JobId>::new()
    );
    assert_eq!(ids(contains("{}")).await, [a, b, c]);
    assert_eq!(
        ids(contains(r#"{"tenant":"7"}"#)).await,
        Vec::<JobId>::new()
    );
    let combined = ids(JobListParams {
        priorities: vec![2, 3],
        tags: vec!["red".into()],
        metadata_contains: Some(r#"{"owner":{"team":"edge"}}"#.to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(combined, [b]);
    let paged = ids(JobListParams {
        ids: vec![a, b, c],
        after_id: Some(c),
        descending: true,
        limit: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(paged, [b], "filters page by id like any list");
}

/// Bulk deletes take the list's filters, spare running jobs, stop at the limit and go in
/// the list's order, returning the deleted rows.
pub async fn delete_many_spares_running_jobs_in_list_order<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let jobs: Vec<JobInsertParams> = (0..6).map(|_| job("doomed", "default")).collect();
    let mut rows = insert(&d, &jobs).await;
    insert(&d, &[job("kept", "default")]).await;
    // The first is running: a bulk delete never takes it.
    let running = fetch(&d, "default", 1).await.remove(0);
    assert_eq!(running.id, rows[0].id);
    rows.remove(0);
    let params = |descending: bool, limit: i64| JobListParams {
        kinds: vec!["doomed".into()],
        descending,
        limit,
        ..Default::default()
    };
    let first = d
        .executor()
        .job_delete_many(&params(false, 2))
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    assert_eq!(
        first.iter().map(|r| r.id).collect::<Vec<_>>(),
        [rows[0].id, rows[1].id],
        "oldest first, at most the limit"
    );
    assert_eq!(first[0].kind, "doomed");
    let newest = d
        .executor()
        .job_delete_many(&params(true, 2))
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    assert_eq!(
        newest.iter().map(|r| r.id).collect::<Vec<_>>(),
        [rows[4].id, rows[3].id],
        "newest first when descending"
    );
    let rest = d
        .executor()
        .job_delete_many(&params(false, 100))
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    assert_eq!(rest.iter().map(|r| r.id).collect::<Vec<_>>(), [rows[2].id]);
    assert!(
        d.executor()
            .job_delete_many(&params(false, 100))
            .await
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
            .is_empty()
    );
    assert_eq!(get(&d, running.id).await.state, JobState::Running);
    let left = d
        .executor()
        .job_list(&JobListParams {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    let mut kinds: Vec<&str> = left.iter().map(|r| r.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["doomed", "kept"],
        "the running job and the other kind stay"
    );
}

/// A metadata update merges top-level keys, whatever the job's state, and returns the row.
pub async fn update_metadata_merges_top_level_keys<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut with_meta = job("m", "default");
    with_meta.metadata = r#"{"keep":1,"nested":{"a":1,"b":2},"gone":true}"#.to_owned();
    let row = insert(&d, &[with_meta]).await.remove(0);
    let updated = d
        .executor()
        .job_update_metadata(row.id, r#"{"nested":{"a":9},"gone":null,"new":"x"}"#)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        updated.metadata,
        serde_json::json!({ "keep": 1, "nested": { "a": 9 }, "gone": null, "new": "x" }),
        "top-level keys are replaced whole, as PostgreSQL's ||"
    );
    assert_eq!(get(&d, row.id).await.metadata, updated.metadata);
    let running = fetch(&d, "default", 1).await.remove(0);
    let while_running = d
        .executor()
        .job_update_metadata(running.id, r#"{"admin":true}"#)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(while_running.state, JobState::Running);
    assert_eq!(while_running.metadata["admin"], true);
    assert!(
        d.executor()
            .job_update_metadata(JobId(i64::MAX), "{}")
            .await
            .unwrap()
            .is_none()
    );
}

/// Queues list by name, paged after a name.
pub async fn queue_list_pages_by_name<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    for name in ["delta", "alpha", "charlie", "bravo"] {
        d.executor().queue_create_or_touch(name).await.unwrap();
    }
    let names = |after: Option<&'static str>, limit: i64| {
        let d = d.clone();
        async move {
            d.executor()
                .queue_list(after, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|q| q.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        names(None, 10).await,
        ["alpha", "bravo", "charlie", "delta"]
    );
    assert_eq!(names(None, 2).await, ["alpha", "bravo"]);
    assert_eq!(names(Some("bravo"), 2).await, ["charlie", "delta"]);
    assert!(names(Some("delta"), 2).await.is_empty());
}

/// Setting one metadata key keeps the others (creating the row if needed), removing one
/// leaves the rest, and each change is told through `river_control`.
pub async fn queue_set_metadata_key_keeps_the_other_keys<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut listener = if d.supports_listen_notify() {
        let mut listener = d.listener().await.unwrap();
        listener.listen(Topic::Control).await.unwrap();
        Some(listener)
    } else {
        None
    };
    let set = |name: &'static str, key: &'static str, value: Option<&'static str>| {
        let d = d.clone();
        async move {
            d.executor()
                .queue_set_metadata_key(name, key, value)
                .await
                .unwrap()
                .metadata
        }
    };
    assert_eq!(
        set("fresh", "concurrency", Some(r#"{"global_limit":2}"#)).await,
        serde_json::json!({"concurrency": {"global_limit": 2}}),
        "a missing row is created with the key"
    );
    assert_eq!(
        set("gone", "concurrency", None).await,
        serde_json::json!({}),
        "removing from a missing row creates it empty"
    );
    d.executor()
        .queue_update_metadata("kept", r#"{"owner":"a","concurrency":{"global_limit":1}}"#)
        .await
        .unwrap();
    assert_eq!(
        set(
            "kept",
            "concurrency",
            Some(r#"{"global_limit":3,"partition":{"by_args":["c"]}}"#)
        )
        .await,
        serde_json::json!({"owner": "a", "concurrency": {"global_limit": 3, "partition": {"by_args": ["c"]}}}),
        "the key is replaced whole and the other keys kept"
    );
    assert_eq!(
        set("kept", "concurrency", None).await,
        serde_json::json!({"owner": "a"})
    );
    assert_eq!(
        d.executor()
            .queue_get("kept")
            .await
            .unwrap()
            .unwrap()
            .metadata,
        serde_json::json!({"owner": "a"})
    );
    let Some(listener) = listener.as_mut() else {
        return;
    };
    let mut changes = Vec::new();
    while changes.len() < 5 {
        let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("a control notification in time")
            .unwrap()
            .unwrap();
        let payload: serde_json::Value = serde_json::from_str(&n.payload).unwrap();
        if payload["action"] == "metadata_changed" {
            changes.push((payload["queue"].clone(), payload["metadata"].clone()));
        }
    }
    assert_eq!(
        changes.last().unwrap(),
        &(serde_json::json!("kept"), serde_json::json!({"owner": "a"}))
    );
}

/// A queue metadata update replaces the metadata (creating the row if needed) and tells
/// every client through `river_control`.
pub async fn queue_update_metadata_notifies_control<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut listener = if d.supports_listen_notify() {
        let mut listener = d.listener().await.unwrap();
        listener.listen(Topic::Control).await.unwrap();
        Some(listener)
    } else {
        None
    };
    let created = d
        .executor()
        .queue_update_metadata("fresh", r#"{"owner":"a","n":1}"#)
        .await
        .unwrap();
    assert_eq!(created.name, "fresh");
    assert_eq!(
        created.metadata,
        serde_json::json!({ "owner": "a", "n": 1 })
    );
    assert!(created.paused_at.is_none());
    d.executor().queue_set_paused("fresh", true).await.unwrap();
    let replaced = d
        .executor()
        .queue_update_metadata("fresh", r#"{"owner":"b"}"#)
        .await
        .unwrap();
    assert_eq!(
        replaced.metadata,
        serde_json::json!({ "owner": "b" }),
        "the metadata is replaced, not merged"
    );
    assert!(replaced.paused_at.is_some(), "a pause survives the update");
    assert_eq!(replaced.created_at, created.created_at);
    assert_eq!(
        d.executor()
            .queue_get("fresh")
            .await
            .unwrap()
            .unwrap()
            .metadata,
        replaced.metadata
    );
    let Some(listener) = listener.as_mut() else {
        return;
    };
    let mut changes = Vec::new();
    while changes.len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("a control notification in time")
            .unwrap()
            .unwrap();
        assert_eq!(n.topic, Topic::Control);
        let payload: serde_json::Value = serde_json::from_str(&n.payload).unwrap();
        if payload["action"] == "metadata_changed" {
            changes.push(payload);
        }
    }
    assert_eq!(
        changes,
        [
            serde_json::json!({
                "action": "metadata_changed",
                "metadata": { "owner": "a", "n": 1 },
                "queue": "fresh",
            }),
            serde_json::json!({
                "action": "metadata_changed",
                "metadata": { "owner": "b" },
                "queue": "fresh",
            }),
        ]
    );
}

/// The scheduler makes due retryable and scheduled jobs available and leaves later ones.
pub async fn schedule_moves_due_jobs<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut due = job("due", "default");
    due.state = JobState::Scheduled;
    due.scheduled_at = Some(in_secs(-1));
    let mut later = job("later", "default");
    later.state = JobState::Scheduled;
    later.scheduled_at = Some(in_secs(3600));
    let rows = insert(&d, &[due, later]).await;
    let moved = d
        .executor()
        .job_schedule(&JobScheduleParams {
            horizon: None,
            max: 100,
        })
        .await
        .unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].id, rows[0].id);
    assert_eq!(moved[0].state, JobState::Available);
    assert_eq!(moved[0].queue, "default");
    assert_eq!(get(&d, rows[1].id).await.state, JobState::Scheduled);
}

/// A scheduled job whose unique key another live job took is discarded, as River's
/// scheduler does.
pub async fn schedule_discards_unique_conflicts<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    // Scheduled is outside this job's unique states, so a second job took the key.
    let states =
        UniqueStates::from_states([JobState::Available, JobState::Pending, JobState::Running]);
    let mut waiting = job("u", "default");
    waiting.state = JobState::Scheduled;
    waiting.scheduled_at = Some(in_secs(-1));
    waiting.unique_key = Some(vec![9; 32]);
    waiting.unique_states = Some(states);
    let mut live = waiting.clone();
    live.state = JobState::Available;
    live.scheduled_at = None;
    let rows = insert(&d, &[waiting]).await;
    insert(&d, &[live]).await;
    let moved = d
        .executor()
        .job_schedule(&JobScheduleParams {
            horizon: None,
            max: 100,
        })
        .await
        .unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].state, JobState::Discarded);
    let row = get(&d, rows[0].id).await;
    assert_eq!(row.state, JobState::Discarded);
    assert_eq!(row.metadata["unique_key_conflict"], "scheduler_discarded");
}

/// Orphans (running under the client, not held) go back to available; held jobs stay.
pub async fn return_orphans_spares_held_jobs<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    insert(&d, &[job("a", "default"), job("b", "default")]).await;
    let rows = fetch(&d, "default", 2).await;
    let returned = d
        .executor()
        .job_return_orphans(&JobReturnOrphansParams {
            client_id: CLIENT.to_owned(),
            queue: "default".to_owned(),
            held: vec![rows[0].id],
        })
        .await
        .unwrap();
    assert_eq!(returned, 1);
    assert_eq!(get(&d, rows[0].id).await.state, JobState::Running);
    let orphan = get(&d, rows[1].id).await;
    assert_eq!(orphan.state, JobState::Available);
    assert_eq!(orphan.attempt, 0);
    let other_client = d
        .executor()
        .job_return_orphans(&JobReturnOrphansParams {
            client_id: "someone-else".to_owned(),
            queue: "default".to_owned(),
            held: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(other_client, 0, "another client's jobs are never touched");
}

/// Queues are created, refreshed, paused and resumed.
pub async fn queues_pause_and_resume<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let created = d.executor().queue_create_or_touch("alpha").await.unwrap();
    assert!(created.paused_at.is_none());
    let touched = d.executor().queue_create_or_touch("alpha").await.unwrap();
    assert!(touched.updated_at >= created.updated_at);
    assert_eq!(
        d.executor().queue_set_paused("alpha", true).await.unwrap(),
        1
    );
    assert!(
        d.executor()
            .queue_get("alpha")
            .await
            .unwrap()
            .unwrap()
            .paused_at
            .is_some()
    );
    assert_eq!(
        d.executor().queue_set_paused("beta", true).await.unwrap(),
        1,
        "a pause creates the row"
    );
    assert_eq!(d.executor().queue_set_paused("*", false).await.unwrap(), 2);
    assert!(
        d.executor()
            .queue_get("alpha")
            .await
            .unwrap()
            .unwrap()
            .paused_at
            .is_none()
    );
    assert!(d.executor().queue_get("missing").await.unwrap().is_none());
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

/// Notifications reach a listener, on the schema's channels.
pub async fn notifications_reach_listeners<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    if !d.supports_listen_notify() {
        return;
    }
    let mut listener = d.listener().await.unwrap();
    listener.listen(Topic::Insert).await.unwrap();
    listener.listen(Topic::Control).await.unwrap();
    d.executor()
        .notify_many(&[
            (Topic::Insert, r#"{"queue":"a"}"#.to_owned()),
            (
                Topic::Control,
                r#"{"action":"pause","queue":"a"}"#.to_owned(),
            ),
        ])
        .await
        .unwrap();
    let deadline = Duration::from_secs(10);
    let first = tokio::time::timeout(deadline, listener.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.topic, Topic::Insert);
    assert_eq!(first.payload, r#"{"queue":"a"}"#);
    let second = tokio::time::timeout(deadline, listener.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.topic, Topic::Control);
}

/// Sequences (issue 19): a key's first job goes in available and the rest pending, in one
/// batch or several; finishing the live job promotes the lowest pending one, a blocking
/// failure holds the rest, deleting it moves on, and the sweep finds a sequence whose head
/// vanished without a promotion.
pub async fn sequences_keep_one_job_live_per_key<F: DriverFixture>() {
    let fixture = F::create().await;
    let driver = fixture.driver();
    let seq = |key: &str, extra: &str| JobInsertParams {
        metadata: format!(r#"{{"millrace:seq":"{key}"{extra}}}"#),
        ..job("sequenced", "seq")
    };
    let first = insert(&driver, &[seq("a", ""), seq("a", ""), seq("b", "")]).await;
    let states: Vec<JobState> = first.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        [JobState::Available, JobState::Pending, JobState::Available]
    );
    let more = insert(&driver, &[seq("a", ""), seq("b", "")]).await;
    assert!(
        more.iter().all(|r| r.state == JobState::Pending),
        "{more:?}"
    );
    // insert_fast takes the checked path for sequence jobs.
    let fast = driver
        .executor()
        .job_insert_fast(&[seq("a", "")])
        .await
        .expect("insert fast");
    assert_eq!(fast, 1);

    // Only the heads are fetched; completing a's head promotes its next job by id.
    let heads = fetch(&driver, "seq", 10).await;
    let ids: Vec<JobId> = heads.iter().map(|r| r.id).collect();
    assert_eq!(ids, [first[0].id, first[2].id]);
    complete(&driver, &heads[0], JobOutcome::Completed).await;
    assert_eq!(get(&driver, first[1].id).await.state, JobState::Available);
    assert_eq!(get(&driver, more[0].id).await.state, JobState::Pending);

    // b's head discarded with the default policy blocks b.
    let error = attempt_error(&heads[1], "failed");
    driver
        .executor()
        .job_complete_many(&[JobCompleteParams {
            id: heads[1].id,
            attempt: heads[1].attempt,
            outcome: JobOutcome::Errored {
                error,
                retry_at: Timestamp::now(),
                discard: true,
            },
            metadata_merge: None,
        }])
        .await
        .expect("discard");
    assert_eq!(get(&driver, more[1].id).await.state, JobState::Pending);
    let listed = driver
        .executor()
        .sequence_list(&SequenceListParams {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    let summary: Vec<(&str, JobId, JobState, i64, bool)> = listed
        .iter()
        .map(|s| {
            (
                s.key.as_str(),
                s.head_id,
                s.head_state,
                s.pending,
                s.blocked,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a", first[1].id, JobState::Available, 2, false),
            ("b", first[2].id, JobState::Discarded, 1, true),
        ]
    );
    assert!(
        driver
            .executor()
            .sequence_promote_stranded(10)
            .await
            .expect("sweep")
            .is_empty(),
        "a blocked sequence stays blocked"
    );
    // Deleting the failed head moves b on at once.
    let deleted = driver
        .executor()
        .job_delete(first[2].id)
        .await
        .expect("delete");
    assert!(
        matches!(deleted, JobDeleteOutcome::Deleted(_)),
        "{deleted:?}"
    );
    assert_eq!(get(&driver, more[1].id).await.state, JobState::Available);

    // A head cancelled with the continue mark lets the next job go.
    let c = insert(
        &driver,
        &[
            seq("c", r#","millrace:seq_continue":true"#),
            seq("c", r#","millrace:seq_continue":true"#),
        ],
    )
    .await;
    driver
        .executor()
        .job_cancel(&JobCancelParams {
            id: c[0].id,
            now: None,
        })
        .await
        .expect("cancel");
    assert_eq!(get(&driver, c[1].id).await.state, JobState::Available);

    // Promoting a key whose live job still holds it changes nothing; an unknown key is no
    // error.
    let promoted = driver
        .executor()
        .sequence_promote(&["a".to_owned(), "zzz".to_owned()])
        .await
        .expect("promote");
    assert!(promoted.is_empty(), "a's live job holds it: {promoted:?}");
}

/// A dead client's heartbeat row goes only once it is still expired and holds no running job
/// (persistent instances aside): a client that renewed, or took a job after the rescuer read
/// its rows, keeps its lease.
pub async fn dead_clients_rows_go_only_once_their_jobs_are_rescued<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut e = d.executor();
    for id in ["dying", "back"] {
        e.client_heartbeat(id, Duration::ZERO).await.unwrap();
    }
    // Both leases have run out once the database's clock has moved past them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let expired = e.client_get_expired(10).await.unwrap();
        if expired.len() == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "leases not expired: {expired:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    insert(&d, &[job("conformance", "default")]).await;
    let taken = e
        .job_get_available(&JobGetAvailableParams {
            queue: "default".to_owned(),
            max: 1,
            client_id: "dying".to_owned(),
            now: None,
            limit: None,
            rate: None,
        })
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    let ids = ["dying".to_owned(), "back".to_owned()];
    assert_eq!(
        e.client_delete_expired(&ids[..1]).await.unwrap(),
        0,
        "a client holding a running job keeps its row"
    );
    // "back" renews before the rescuer deletes.
    e.client_heartbeat("back", Duration::from_secs(30))
        .await
        .unwrap();
    complete(&d, &taken, JobOutcome::Completed).await;
    assert_eq!(e.client_delete_expired(&ids).await.unwrap(), 1);
    let left: Vec<String> = e
        .client_list()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, ["back"], "the renewed client keeps its row");
}

/// Expands to one `#[tokio::test]` per conformance check for a [`DriverFixture`].
///
/// ```ignore
/// millrace_test::driver_conformance!(millrace_test::TestDb);
/// ```
#[macro_export]
macro_rules! driver_conformance {
    ($fixture:ty) => {
        $crate::driver_conformance!(@tests $fixture;
            insert_many_returns_rows_in_order,
            unique_insert_reports_duplicates,
            insert_fast_counts_rows,
            fetch_takes_due_jobs_in_order,
            concurrent_fetches_take_disjoint_jobs,
            attempted_by_keeps_the_last_hundred,
            completion_records_each_outcome,
            completion_is_fenced,
            completion_batch_fences_each_attempt,
            cancel_requested_turns_retry_into_cancel,
            admin_verbs_follow_river,
            list_filters_and_pages,
            list_filters_by_ids_priorities_tags_and_metadata,
            delete_many_spares_running_jobs_in_list_order,
            update_metadata_merges_top_level_keys,
            queue_list_pages_by_name,
            queue_update_metadata_notifies_control,
            queue_set_metadata_key_keeps_the_other_keys,
            schedule_moves_due_jobs,
            schedule_discards_unique_conflicts,
            return_orphans_spares_held_jobs,
            queues_pause_and_resume,
            start_by_id_runs_one_job,
            notifications_reach_listeners,
            counts_and_lag_follow_the_jobs,
            finalized_histogram_buckets_by_state,
            act_many_follows_the_single_job_verbs,
            list_filters_by_id_range_times_and_args,
            fleet_tables_read_back,
            sequences_keep_one_job_live_per_key,
            own_connection_reaches_the_pools_database,
            dead_clients_rows_go_only_once_their_jobs_are_rescued,
        );
    };
    (@tests $fixture:ty; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                $crate::driver::$check::<$fixture>().await;
            }
        )*
    };
}
