//! Sequences (issue 19): jobs that share a key run one at a time, in insertion order, across
//! clients; a failed job blocks or lets the rest go on, as its policy says; an operator
//! unblocks; the promoter catches what finished behind Millrace's back. Shared with the SQLite
//! driver: `crates/millrace-sqlite/tests/it/main.rs` compiles this file against its own
//! `fixture`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace::{
    Client, Error, Event, EventKind, InsertManyParams, InsertOpts, Job, JobArgs, JobId,
    JobListParams, JobState, QueueConfig, SequenceListParams, SequenceOpts, SequencePolicy,
    UniqueOpts, WorkError, Worker, Workers,
};
use millrace_driver::{Driver as _, Executor as _};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::fixture::{D, TestDb, begin, take_row_away};
use crate::shared::insert_id;

/// The longest a test waits for what it expects: about three times the promoter's one-second
/// pass plus the Millrace lease's first election.
const DEADLINE: Duration = Duration::from_secs(20);

/// A ledger entry of one customer: the sequence is keyed by `customer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    customer: i64,
    position: i64,
    /// Cancel the attempts up to this one (0: never fail).
    cancel_until_attempt: i16,
}

impl JobArgs for Entry {
    const KIND: &'static str = "seq_entry";

    fn insert_opts() -> InsertOpts {
        InsertOpts::new().sequence(SequenceOpts::new().by_args(["customer"]))
    }
}

fn entry(customer: i64, position: i64) -> Entry {
    Entry {
        customer,
        position,
        cancel_until_attempt: 0,
    }
}

/// What the worker saw: per customer, the positions in the order they started, and whether
/// two jobs of one customer ever ran at once.
#[derive(Default)]
struct Ledger {
    started: HashMap<i64, Vec<i64>>,
    running: HashMap<i64, i64>,
    overlaps: Vec<(i64, i64)>,
}

#[derive(Clone, Default)]
struct EntryWorker(Arc<Mutex<Ledger>>);

impl Worker for EntryWorker {
    type Args = Entry;

    async fn work(&self, job: Job<Entry>) -> Result<(), WorkError> {
        let customer = job.args.customer;
        {
            let mut ledger = self.0.lock().unwrap();
            let running = ledger.running.entry(customer).or_default();
            *running += 1;
            if *running > 1 {
                ledger.overlaps.push((customer, job.args.position));
            }
            ledger
                .started
                .entry(customer)
                .or_default()
                .push(job.args.position);
        }
        // Gives another job of the sequence the chance to start meanwhile, were it available.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        *self.0.lock().unwrap().running.get_mut(&customer).unwrap() -= 1;
        if job.row.attempt <= job.args.cancel_until_attempt {
            return Err(WorkError::cancel(std::io::Error::other("told to fail")));
        }
        Ok(())
    }
}

fn builder(db: &TestDb, worker: EntryWorker) -> millrace::ClientBuilder<D> {
    let mut workers = Workers::new();
    workers.register(worker).unwrap();
    Client::builder(db.driver())
        .workers(workers)
        .queue(millrace::QUEUE_DEFAULT, QueueConfig::new().max_workers(20))
        .fetch_cooldown(Duration::from_millis(10))
        .fetch_poll_interval(Duration::from_millis(200))
}

