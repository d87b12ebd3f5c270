//! Concurrency limits across clients on PostgreSQL: a slot freed on one client is taken by
//! another at once, told by the queue's notification, not at its next poll. (SQLite has no
//! notifications between clients; there a freed slot is seen at the next poll.)

use std::time::Duration;

use millrace::{
    Client, ConcurrencyLimit, InsertOpts, Job, JobArgs, JobListParams, JobState, QueueConfig,
    QueueUpdateParams, WorkError, Worker, Workers,
};
use millrace_test::{TestDb, eventually};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::shared::Fetches;

const QUEUE: &str = "limited_fleet";

#[derive(Debug, Serialize, Deserialize)]
struct Hold {}

impl JobArgs for Hold {
    const KIND: &'static str = "limited_fleet_hold";

    fn insert_opts() -> InsertOpts {
        InsertOpts::new().queue(QUEUE)
    }
}

/// Holds its slot until the test opens the gate.
#[derive(Clone)]
struct Gated(watch::Receiver<bool>);

impl Worker for Gated {
    type Args = Hold;

    async fn work(&self, _job: Job<Hold>) -> Result<(), WorkError> {
        let mut gate = self.0.clone();
        gate.wait_for(|open| *open)
            .await
            .map_err(|_| WorkError::msg("the test dropped its gate"))?;
        Ok(())
    }
}

fn client(
    db: &TestDb,
    id: &str,
    gate: &watch::Receiver<bool>,
    fetches: &Fetches,
) -> Client<millrace_postgres::PgDriver> {
    let mut workers = Workers::new();
    workers.register(Gated(gate.clone())).unwrap();
    Client::builder(db.driver())
        .id(id)
        .metric_hook(fetches.clone())
        .workers(workers)
        .queue(
            QUEUE,
            QueueConfig::new().concurrency(ConcurrencyLimit::global(1)),
        )
        .fetch_cooldown(Duration::from_millis(20))
        // Far beyond the deadline: a slot seen only at a poll fails the test.
        .fetch_poll_interval(Duration::from_secs(600))
        .build()
        .unwrap()
}

async fn holder(client: &Client<millrace_postgres::PgDriver>) -> Option<String> {
    let running = client
        .job_list(
            JobListParams::new()
                .states([JobState::Running])
                .queues([QUEUE]),
        )
        .await
        .unwrap();
    running
        .jobs
        .first()
        .and_then(|job| job.attempted_by.last().cloned())
}

#[tokio::test]
async fn a_slot_freed_on_one_client_is_taken_by_another_at_once() {
    let db = TestDb::new().await;
    // A third client leads the fleet throughout, so A's stop moves no leadership: a new
    // leader's first passes wake its producers, which would hide what is tested here.
    let mut workers = Workers::new();
    workers.register(Gated(watch::channel(true).1)).unwrap();
    let leader = Client::builder(db.driver())
        .id("fleet-leader")
        .workers(workers)
        .queue("elsewhere", QueueConfig::new())
        .build()
        .unwrap();
    leader.start().await.unwrap();
    eventually(
        "the third client leads",
        Duration::from_secs(10),
        || async {
            let health = leader.health().await;
            health.river_leader && health.millrace_leader
        },
    )
    .await;
    let (gate, gate_rx) = watch::channel(false);
    let a = client(&db, "fleet-a", &gate_rx, &Fetches::of(QUEUE));
    let b_fetches = Fetches::of(QUEUE);
    let b = client(&db, "fleet-b", &gate_rx, &b_fetches);
    // Both jobs before either client starts, so no insert wakes a producer later.
    a.insert(Hold {}, None).await.unwrap();
    a.insert(Hold {}, None).await.unwrap();
    a.start().await.unwrap();
    let deadline = Duration::from_secs(10);
    eventually("a holds the only slot", deadline, || async {
        holder(&a).await.as_deref() == Some("fleet-a")
    })
    .await;
    // B's first fetch finds the limit binding; nothing but a freed slot's notification (or a
    // poll, 600 s away) makes it fetch again.
    b.start().await.unwrap();
    eventually("b has fetched once", deadline, || async {
        b_fetches.count() >= 1
    })
    .await;
    assert_eq!(holder(&a).await.as_deref(), Some("fleet-a"));
    assert_eq!(b_fetches.count(), 1, "b fetched once, and waits");
    // A stops: it fetches nothing more (its producers stop at once, before its running job
    // ends), then its job ends and its completer frees the slot.
    let stopping = tokio::spawn({
        let a = a.clone();
        async move { a.stop().await }
    });
    eventually("a is stopping", deadline, || async {
        !a.health().await.started
    })
    .await;
    gate.send_replace(true);
    stopping.await.unwrap().unwrap();
    eventually(
        "b takes the freed slot and works the job",
        deadline,
        || async {
            let done = b
                .job_list(
                    JobListParams::new()
                        .states([JobState::Completed])
                        .queues([QUEUE]),
                )
                .await
                .unwrap();
            let by_b = done
                .jobs
                .iter()
                .filter(|j| j.attempted_by.last().map(String::as_str) == Some("fleet-b"))
                .count();
            done.jobs.len() == 2 && by_b == 1
        },
    )
    .await;
    b.stop().await.unwrap();
    leader.stop().await.unwrap();
}

/// A concurrency override stored in the queue's metadata while clients run reaches them by
/// the queue's `metadata_changed` notification, long before their next refresh (30 s), and
/// removing it brings back the limit they were built with.
#[tokio::test]
async fn a_concurrency_override_reaches_running_clients_at_once() {
    let db = TestDb::new().await;
    let (_gate, gate_rx) = watch::channel(true);
    let client = client(&db, "override-live", &gate_rx, &Fetches::of(QUEUE));
    client.start().await.unwrap();
    let deadline = Duration::from_secs(10);
    let limit_is = |want: ConcurrencyLimit| {
        let client = &client;
        move || {
            let want = want.clone();
            async move { client.health().await.queues[QUEUE].concurrency.as_ref() == Some(&want) }
        }
    };
    eventually(
        "the code's limit",
        deadline,
        limit_is(ConcurrencyLimit::global(1)),
    )
    .await;
    let raised = ConcurrencyLimit::global(3).partition_by_kind();
    client
        .queue_update(
            QUEUE,
            QueueUpdateParams::new().metadata(raised.to_queue_metadata()),
        )
        .await
        .unwrap();
    eventually("the override applied", deadline, limit_is(raised)).await;
    client
        .queue_update(
            QUEUE,
            QueueUpdateParams::new().metadata(serde_json::json!({"owner": "billing"})),
        )
        .await
        .unwrap();
    eventually(
        "the code's limit again",
        deadline,
        limit_is(ConcurrencyLimit::global(1)),
    )
    .await;
    client.stop().await.unwrap();
}
