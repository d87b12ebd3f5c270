//! Concurrency limits (issue 19): several clients racing on one database never run more of a
//! partition at once than its limit, partitions are independent, a local limit holds per
//! client, jobs over the limit wait `available` with their attempt unspent, and bad limits
//! are refused at build. Shared with the SQLite driver: `crates/millrace-sqlite/tests/it/main.rs`
//! compiles this file against its own `fixture`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace::{
    Client, ClientBuilder, ConcurrencyLimit, Error, InsertOpts, Job, JobArgs, JobListParams,
    JobState, LimitError, QueueConfig, WorkError, Worker,
};
use millrace_test::eventually;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};

use crate::fixture::{D, TestDb};
use crate::shared::{Fetches, limited_builder};

mod overrides;

/// The longest a test waits for its jobs; about three times what they need.
const DEADLINE: Duration = Duration::from_secs(30);
const QUEUE: &str = "limited";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Call {
    customer: u32,
    /// How long the job holds its slot.
    millis: u64,
}

impl JobArgs for Call {
    const KIND: &'static str = "limited_call";

    fn insert_opts() -> InsertOpts {
        InsertOpts::new().queue(QUEUE)
    }
}

/// Counts, per customer and per client, the jobs running in this process right now and the
/// most seen at once; with `gate` set, each job also waits for it.
#[derive(Clone, Default)]
struct Counting {
    state: Arc<Mutex<Counts>>,
    gate: Option<Arc<Notify>>,
}

#[derive(Default)]
struct Counts {
    now: HashMap<String, usize>,
    max: HashMap<String, usize>,
    total_now: usize,
    total_max: usize,
    started: usize,
}

impl Counting {
    fn enter(&self, keys: &[String]) {
        let mut s = self.state.lock().unwrap();
        s.started += 1;
        s.total_now += 1;
        s.total_max = s.total_max.max(s.total_now);
        for key in keys {
            let now = {
                let n = s.now.entry(key.clone()).or_default();
                *n += 1;
                *n
            };
            let max = s.max.entry(key.clone()).or_default();
            *max = (*max).max(now);
        }
    }

    fn leave(&self, keys: &[String]) {
        let mut s = self.state.lock().unwrap();
        s.total_now -= 1;
        for key in keys {
            *s.now.get_mut(key).unwrap() -= 1;
        }
    }
}

impl Worker for Counting {
    type Args = Call;

    async fn work(&self, job: Job<Call>) -> Result<(), WorkError> {
        let client = job.row.attempted_by.last().cloned().unwrap_or_default();
        let keys = [
            format!("customer:{}", job.args.customer),
            format!("client:{client}"),
        ];
        self.enter(&keys);
        if let Some(gate) = &self.gate {
            gate.notified().await;
        }
        // The job's work: holding its slot for a while is what the limit is about.
        tokio::time::sleep(Duration::from_millis(job.args.millis)).await;
        self.leave(&keys);
        Ok(())
    }
}

fn client(db: &TestDb, id: &str, worker: Counting, limit: ConcurrencyLimit) -> Client<D> {
    builder(db, id, worker, limit).build().unwrap()
}

fn builder(db: &TestDb, id: &str, worker: Counting, limit: ConcurrencyLimit) -> ClientBuilder<D> {
    limited_builder(db, id, worker, QUEUE, QueueConfig::new().concurrency(limit))
}

/// The running rows of the queue in the database, per customer.
async fn running_per_customer(client: &Client<D>) -> HashMap<u64, usize> {
    let page = client
        .job_list(
            JobListParams::new()
                .states([JobState::Running])
                .queues([QUEUE])
                .limit(1000),
        )
        .await
        .unwrap();
    let mut counts = HashMap::new();
    for job in page.jobs {
        let customer = job.args["customer"].as_u64().unwrap();
        *counts.entry(customer).or_default() += 1;
    }
    counts
}