/// Waits until `ids` all reached one of `kinds`.
async fn wait_for(events: &mut broadcast::Receiver<Event>, ids: &[JobId], kinds: &[EventKind]) {
    let mut left: std::collections::HashSet<JobId> = ids.iter().copied().collect();
    tokio::time::timeout(DEADLINE, async {
        while !left.is_empty() {
            if let Ok(Event::Job { kind, job, .. }) = events.recv().await {
                if kinds.contains(&kind) {
                    left.remove(&job.id);
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("jobs {left:?} did not finish in time"));
}

async fn state(client: &Client<D>, id: JobId) -> JobState {
    client.job_get(id).await.unwrap().state
}

async fn states(client: &Client<D>, ids: &[JobId]) -> Vec<JobState> {
    let mut out = Vec::new();
    for id in ids {
        out.push(state(client, *id).await);
    }
    out
}

#[tokio::test]
async fn sequence_jobs_run_one_at_a_time_in_insertion_order() {
    let db = TestDb::new().await;
    let worker = EntryWorker::default();
    let client = builder(&db, worker.clone()).build().unwrap();

    // Three customers, their entries interleaved: one batch, then single inserts.
    let batch: Vec<InsertManyParams> = (0..5)
        .flat_map(|position| {
            (1..=3).map(move |customer| InsertManyParams::new(entry(customer, position)))
        })
        .collect();
    let mut ids: Vec<JobId> = client
        .insert_many(batch)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.job.id)
        .collect();
    for position in 5..10 {
        for customer in 1..=3 {
            ids.push(insert_id(&client, entry(customer, position), None).await);
        }
    }
    // Before anything runs: one available job per customer (its first), the rest pending.
    let before = states(&client, &ids).await;
    assert_eq!(&before[..3], [JobState::Available; 3]);
    assert!(
        before[3..].iter().all(|s| *s == JobState::Pending),
        "{before:?}"
    );
    let listed = client
        .sequence_list(&SequenceListParams {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].key, r#"seq_entry:{"customer":1}"#);
    assert_eq!(listed[0].head_id, ids[0]);
    assert_eq!(listed[0].head_state, JobState::Available);
    assert_eq!(listed[0].pending, 9);
    assert!(!listed[0].blocked);

    let mut events = client.subscribe();
    client.start().await.unwrap();
    wait_for(&mut events, &ids, &[EventKind::JobCompleted]).await;
    client.stop().await.unwrap();

    {
        let ledger = worker.0.lock().unwrap();
        assert!(
            ledger.overlaps.is_empty(),
            "overlaps: {:?}",
            ledger.overlaps
        );
        for customer in 1..=3 {
            assert_eq!(
                ledger.started[&customer],
                (0..10).collect::<Vec<_>>(),
                "customer {customer}"
            );
        }
    }
    let left = client
        .sequence_list(&SequenceListParams {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "finished sequences are not listed: {left:?}"
    );
}

#[tokio::test]
async fn racing_inserts_from_several_clients_make_exactly_one_job_available() {
    let db = TestDb::new().await;
    let clients: Vec<Client<D>> = (0..4)
        .map(|_| Client::builder(db.driver()).build().unwrap())
        .collect();
    let tasks: Vec<_> = clients
        .iter()
        .cloned()
        .enumerate()
        .map(|(n, client)| {
            tokio::spawn(async move {
                for position in 0..10 {
                    client
                        .insert(entry(7, n as i64 * 100 + position), None)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let jobs = clients[0]
        .job_list(JobListParams::new())
        .await
        .unwrap()
        .jobs;
    assert_eq!(jobs.len(), 40);
    let available: Vec<JobId> = jobs
        .iter()
        .filter(|j| j.state == JobState::Available)
        .map(|j| j.id)
        .collect();
    assert_eq!(available.len(), 1, "{jobs:?}");
    // The one available job is the first inserted.
    assert_eq!(available[0], jobs.iter().map(|j| j.id).min().unwrap());
    assert_eq!(
        jobs.iter().filter(|j| j.state == JobState::Pending).count(),
        39
    );
}

#[tokio::test]
async fn block_policy_holds_the_sequence_until_an_operator_retries_or_deletes() {
    let db = TestDb::new().await;
    let client = builder(&db, EntryWorker::default()).build().unwrap();
    let failing = Entry {
        cancel_until_attempt: 1,
        ..entry(1, 0)
    };
    let first = insert_id(&client, failing, None).await;
    let second = insert_id(&client, entry(1, 1), None).await;
    let third = insert_id(&client, entry(1, 2), None).await;
    let mut events = client.subscribe();
    client.start().await.unwrap();
    wait_for(&mut events, &[first], &[EventKind::JobCancelled]).await;

    // Blocked: the failed job heads the sequence, the rest wait.
    let blocked = SequenceListParams {
        blocked_only: true,
        limit: 10,
        ..Default::default()
    };
    let listed = client.sequence_list(&blocked).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].head_id, first);
    assert_eq!(listed[0].head_state, JobState::Cancelled);
    assert_eq!(listed[0].pending, 2);
    assert!(listed[0].blocked);
    assert_eq!(
        states(&client, &[second, third]).await,
        [JobState::Pending; 2]
    );
    // A new job of the blocked sequence waits too.
    let fourth = insert_id(&client, entry(1, 3), None).await;
    assert_eq!(state(&client, fourth).await, JobState::Pending);

    // Retried, the failed job runs again (attempt 2 succeeds), then the rest in order.
    client.job_retry(first).await.unwrap();
    wait_for(
        &mut events,
        &[first, second, third, fourth],
        &[EventKind::JobCompleted],
    )
    .await;
    for id in [first, second, third, fourth] {
        assert_eq!(state(&client, id).await, JobState::Completed);
    }

    // Deleted, the failed job lets the next one go at once.
    let failed = Entry {
        cancel_until_attempt: 10,
        ..entry(1, 4)
    };
    let failed = insert_id(&client, failed, None).await;
    let after = insert_id(&client, entry(1, 5), None).await;
    wait_for(&mut events, &[failed], &[EventKind::JobCancelled]).await;
    assert_eq!(state(&client, after).await, JobState::Pending);
    client.job_delete(failed).await.unwrap();
    wait_for(&mut events, &[after], &[EventKind::JobCompleted]).await;
    client.stop().await.unwrap();
}

#[tokio::test]
async fn continue_policy_runs_the_next_job_after_a_failed_one() {
    let db = TestDb::new().await;
    let client = builder(&db, EntryWorker::default()).build().unwrap();
    let opts = || {
        InsertOpts::new().sequence(
            SequenceOpts::new()
                .by_args(["customer"])
                .policy(SequencePolicy::Continue),
        )
    };
    let failing = Entry {
        cancel_until_attempt: 1,
        ..entry(2, 0)
    };
    let first = insert_id(&client, failing, Some(opts())).await;
    let second = insert_id(&client, entry(2, 1), Some(opts())).await;
    assert_eq!(state(&client, second).await, JobState::Pending);
    let mut events = client.subscribe();
    client.start().await.unwrap();
    wait_for(&mut events, &[first], &[EventKind::JobCancelled]).await;
    wait_for(&mut events, &[second], &[EventKind::JobCompleted]).await;
    client.stop().await.unwrap();
}

#[tokio::test]
async fn promoter_moves_a_sequence_whose_head_finished_behind_its_back() {
    let db = TestDb::new().await;
    let client = builder(&db, EntryWorker::default()).build().unwrap();
    let opts = InsertOpts::new().sequence(SequenceOpts::new().key("behind-its-back"));
    let head = insert_id(&client, entry(3, 0), Some(opts.clone())).await;
    let next = insert_id(&client, entry(3, 1), Some(opts.clone())).await;
    // Deleted by hand, as raw SQL or a tool that knows nothing of sequences would.
    let job = db.schema().qualify("river_job");
    let deleted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {job} WHERE id = $1"
    )))
    .bind(head.0)
    .execute(db.pool())
    .await
    .unwrap();
    assert_eq!(deleted.rows_affected(), 1);
    assert_eq!(state(&client, next).await, JobState::Pending);

    // The sweep verb finds it and promotes it, once.
    let promoted = db
        .driver()
        .executor()
        .sequence_promote_stranded(10)
        .await
        .unwrap();
    assert_eq!(promoted.len(), 1);
    assert_eq!(promoted[0].id, next);
    assert_eq!(promoted[0].key, "behind-its-back");
    assert_eq!(promoted[0].state, JobState::Available);
    assert!(
        db.driver()
            .executor()
            .sequence_promote_stranded(10)
            .await
            .unwrap()
            .is_empty()
    );

    // The running client's promoter does the same on its own.
    let third = insert_id(&client, entry(3, 2), Some(opts)).await;
    let mut events = client.subscribe();
    client.start().await.unwrap();
    wait_for(&mut events, &[next], &[EventKind::JobCompleted]).await;
    wait_for(&mut events, &[third], &[EventKind::JobCompleted]).await;
    let fourth = insert_id(
        &client,
        entry(3, 3),
        Some(InsertOpts::new().sequence_key("behind-its-back")),
    )
    .await;
    // A job whose sequence went idle is available at once: nothing to wait for.
    wait_for(&mut events, &[fourth], &[EventKind::JobCompleted]).await;
    let head_again = insert_id(
        &client,
        entry(3, 4),
        Some(
            InsertOpts::new()
                .sequence_key("behind-its-back")
                .scheduled_at(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)),
        ),
    )
    .await;
    let behind = insert_id(
        &client,
        entry(3, 5),
        Some(InsertOpts::new().sequence_key("behind-its-back")),
    )
    .await;
    assert_eq!(state(&client, head_again).await, JobState::Scheduled);
    assert_eq!(state(&client, behind).await, JobState::Pending);
    // Finished behind the client's back (a River client that knows nothing of sequences):
    // the promoter notices within its pass.
    take_row_away(&db, head_again).await;
    // Discarded with the default policy, the head blocks the sequence: nothing moves.
    let listed = client
        .sequence_list(&SequenceListParams {
            key: Some("behind-its-back".to_owned()),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].blocked);
    assert!(
        db.driver()
            .executor()
            .sequence_promote_stranded(10)
            .await
            .unwrap()
            .is_empty()
    );
    client.job_delete(head_again).await.unwrap();
    wait_for(&mut events, &[behind], &[EventKind::JobCompleted]).await;
    client.stop().await.unwrap();
}

#[tokio::test]
async fn promoter_service_promotes_within_its_pass() {
    let db = TestDb::new().await;
    let client = builder(&db, EntryWorker::default()).build().unwrap();
    let opts = InsertOpts::new().sequence(
        SequenceOpts::new()
            .key("swept")
            .policy(SequencePolicy::Continue),
    );
    let head = insert_id(&client, entry(4, 0), Some(opts.clone())).await;
    let next = insert_id(&client, entry(4, 1), Some(opts)).await;
    // Discarded behind the client's back; with Continue it holds nothing, but no Millrace
    // path saw it finish.
    take_row_away(&db, head).await;
    assert_eq!(state(&client, next).await, JobState::Pending);
    let mut events = client.subscribe();
    client.start().await.unwrap();
    wait_for(&mut events, &[next], &[EventKind::JobCompleted]).await;
    client.stop().await.unwrap();
}

#[tokio::test]
async fn unique_sequence_jobs_skip_duplicates_while_they_wait() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let unique = || {
        InsertOpts::new()
            .sequence_key("unique-seq")
            .unique(UniqueOpts::new().by_args())
    };
    let head = client.insert(entry(5, 0), Some(unique())).await.unwrap();
    let waiting = client.insert(entry(5, 1), Some(unique())).await.unwrap();
    assert_eq!(waiting.job.state, JobState::Pending);
    let again = client.insert(entry(5, 1), Some(unique())).await.unwrap();
    assert!(again.unique_skipped_as_duplicate);
    assert_eq!(again.job.id, waiting.job.id);
    assert_eq!(head.job.state, JobState::Available);
    // In one batch too: a duplicate of a waiting job, and a new one behind it.
    let batch = client
        .insert_many([
            InsertManyParams::new(entry(5, 1)).opts(unique()),
            InsertManyParams::new(entry(5, 2)).opts(unique()),
        ])
        .await
        .unwrap();
    assert!(batch[0].unique_skipped_as_duplicate);
    assert!(!batch[1].unique_skipped_as_duplicate);
    assert_eq!(batch[1].job.state, JobState::Pending);
}

#[tokio::test]
async fn sequence_insert_in_a_callers_transaction_commits_or_rolls_back_with_it() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let mut tx = begin(&db).await;
    let rolled_back = client
        .insert_tx(&mut tx, entry(6, 0), None)
        .await
        .unwrap()
        .job
        .id;
    drop(tx);
    assert!(matches!(
        client.job_get(rolled_back).await,
        Err(Error::JobNotFound(_))
    ));

    let mut tx = begin(&db).await;
    let first = client
        .insert_tx(&mut tx, entry(6, 1), None)
        .await
        .unwrap()
        .job;
    let second = client
        .insert_tx(&mut tx, entry(6, 2), None)
        .await
        .unwrap()
        .job;
    tx.commit().await.unwrap();
    assert_eq!(first.state, JobState::Available);
    assert_eq!(second.state, JobState::Pending);
    assert_eq!(state(&client, second.id).await, JobState::Pending);
}

#[tokio::test]
async fn bad_sequence_options_are_refused_and_nothing_is_stored() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let cases = [
        (
            InsertOpts::new().sequence(SequenceOpts::new().by_args(["customer_id"])),
            "sequence field \"customer_id\" is not in the args of kind \"seq_entry\"",
        ),
        (
            InsertOpts::new().sequence_key("k").pending(),
            "cannot be inserted pending",
        ),
        (
            InsertOpts::new().sequence_key(""),
            "sequence key must be 1 to",
        ),
        (
            InsertOpts::new().sequence(SequenceOpts::new().by_args(Vec::<String>::new())),
            "names no field",
        ),
    ];
    for (opts, needle) in cases {
        let err = client
            .insert(entry(8, 0), Some(opts.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInsert(m) if m.contains(needle)),
            "{opts:?}: {err}"
        );
        // A bad job fails its whole batch, before anything is stored.
        let err = client
            .insert_many([
                InsertManyParams::new(entry(8, 1)),
                InsertManyParams::new(entry(8, 2)).opts(opts),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInsert(_)), "{err}");
    }
    let stored = client.job_list(JobListParams::new()).await.unwrap().jobs;
    assert!(stored.is_empty(), "{stored:?}");
    assert!(matches!(
        client.sequence_list(&SequenceListParams::default()).await,
        Err(Error::InvalidArgument(_))
    ));
}
