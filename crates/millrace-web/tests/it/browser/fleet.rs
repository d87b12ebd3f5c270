//! The fleet pages with a running client: its schedules, persistent workers and leases, on
//! PostgreSQL and on a SQLite file.

use std::time::Duration;

use millrace::{Client, Driver};
use millrace_test::TestDb;
use millrace_web::Dashboard;

use crate::support::{eventually, serve, sqlite_client};

use super::{Browser, DEADLINE};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Nightly {}

impl millrace::JobArgs for Nightly {
    const KIND: &'static str = "nightly";
}

struct NightlyWorker;

impl millrace::Worker for NightlyWorker {
    type Args = Nightly;

    async fn work(&self, _job: millrace::Job<Nightly>) -> Result<(), millrace::WorkError> {
        Ok(())
    }
}

/// A persistent worker whose first run fails (a failover to its next run), then holds on.
struct FailsOnce(std::sync::atomic::AtomicBool);

impl millrace::PersistentWorker for FailsOnce {
    async fn run(&self, ctx: millrace::PersistentContext) -> Result<(), millrace::BoxError> {
        if !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err("the feed dropped the connection".into());
        }
        ctx.cancelled().await;
        Ok(())
    }
}

/// The fleet's pages with a running client behind them: a named periodic job, a persistent
/// worker that failed once and is held again, both leases, and a queue with a concurrency
/// limit. `client` is unstarted, on the engine under test.
async fn exercise_fleet<D: Driver>(b: &Browser, builder: millrace::ClientBuilder<D>, shots: bool) {
    let mut workers = millrace::Workers::new();
    workers.register(NightlyWorker).unwrap();
    let client = builder
        .workers(workers)
        .queue(
            "default",
            millrace::QueueConfig::new().max_workers(3).concurrency(
                millrace::ConcurrencyLimit::global(2)
                    .local(1)
                    .partition_by_kind(),
            ),
        )
        .periodic_job(
            millrace::PeriodicJob::new(
                millrace::Schedule::interval(Duration::from_secs(15 * 60)),
                || (Nightly {}, None),
            )
            .id("nightly-report")
            .run_on_start(true),
        )
        .persistent_worker_with(
            "feed",
            FailsOnce(std::sync::atomic::AtomicBool::new(false)),
            millrace::PersistentOpts::new()
                .restart_backoff(Duration::from_millis(100), Duration::from_millis(200)),
        )
        .fetch_poll_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    client.start().await.unwrap();
    let base = serve(
        Dashboard::new(client.clone())
            .poll_interval(Duration::from_millis(300))
            .router(),
    )
    .await;

    // Periodic: the schedule, the next run, and the last run once the first run is in.
    b.goto(&format!("{base}/periodic")).await;
    let row = "#periodic tr[data-periodic=nightly-report]";
    eventually("the first run of nightly-report", DEADLINE, || async {
        let text = b.try_text(row).await?;
        (!text.contains("never")).then_some(())
    })
    .await;
    assert_eq!(b.text(&format!("{row} td.schedule")).await, "every 15 min");
    let cells: Vec<String> = b
        .js("return Array.from(document.querySelectorAll('#periodic tr[data-periodic] td')).map(td => td.textContent.trim())")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    // Id, schedule, next run (in about 15 minutes), overdue, last run, last job.
    assert_eq!(cells[0], "nightly-report", "{cells:?}");
    assert!(
        cells[2].contains("in 1"),
        "next run in about 15 min: {cells:?}"
    );
    assert_eq!(cells[3], "no", "{cells:?}");
    assert!(
        cells[4].contains("ago") || cells[4].contains("now"),
        "last run: {cells:?}"
    );
    assert!(!cells[5].is_empty(), "the last job: {cells:?}");
    if shots {
        b.shot("periodic").await;
    }

    // Persistent: the holder, the lease's age, the restart after the failure, and the failure.
    b.goto(&format!("{base}/persistent")).await;
    let row = "#persistent tr[data-persistent=feed]";
    // The failure, the restart and the hold again come one after another; the page follows
    // each by its live updates, so wait for the last of them rather than read a moment
    // between two (on a loaded machine, the first render can fall in the restart's backoff).
    let expect = format!(
        "{row} shows {} running again after one failure",
        client.id()
    );
    eventually(&expect, DEADLINE, || async {
        let text = b.try_text(row).await?;
        let failover = b.try_text(&format!("{row} td.failover")).await?;
        let restarts: i64 = b
            .try_text(&format!("{row} td.restarts"))
            .await?
            .parse()
            .ok()?;
        (text.contains(client.id())
            && text.contains("running")
            && failover.contains("the feed dropped the connection")
            && restarts >= 1)
            .then_some(())
    })
    .await;
    assert!(
        !b.text(&format!("{row} td.lease-age")).await.is_empty(),
        "the lease's age"
    );
    if shots {
        b.shot("persistent").await;
    }

    // Leader and clients: this client leads both leases and is listed live.
    b.goto(&format!("{base}/fleet")).await;
    eventually("both leases held by the client", DEADLINE, || async {
        let text = b.try_text("#leaders").await?;
        (text.matches(client.id()).count() == 2).then_some(())
    })
    .await;
    b.wait_text("#clients", client.id()).await;
    if shots {
        b.shot("fleet").await;
    }

    // Queues: the client's concurrency for the queue it works.
    b.goto(&format!("{base}/queues")).await;
    assert_eq!(b.text("tr[data-queue=default] td.max-workers").await, "3");
    assert_eq!(
        b.text("tr[data-queue=default] td.limit").await,
        "2 across the fleet, 1 per client, per kind"
    );
    client.stop().await.unwrap();
}

#[tokio::test]
async fn fleet_pages_show_a_running_clients_schedules_workers_and_leases_on_postgres() {
    let Some(b) = Browser::start("fleet-pg").await else {
        return;
    };
    let db = TestDb::new().await;
    exercise_fleet(&b, Client::builder(db.driver()), true).await;
    b.close().await;
}

#[tokio::test]
async fn fleet_pages_show_a_running_clients_schedules_workers_and_leases_on_sqlite() {
    let Some(b) = Browser::start("fleet-sqlite").await else {
        return;
    };
    let (client, _dir) = sqlite_client("fleet").await;
    exercise_fleet(&b, Client::builder(client.driver().clone()), false).await;
    b.close().await;
}
