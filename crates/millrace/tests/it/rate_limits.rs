//! Rate limits (issue 19): clients racing on one database never fetch more of a partition per
//! window than its limit, the producer fetches again when the window frees room (not at its
//! poll), partitions are independent, a rate limit combines with a concurrency limit, jobs
//! over the limit wait `available` with their attempt unspent, and bad limits are refused at
//! build. Shared with the SQLite driver: `crates/millrace-sqlite/tests/it/main.rs` compiles
//! this file against its own `fixture`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace::{
    Client, ClientBuilder, ConcurrencyLimit, Error, InsertOpts, Job, JobArgs, JobListParams,
    JobRow, JobState, LimitError, QueueConfig, RateLimit, WorkError, Worker,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::fixture::{D, TestDb};
use crate::shared::{Fetches, limited_builder};

/// The longest a test waits for its jobs; about three times what they need.
const DEADLINE: Duration = Duration::from_secs(30);
const QUEUE: &str = "rated";
/// How far apart two job starts may be measured from their fetches: the fetch, the spawn
/// and the clock read between them.
const JITTER: Duration = Duration::from_millis(150);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Call {
    customer: u32,
    /// How long the job runs.
    millis: u64,
}

impl JobArgs for Call {
    const KIND: &'static str = "rated_call";

    fn insert_opts() -> InsertOpts {
        InsertOpts::new().queue(QUEUE)
    }
}

/// Records when each job started, and how many ran at once at most.
#[derive(Clone, Default)]
struct Recording {
    state: Arc<Mutex<Recorded>>,
}

#[derive(Default)]
struct Recorded {
    starts: Vec<(Instant, u32)>,
    now: usize,
    max: usize,
}

impl Recording {
    fn starts(&self) -> Vec<Instant> {
        let mut starts: Vec<_> = self
            .state
            .lock()
            .unwrap()
            .starts
            .iter()
            .map(|s| s.0)
            .collect();
        starts.sort();
        starts
    }

    fn started(&self) -> usize {
        self.state.lock().unwrap().starts.len()
    }
}

impl Worker for Recording {
    type Args = Call;

    async fn work(&self, job: Job<Call>) -> Result<(), WorkError> {
        {
            let mut s = self.state.lock().unwrap();
            s.starts.push((Instant::now(), job.args.customer));
            s.now += 1;
            s.max = s.max.max(s.now);
        }
        tokio::time::sleep(Duration::from_millis(job.args.millis)).await;
        self.state.lock().unwrap().now -= 1;
        Ok(())
    }
}