/// Samples the database's running rows until `stop`, returning the most seen per customer.
async fn sample_running(
    client: &Client<D>,
    mut stop: oneshot::Receiver<()>,
) -> HashMap<u64, usize> {
    let mut max: HashMap<u64, usize> = HashMap::new();
    loop {
        for (customer, n) in running_per_customer(client).await {
            let m = max.entry(customer).or_default();
            *m = (*m).max(n);
        }
        tokio::select! {
            _ = &mut stop => return max,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

/// Waits until every job of the queue has completed.
async fn wait_all_completed(client: &Client<D>, total: usize) {
    millrace_test::eventually("every job completes", DEADLINE, || async {
        let page = client
            .job_list(
                JobListParams::new()
                    .states([JobState::Completed])
                    .queues([QUEUE])
                    .limit(1000),
            )
            .await
            .unwrap();
        page.jobs.len() == total
    })
    .await;
}

async fn insert_calls(client: &Client<D>, customers: u32, per_customer: u32, millis: u64) {
    for _ in 0..per_customer {
        for customer in 0..customers {
            client
                .insert(Call { customer, millis }, None)
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn global_limit_per_partition_holds_across_racing_clients() {
    let db = TestDb::new().await;
    let worker = Counting::default();
    let limit = ConcurrencyLimit::global(2).partition_by_args(["customer"]);
    let clients: Vec<_> = (0..3)
        .map(|i| client(&db, &format!("limits-{i}"), worker.clone(), limit.clone()))
        .collect();
    insert_calls(&clients[0], 3, 8, 40).await;
    let (stop, stopped) = oneshot::channel();
    let sampler = {
        let c = clients[0].clone();
        tokio::spawn(async move { sample_running(&c, stopped).await })
    };
    for c in &clients {
        c.start().await.unwrap();
    }
    wait_all_completed(&clients[0], 24).await;
    stop.send(()).unwrap();
    let db_max = sampler.await.unwrap();
    for c in &clients {
        c.stop().await.unwrap();
    }

    let s = worker.state.lock().unwrap();
    assert_eq!(s.started, 24, "every job ran exactly once");
    for customer in 0..3u32 {
        let seen = s.max[&format!("customer:{customer}")];
        assert!(seen <= 2, "customer {customer} ran {seen} jobs at once");
        let in_db = db_max.get(&u64::from(customer)).copied().unwrap_or(0);
        assert!(
            in_db <= 2,
            "the database held {in_db} running jobs of customer {customer}"
        );
    }
    // Partitions are independent: more than one partition's limit ran at once.
    assert!(
        s.total_max > 2,
        "partitions never ran side by side ({})",
        s.total_max
    );
}

#[tokio::test]
async fn local_limit_holds_per_client() {
    let db = TestDb::new().await;
    let worker = Counting::default();
    let limit = ConcurrencyLimit::local_only(1);
    let clients: Vec<_> = (0..2)
        .map(|i| client(&db, &format!("local-{i}"), worker.clone(), limit.clone()))
        .collect();
    insert_calls(&clients[0], 4, 2, 30).await;
    for c in &clients {
        c.start().await.unwrap();
    }
    wait_all_completed(&clients[0], 8).await;
    for c in &clients {
        c.stop().await.unwrap();
    }
    let s = worker.state.lock().unwrap();
    assert_eq!(s.started, 8);
    for i in 0..2 {
        let seen = s
            .max
            .get(&format!("client:local-{i}"))
            .copied()
            .unwrap_or(0);
        assert!(seen <= 1, "client local-{i} ran {seen} jobs at once");
    }
}

#[tokio::test]
async fn jobs_over_the_limit_wait_available_with_their_attempt_unspent() {
    let db = TestDb::new().await;
    let gate = Arc::new(Notify::new());
    let worker = Counting {
        gate: Some(gate.clone()),
        ..Counting::default()
    };
    let fetches = Fetches::of(QUEUE);
    let c = builder(&db, "gated", worker.clone(), ConcurrencyLimit::global(1))
        .metric_hook(fetches.clone())
        .build()
        .unwrap();
    insert_calls(&c, 3, 1, 0).await;
    c.start().await.unwrap();

    // Wait until one job is running and three more fetches have come back since: the limit
    // keeps the other two waiting through each.
    let wait = async {
        while worker.state.lock().unwrap().started == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let seen = fetches.count();
        while fetches.count() < seen + 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .expect("a job starts and the queue is fetched again");
    let waiting: Vec<_> = c
        .job_list(JobListParams::new().queues([QUEUE]).limit(10))
        .await
        .unwrap()
        .jobs
        .into_iter()
        .filter(|j| j.state != JobState::Running)
        .collect();
    assert_eq!(waiting.len(), 2, "two jobs wait behind the limit");
    for job in &waiting {
        assert_eq!(job.state, JobState::Available);
        assert_eq!(
            job.attempt, 0,
            "a job held back by the limit spends no attempt"
        );
        assert!(job.errors.is_empty());
    }
    assert_eq!(worker.state.lock().unwrap().started, 1);

    // Let every job through, one at a time.
    let release = async {
        loop {
            gate.notify_waiters();
            let done = c
                .job_list(
                    JobListParams::new()
                        .states([JobState::Completed])
                        .queues([QUEUE]),
                )
                .await
                .unwrap();
            if done.jobs.len() == 3 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(DEADLINE, release)
        .await
        .expect("every job completes");
    c.stop().await.unwrap();
    assert_eq!(worker.state.lock().unwrap().total_max, 1);
}

#[tokio::test]
async fn invalid_limits_are_refused_at_build() {
    let db = TestDb::new().await;
    let cases = [
        (
            ConcurrencyLimit::global(0),
            LimitError::Zero { which: "global" },
        ),
        (
            ConcurrencyLimit::global(2).local(0),
            LimitError::Zero { which: "local" },
        ),
        (ConcurrencyLimit::default(), LimitError::NoLimit),
        (
            ConcurrencyLimit::global(2).partition_by_args([""]),
            LimitError::EmptyField,
        ),
        (
            ConcurrencyLimit::global(2).partition_by_args(["a", "b", "a"]),
            LimitError::DuplicateField("a".into()),
        ),
        (
            ConcurrencyLimit::global(2).partition_by_args(["a.b"]),
            LimitError::InvalidField("a.b".into()),
        ),
        (
            ConcurrencyLimit::global(u32::MAX),
            LimitError::TooLarge {
                which: "global",
                limit: u32::MAX,
            },
        ),
    ];
    for (limit, want) in cases {
        let err = Client::builder(db.driver())
            .queue(QUEUE, QueueConfig::new().concurrency(limit.clone()))
            .build()
            .unwrap_err();
        match err {
            Error::Limit { queue, source } => {
                assert_eq!(queue, QUEUE);
                assert_eq!(source, want, "for {limit:?}");
            }
            other => panic!("{limit:?}: expected a limit error, got {other:?}"),
        }
    }
}

/// A slot is free again once the completer has stored its job's outcome, and the producer is
/// woken then rather than at its next poll. Fetching when the job ended raced that store, found
/// the slot still taken and waited for the poll: with no cooldown to hide the race and a poll
/// this long, the jobs after the first would not finish within the deadline.
#[tokio::test]
async fn a_freed_slot_is_taken_at_once_not_at_the_next_poll() {
    let db = TestDb::new().await;
    let worker = Counting::default();
    let client = builder(&db, "freed", worker.clone(), ConcurrencyLimit::global(1))
        .fetch_cooldown(Duration::ZERO)
        .fetch_poll_interval(Duration::from_secs(600))
        .build()
        .unwrap();
    // Inserted before the start, so no insert wakes the producer between jobs.
    const JOBS: usize = 20;
    insert_calls(&client, 1, JOBS as u32, 10).await;
    client.start().await.unwrap();
    wait_all_completed(&client, JOBS).await;
    assert_eq!(
        worker.state.lock().unwrap().total_max,
        1,
        "the limit of 1 held"
    );
    client.stop().await.unwrap();
}

/// A partitioned limit that cannot bind yet takes the plain head of the queue (PostgreSQL's
/// loose pass: running rows plus the batch within the limit); the batch that would pass it
/// is ranked, and stops exactly at the limit. Three clients of 10 workers, a limit of 25 on
/// one customer's jobs: 10 and 10 taken loosely, then 5.
#[tokio::test]
async fn a_partitioned_limit_stops_exactly_at_the_limit_after_fetching_loosely() {
    let db = TestDb::new().await;
    let gate = Arc::new(Notify::new());
    let worker = Counting {
        gate: Some(gate.clone()),
        ..Counting::default()
    };
    let limit = ConcurrencyLimit::global(25).partition_by_args(["customer"]);
    let fetches = Fetches::of(QUEUE);
    let clients = [
        client(&db, "loose-a", worker.clone(), limit.clone()),
        client(&db, "loose-b", worker.clone(), limit.clone()),
        builder(&db, "loose-c", worker.clone(), limit.clone())
            .metric_hook(fetches.clone())
            .build()
            .unwrap(),
    ];
    insert_calls(&clients[0], 1, 40, 0).await;
    for (i, c) in clients.iter().enumerate() {
        c.start().await.unwrap();
        let want = ((i + 1) * 10).min(25);
        eventually(&format!("{want} jobs running"), DEADLINE, || async {
            worker.state.lock().unwrap().started >= want
        })
        .await;
    }
    // The third client's later fetches find the partition full.
    let seen = fetches.count();
    eventually("three more fetches", DEADLINE, || async {
        fetches.count() >= seen + 3
    })
    .await;
    assert_eq!(running_per_customer(&clients[0]).await.get(&0), Some(&25));
    assert_eq!(worker.state.lock().unwrap().started, 25);
    assert_eq!(worker.state.lock().unwrap().max["customer:0"], 25);
    // Each look frees the jobs waiting at the gate; the rest run in turn.
    eventually("every job completes", DEADLINE, || async {
        gate.notify_waiters();
        let page = clients[0]
            .job_list(
                JobListParams::new()
                    .states([JobState::Completed])
                    .queues([QUEUE])
                    .limit(100),
            )
            .await
            .unwrap();
        page.jobs.len() == 40
    })
    .await;
    assert_eq!(worker.state.lock().unwrap().max["customer:0"], 25);
    for c in clients {
        c.stop().await.unwrap();
    }
}
