//! Rows written by hand or by other clients with values no River client writes: each one is
//! read as leniently as River's Go client reads it, or, when it cannot be read at all, fails on
//! its own without stalling the fetch, the rescuers or the admin reads around it. Shared with
//! the SQLite driver (`crates/millrace-sqlite/tests/it/main.rs`), whose `fixture` lists
//! the values its schema can hold.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use millrace::{
    AttemptError, Client, Error, Event, EventKind, InsertOpts, Job, JobArgs, JobId, JobListParams,
    JobRow, JobState, QueueConfig, UndecodableJob, WorkError, Worker, Workers,
};
use millrace_driver::DriverError;
use serde::{Deserialize, Serialize};

use crate::fixture::{D, TestDb, hostile_values, make_stuck, set_raw};

/// The longest a test waits for an outcome.
const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize, Deserialize)]
struct Note {
    n: i64,
}

impl JobArgs for Note {
    const KIND: &'static str = "note";
}

struct NoteWorker;

impl Worker for NoteWorker {
    type Args = Note;

    async fn work(&self, _job: Job<Note>) -> Result<(), WorkError> {
        Ok(())
    }
}

/// What reading a hostile value must give.
enum Expected {
    /// The row decodes; the check says how the value reads.
    Lenient(fn(&JobRow)),
    /// The row does not decode, and the error names this column.
    Undecodable(&'static str),
    /// The row does not decode until its first failed attempt replaces the bad value (a
    /// `scheduled_at`); then it is worked as usual.
    Repaired(&'static str),
}

fn expected(case: &str) -> Expected {
    match case {
        "errors_without_fields" => Expected::Lenient(|row| {
            // Go's zero values, as River's Go client reads such an entry.
            let first = &row.errors[0];
            assert_eq!(first.at, AttemptError::GO_ZERO_TIME);
            assert_eq!((first.attempt, first.error.as_str()), (0, ""));
            assert_eq!(first.trace, "by hand");
        }),
        "errors_with_nulls" => Expected::Lenient(|row| {
            assert_eq!(row.errors[0].error, "kept", "nulls are skipped");
        }),
        "tags_with_null" => Expected::Lenient(|row| assert_eq!(row.tags, ["a"])),
        "attempted_by_with_null" => Expected::Lenient(|row| {
            assert_eq!(row.attempted_by[0], "elsewhere", "nulls are skipped");
        }),
        "errors_at_not_a_time" => Expected::Undecodable("errors"),
        "scheduled_at_minus_infinity" => Expected::Repaired("scheduled_at"),
        "created_at_past_9999" => Expected::Undecodable("created_at"),
        other => panic!("no expectation for the hostile value {other}"),
    }
}

async fn insert(client: &Client<D>, n: i64) -> JobId {
    client
        .insert(Note { n }, Some(InsertOpts::new()))
        .await
        .unwrap()
        .job
        .id
}

/// One job per hostile value, after `good` plain ones, keyed by case name.
async fn insert_hostile(
    db: &TestDb,
    client: &Client<D>,
    good: i64,
) -> (Vec<JobId>, BTreeMap<&'static str, JobId>) {
    let mut plain = Vec::new();
    for n in 0..good {
        plain.push(insert(client, n).await);
    }
    let mut hostile = BTreeMap::new();
    for (n, (case, set)) in hostile_values().into_iter().enumerate() {
        let id = insert(client, 100 + n as i64).await;
        set_raw(db, id, set).await;
        hostile.insert(case, id);
    }
    (plain, hostile)
}

fn worker_client(db: &TestDb) -> millrace::ClientBuilder<D> {
    let mut workers = Workers::new();
    workers.register(NoteWorker).unwrap();
    Client::builder(db.driver())
        .workers(workers)
        // One fetch takes every job at once, so a bad row shares its batch with good ones.
        .queue("default", QueueConfig::new().max_workers(100))
        .fetch_poll_interval(Duration::from_millis(100))
        // Failed jobs stay retryable for the test to read, never made available again.
        .schedule_interval(Duration::from_secs(3600))
}

#[tokio::test]
async fn a_fetched_row_that_does_not_decode_fails_alone_and_the_batch_goes_on() {
    let db = TestDb::new().await;
    let client = worker_client(&db).build().unwrap();
    let (plain, hostile) = insert_hostile(&db, &client, 5).await;
    // One undecodable job on its last attempt: discarded rather than retried.
    let last = hostile["created_at_past_9999"];
    set_raw(&db, last, "max_attempts = 1").await;

    let mut events = client.subscribe();
    client.start().await.unwrap();
    // The event each job ends the test with: completed for plain, lenient and repaired rows;
    // for undecodable ones, discarded after the last attempt, else retryable on attempt 2
    // (attempt 1's retry is due within River's 5 s window, so it is made available at once
    // and fetched again).
    let mut pending: BTreeSet<JobId> = plain.iter().copied().collect();
    pending.extend(hostile.values().copied());
    let mut completed: BTreeMap<JobId, JobRow> = BTreeMap::new();
    let mut undecodable: BTreeMap<JobId, Vec<(UndecodableJob, JobState)>> = BTreeMap::new();
    let wait = async {
        while !pending.is_empty() {
            match events.recv().await.expect("events open") {
                Event::Job {
                    kind: EventKind::JobCompleted,
                    job,
                    ..
                } => {
                    pending.remove(&job.id);
                    completed.insert(job.id, (*job).clone());
                }
                Event::JobUndecodable { job, state } => {
                    if matches!(state, JobState::Retryable | JobState::Discarded) {
                        pending.remove(&job.id);
                    }
                    undecodable
                        .entry(job.id)
                        .or_default()
                        .push(((*job).clone(), state));
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "within {DEADLINE:?}: still waiting for {pending:?}; completed {:?}, undecodable \
             {undecodable:?}",
                completed.keys()
            )
        });
    client.stop().await.unwrap();

    for id in &plain {
        assert!(completed.contains_key(id), "plain job {id} worked");
    }
    for (case, id) in &hostile {
        match expected(case) {
            Expected::Lenient(check) => {
                assert!(!undecodable.contains_key(id), "{case}");
                check(&completed[id]);
            }
            Expected::Undecodable(column) => {
                let seen = &undecodable[id];
                for (job, _) in seen {
                    assert!(job.error.contains(column), "{case}: {}", job.error);
                    assert_eq!(job.kind, "note", "{case}");
                }
                let states: Vec<(i16, JobState)> = seen
                    .iter()
                    .map(|(job, state)| (job.attempt, *state))
                    .collect();
                if *id == last {
                    assert_eq!(states, [(1, JobState::Discarded)], "{case}");
                } else {
                    assert_eq!(
                        states,
                        [(1, JobState::Available), (2, JobState::Retryable)],
                        "{case}"
                    );
                }
                assert!(!completed.contains_key(id), "{case}");
            }
            Expected::Repaired(column) => {
                let seen = &undecodable[id];
                assert_eq!(seen.len(), 1, "{case}");
                let row = &completed[id];
                assert_eq!(row.attempt, 2, "{case}");
                // The failed attempt carries the decode error.
                let error = &row.errors[0].error;
                assert!(
                    error.contains("could not be decoded") && error.contains(column),
                    "{case}: {error}"
                );
            }
        }
    }
    // The failed attempts are stored: the admin list reads each row's state.
    let undecodable_ids: Vec<JobId> = hostile
        .iter()
        .filter(|(case, _)| matches!(expected(case), Expected::Undecodable(_)))
        .map(|(_, id)| *id)
        .collect();
    let page = client
        .job_list(JobListParams::new().ids(undecodable_ids.iter().copied()))
        .await
        .unwrap();
    assert!(page.jobs.is_empty());
    for job in &page.undecodable {
        let expected = if job.id == last {
            JobState::Discarded
        } else {
            JobState::Retryable
        };
        assert_eq!(job.state, expected, "job {}", job.id);
    }
    assert_eq!(page.undecodable.len(), undecodable_ids.len());
}

#[tokio::test]
async fn admin_reads_and_deletes_report_rows_that_do_not_decode_beside_the_rest() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let (plain, hostile) = insert_hostile(&db, &client, 3).await;
    let bad = hostile["errors_at_not_a_time"];

    // A page holds every row in order; the next page starts after the last row, decoded or not
    // (here the undecodable `errors_at_not_a_time`, fifth of the hostile rows).
    let page = client
        .job_list(JobListParams::new().limit(plain.len() as i64 + 5))
        .await
        .unwrap();
    assert_eq!(page.undecodable.last().map(|j| j.id), Some(bad));
    let listed: Vec<JobId> = page.jobs.iter().map(|j| j.id).collect();
    assert_eq!(&listed[..plain.len()], plain.as_slice());
    let mut all_ids: Vec<JobId> = listed;
    all_ids.extend(page.undecodable.iter().map(|j| j.id));
    all_ids.sort();
    assert_eq!(all_ids.len(), plain.len() + 5);
    let next = page.next.expect("a full page has a next");
    let rest = client.job_list(next).await.unwrap();
    assert!(
        rest.jobs
            .iter()
            .map(|j| j.id)
            .chain(rest.undecodable.iter().map(|j| j.id))
            .all(|id| id > bad)
    );
    let total = all_ids.len() + rest.jobs.len() + rest.undecodable.len();
    assert_eq!(total, plain.len() + hostile.len());
    let undecodable: BTreeSet<JobId> = page
        .undecodable
        .iter()
        .chain(&rest.undecodable)
        .map(|j| j.id)
        .collect();
    for (case, id) in &hostile {
        let is_undecodable = matches!(
            expected(case),
            Expected::Undecodable(_) | Expected::Repaired(_)
        );
        assert_eq!(undecodable.contains(id), is_undecodable, "{case}");
    }

    // One row by id: a typed error naming the job and the column.
    match client.job_get(bad).await {
        Err(Error::Driver(DriverError::UndecodableJob(job))) => {
            assert_eq!(job.id, bad);
            assert_eq!(job.state, JobState::Available);
            assert!(job.error.contains("errors"), "{}", job.error);
        }
        other => panic!("expected an undecodable job, got {other:?}"),
    }
    // A write to it is applied, then reported as undecodable.
    assert!(matches!(
        client.job_cancel(bad).await,
        Err(Error::Driver(DriverError::UndecodableJob(_)))
    ));

    // Deleting many deletes every matching row and reports the ones that did not decode.
    let deleted = client
        .job_delete_many(JobListParams::new().kinds(["note"]))
        .await
        .unwrap();
    assert_eq!(deleted.jobs.len() + deleted.undecodable.len(), total);
    let gone: BTreeSet<JobId> = deleted.undecodable.iter().map(|j| j.id).collect();
    assert_eq!(gone, undecodable);
    let cancelled = deleted.undecodable.iter().find(|j| j.id == bad).unwrap();
    assert_eq!(
        cancelled.state,
        JobState::Cancelled,
        "the cancel was applied"
    );
    let left = client.job_list(JobListParams::new()).await.unwrap();
    assert!(left.jobs.is_empty() && left.undecodable.is_empty());
}

#[tokio::test]
async fn the_stuck_job_rescuer_goes_on_past_a_row_that_does_not_decode() {
    let db = TestDb::new().await;
    let client = worker_client(&db)
        .rescue_stuck_jobs_after(Duration::from_secs(60))
        .maintenance_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let good = insert(&client, 1).await;
    let bad = insert(&client, 2).await;
    for id in [good, bad] {
        make_stuck(&db, id).await;
    }
    let (_, set) = hostile_values()
        .into_iter()
        .find(|(case, _)| *case == "created_at_past_9999")
        .unwrap();
    set_raw(&db, bad, set).await;
    client.queue_pause("default").await.unwrap();
    client.start().await.unwrap();

    let wait = async {
        loop {
            let page = client
                .job_list(JobListParams::new().ids([good, bad]))
                .await
                .unwrap();
            let rescued = page.jobs.len() + page.undecodable.len() == 2
                && page.jobs.iter().all(|j| j.state != JobState::Running)
                && page
                    .undecodable
                    .iter()
                    .all(|j| j.state != JobState::Running);
            if rescued {
                return page;
            }
            // Polling rows: the rescuer sends no event.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let page = tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("both stuck jobs rescued within {DEADLINE:?}"));
    client.stop().await.unwrap();
    // Both retries are due within River's 5 s window, so both are available at once (and stay
    // so, their queue paused).
    assert_eq!(page.jobs[0].id, good);
    assert_eq!(page.jobs[0].state, JobState::Available);
    let error = &page.jobs[0].errors.last().unwrap().error;
    assert!(error.contains("Stuck job rescued"), "{error}");
    assert_eq!(page.undecodable[0].id, bad);
    assert_eq!(page.undecodable[0].state, JobState::Available);
}

#[tokio::test]
async fn an_insert_whose_unique_duplicate_does_not_decode_reports_it_and_keeps_the_batch() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let unique = InsertOpts::new().unique(millrace::UniqueOpts::new().by_args());
    let live = client
        .insert(Note { n: 1 }, Some(unique.clone()))
        .await
        .unwrap()
        .job
        .id;
    let (_, set) = hostile_values()
        .into_iter()
        .find(|(case, _)| *case == "errors_at_not_a_time")
        .unwrap();
    set_raw(&db, live, set).await;

    // A duplicate of the unreadable row beside a new job: the batch is stored once, and the
    // duplicate is reported by the live job's id.
    let results = client
        .insert_many([
            millrace::InsertManyParams::new(Note { n: 1 }).opts(unique),
            millrace::InsertManyParams::new(Note { n: 2 }),
        ])
        .await
        .unwrap();
    assert!(results[0].unique_skipped_as_duplicate);
    assert_eq!(results[0].job.id, live);
    assert_eq!(results[0].job.state, JobState::Available);
    assert!(!results[1].unique_skipped_as_duplicate);
    let page = client
        .job_list(JobListParams::new().kinds(["note"]))
        .await
        .unwrap();
    assert_eq!(page.jobs.len() + page.undecodable.len(), 2, "nothing twice");
    assert_eq!(page.undecodable[0].id, live);
}