fn builder(db: &TestDb, id: &str, worker: Recording, config: QueueConfig) -> ClientBuilder<D> {
    limited_builder(db, id, worker, QUEUE, config)
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

async fn jobs(client: &Client<D>) -> Vec<JobRow> {
    client
        .job_list(JobListParams::new().queues([QUEUE]).limit(1000))
        .await
        .unwrap()
        .jobs
}

/// Waits until `n` jobs have started in this process.
async fn wait_started(worker: &Recording, n: usize) {
    let what = format!("{n} jobs start");
    millrace_test::eventually(&what, DEADLINE, || async { worker.started() >= n }).await;
}

/// Waits until the queue has been fetched `n` more times.
async fn wait_fetches(fetches: &Fetches, n: usize) {
    let seen = fetches.count();
    millrace_test::eventually("the queue is fetched again", DEADLINE, || async {
        fetches.count() >= seen + n
    })
    .await;
}

/// Asserts that no `limit + 1` starts fall within one `period` (less the jitter).
fn assert_rate(starts: &[Instant], limit: usize, period: Duration) {
    for (i, pair) in starts.windows(limit + 1).enumerate() {
        let span = pair[limit] - pair[0];
        assert!(
            span + JITTER >= period,
            "starts {i} to {} came {span:?} apart, within one period of {period:?}",
            i + limit
        );
    }
}

#[tokio::test]
async fn rate_limit_holds_across_racing_clients() {
    let db = TestDb::new().await;
    let (limit, period) = (5, Duration::from_secs(1));
    let config = QueueConfig::new().rate_limit(RateLimit::per(limit, period));
    let worker = Recording::default();
    let clients: Vec<_> = ["rate-a", "rate-b", "rate-c"]
        .into_iter()
        .map(|id| {
            builder(&db, id, worker.clone(), config.clone())
                .build()
                .unwrap()
        })
        .collect();
    insert_calls(&clients[0], 3, 5, 0).await;
    for c in &clients {
        c.start().await.unwrap();
    }
    wait_started(&worker, 15).await;
    for c in &clients {
        c.stop().await.unwrap();
    }
    let starts = worker.starts();
    assert_rate(&starts, limit as usize, period);
    // Three windows' worth: the last batch starts two periods after the first.
    assert!(starts[14] - starts[0] + JITTER >= 2 * period);
}

#[tokio::test]
async fn producer_fetches_when_the_window_frees_room() {
    let db = TestDb::new().await;
    let (limit, period) = (4, Duration::from_millis(800));
    let worker = Recording::default();
    // A poll far beyond the deadline: only the window's wake can fetch the second batch.
    let c = builder(
        &db,
        "rate-wake",
        worker.clone(),
        QueueConfig::new().rate_limit(RateLimit::per(limit, period)),
    )
    .fetch_poll_interval(Duration::from_secs(600))
    .build()
    .unwrap();
    insert_calls(&c, 1, 8, 0).await;
    c.start().await.unwrap();
    let started = Instant::now();
    wait_started(&worker, 8).await;
    let took = started.elapsed();
    c.stop().await.unwrap();
    let starts = worker.starts();
    assert_rate(&starts, limit as usize, period);
    // The second batch came once the first left the window, well before any poll.
    assert!(took < period * 3, "took {took:?}");
}

#[tokio::test]
async fn partitions_have_their_own_window_and_held_jobs_keep_their_attempt() {
    let db = TestDb::new().await;
    let worker = Recording::default();
    let fetches = Fetches::of(QUEUE);
    let rate = RateLimit::per(2, Duration::from_secs(60)).partition_by_args(["customer"]);
    let c = builder(
        &db,
        "rate-part",
        worker.clone(),
        QueueConfig::new().rate_limit(rate),
    )
    .metric_hook(fetches.clone())
    .build()
    .unwrap();
    insert_calls(&c, 3, 4, 0).await;
    c.start().await.unwrap();
    wait_started(&worker, 6).await;
    // Three more fetches come back: the window keeps the rest waiting through each.
    wait_fetches(&fetches, 3).await;
    let rows = jobs(&c).await;
    c.stop().await.unwrap();
    let mut started: HashMap<u64, usize> = HashMap::new();
    for job in &rows {
        let customer = job.args["customer"].as_u64().unwrap();
        if job.state == JobState::Available {
            assert_eq!(
                job.attempt, 0,
                "a job held back by the limit spends no attempt"
            );
            assert!(job.errors.is_empty());
        } else {
            *started.entry(customer).or_default() += 1;
        }
    }
    assert_eq!(started, HashMap::from([(0, 2), (1, 2), (2, 2)]));
    assert_eq!(worker.started(), 6);
}

#[tokio::test]
async fn rate_limit_combines_with_a_concurrency_limit() {
    let db = TestDb::new().await;
    let worker = Recording::default();
    let fetches = Fetches::of(QUEUE);
    let config = QueueConfig::new()
        .concurrency(ConcurrencyLimit::global(1))
        .rate_limit(RateLimit::per(4, Duration::from_secs(60)).partition_by_kind());
    let c = builder(&db, "rate-conc", worker.clone(), config)
        .metric_hook(fetches.clone())
        .build()
        .unwrap();
    insert_calls(&c, 1, 6, 50).await;
    c.start().await.unwrap();
    wait_started(&worker, 4).await;
    let wait = async {
        while jobs(&c)
            .await
            .iter()
            .any(|j| j.state != JobState::Completed && j.state != JobState::Available)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .expect("the started jobs complete");
    wait_fetches(&fetches, 3).await;
    let rows = jobs(&c).await;
    c.stop().await.unwrap();
    let completed = rows
        .iter()
        .filter(|j| j.state == JobState::Completed)
        .count();
    let waiting: Vec<_> = rows
        .iter()
        .filter(|j| j.state == JobState::Available)
        .collect();
    assert_eq!((completed, waiting.len()), (4, 2));
    assert!(waiting.iter().all(|j| j.attempt == 0));
    assert_eq!(worker.state.lock().unwrap().max, 1, "one job at a time");
}

#[tokio::test]
async fn invalid_rate_limits_are_refused_at_build() {
    let db = TestDb::new().await;
    let second = Duration::from_secs(1);
    let cases = [
        (
            RateLimit::per(0, second),
            LimitError::Zero { which: "rate" },
        ),
        (RateLimit::per(5, Duration::ZERO), LimitError::ZeroPeriod),
        (
            RateLimit::per(5, Duration::from_micros(10)),
            LimitError::PeriodOutOfRange(Duration::from_micros(10)),
        ),
        (
            RateLimit::per(5, Duration::from_secs(365 * 86_400)),
            LimitError::PeriodOutOfRange(Duration::from_secs(365 * 86_400)),
        ),
        (
            RateLimit::per(u32::MAX, second),
            LimitError::TooLarge {
                which: "rate",
                limit: u32::MAX,
            },
        ),
        (
            RateLimit::per(5, second).partition_by_args(["a.b"]),
            LimitError::InvalidField("a.b".into()),
        ),
        (
            RateLimit::per(5, second).partition_by_args([""]),
            LimitError::EmptyField,
        ),
    ];
    for (limit, want) in cases {
        let err = Client::builder(db.driver())
            .queue(QUEUE, QueueConfig::new().rate_limit(limit.clone()))
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
