//! `Client::health`: what a readiness or liveness probe reads. Shared with the SQLite driver
//! (`crates/millrace-sqlite/tests/it/main.rs`).

use std::sync::Arc;
use std::time::Duration;

use millrace::{
    BoxError, Client, HealthReport, Job, JobArgs, PersistentContext, PersistentWorker, QueueConfig,
    WorkError, Worker, Workers,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::fixture::{TestDb, unreachable_driver};

/// The longest a test waits for the report to show what it waits for.
const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize)]
struct Hold {}

impl JobArgs for Hold {
    const KIND: &'static str = "hold";
}

/// Runs until told to finish.
struct HoldWorker(Arc<Notify>);

impl Worker for HoldWorker {
    type Args = Hold;

    async fn work(&self, _job: Job<Hold>) -> Result<(), WorkError> {
        self.0.notified().await;
        Ok(())
    }
}

struct Idle;

impl PersistentWorker for Idle {
    async fn run(&self, ctx: PersistentContext) -> Result<(), BoxError> {
        ctx.cancelled().await;
        Ok(())
    }
}

async fn wait_for(
    client: &Client<crate::fixture::D>,
    what: &str,
    done: impl Fn(&HealthReport) -> bool,
) -> HealthReport {
    let wait = async {
        loop {
            let report = client.health().await;
            if done(&report) {
                return report;
            }
            // Polling the report: it is what a probe does.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("{what} within {DEADLINE:?}"))
}

#[tokio::test]
async fn a_running_client_reports_its_producers_leadership_and_instances() {
    let db = TestDb::new().await;
    let insert_only = Client::builder(db.driver()).build().unwrap();
    let report = insert_only.health().await;
    assert!(
        report.database_reachable && report.is_healthy(),
        "{report:?}"
    );
    assert!(!report.started && report.queues.is_empty());

    let finish = Arc::new(Notify::new());
    let mut workers = Workers::new();
    workers.register(HoldWorker(finish.clone())).unwrap();
    let client = Client::builder(db.driver())
        .workers(workers)
        .queue("default", QueueConfig::new().max_workers(2))
        .persistent_worker("idler", Idle)
        .fetch_poll_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    client.start().await.unwrap();
    client.insert(Hold {}, None).await.unwrap();

    let report = wait_for(
        &client,
        "a fetch, a running job, both leaderships and the instance",
        |r| {
            r.queues
                .get("default")
                .is_some_and(|q| q.last_fetch_at.is_some() && q.running == 1)
                && r.river_leader
                && r.millrace_leader
                && r.persistent_held.contains("idler")
        },
    )
    .await;
    assert!(report.started && report.is_healthy(), "{report:?}");
    assert_eq!(report.queues["default"].fetch_failures, 0);
    assert!(report.database_round_trip_ms.is_some());
    assert!(report.river_leader_id.is_some());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["queues"]["default"]["running"], 1, "{json}");

    finish.notify_one();
    wait_for(&client, "the job finished", |r| {
        r.queues["default"].running == 0
    })
    .await;
    client.stop().await.unwrap();
    let stopped = client.health().await;
    assert!(
        !stopped.started && stopped.persistent_held.is_empty(),
        "{stopped:?}"
    );
}

#[tokio::test]
async fn an_unreachable_database_is_reported_not_raised() {
    let client = Client::builder(unreachable_driver()).build().unwrap();
    let started = std::time::Instant::now();
    let report = client.health().await;
    assert!(
        started.elapsed() < millrace::HEALTH_DATABASE_TIMEOUT * 3,
        "bounded: {:?}",
        started.elapsed()
    );
    assert!(
        !report.database_reachable && !report.is_healthy(),
        "{report:?}"
    );
    assert!(report.database_error.is_some());
    assert_eq!(report.database_round_trip_ms, None);
}
