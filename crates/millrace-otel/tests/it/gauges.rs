//! The queue gauges, read through the Prometheus page: jobs by queue and state, lag, running
//! jobs per client, the leader.

use std::time::Duration;

use millrace::{
    BoxError, Client, InsertManyParams, InsertOpts, PersistentContext, PersistentWorker,
};
use millrace_otel::QueueGauges;
use millrace_otel::prometheus::PrometheusMetrics;
use millrace_test::TestDb;

use crate::common::{Mode, Task, worker_client};

/// A persistent worker that runs until its token fires.
struct Idle;

impl PersistentWorker for Idle {
    async fn run(&self, ctx: PersistentContext) -> Result<(), BoxError> {
        ctx.cancelled().await;
        Ok(())
    }
}

fn parse(page: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(page.lines().map(|l| Ok(l.to_owned())))
        .expect("the page parses as Prometheus text")
}

fn gauge(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_report_counts_lag_running_jobs_persistent_holders_and_the_leader() {
    let db = TestDb::new().await;
    let inserter = Client::builder(db.driver()).build().unwrap();
    inserter
        .insert_many((0..3).map(|_| {
            InsertManyParams::new(Task {
                mode: Mode::Succeed,
            })
            .opts(InsertOpts::new().queue("waiting"))
        }))
        .await
        .unwrap();
    // Due a minute ago: the lag gauge reads the oldest available job's age.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {} SET scheduled_at = now() - interval '60 seconds' WHERE queue = 'waiting'",
        db.schema().qualify("river_job")
    )))
    .execute(db.pool())
    .await
    .unwrap();
    let held = inserter
        .insert(Task { mode: Mode::Hold }, None)
        .await
        .unwrap()
        .job;
    let worker = worker_client(&db, |b| b.persistent_worker("otel_idle", Idle));
    worker.start().await.unwrap();

    let metrics = PrometheusMetrics::new().unwrap();
    let gauges = QueueGauges::builder(inserter.clone())
        .interval(Duration::from_secs(1))
        .meter_provider(metrics.meter_provider())
        .start();
    let worker_id = worker.id().to_owned();
    // The held job runs, and this client leads, within a few refreshes.
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    let scrape = loop {
        let scrape = parse(&metrics.encode());
        let running = gauge(
            &scrape,
            "millrace_jobs_running",
            &[("client", &worker_id), ("queue", "default")],
        );
        let leads = gauge(
            &scrape,
            "millrace_leader",
            &[("leader", "river"), ("client", &worker_id)],
        );
        let holds = gauge(
            &scrape,
            "millrace_persistent_held",
            &[("name", "otel_idle"), ("holder", &worker_id)],
        );
        // Counts by state come from another statement of the same refresh, which may have
        // read the table a moment before the job started: wait for both to show it.
        let counted = gauge(
            &scrape,
            "millrace_jobs",
            &[("queue", "default"), ("state", "running")],
        );
        let ready = running == Some(1.0)
            && counted == Some(1.0)
            && leads == Some(1.0)
            && holds == Some(1.0);
        if ready || tokio::time::Instant::now() >= until {
            break scrape;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let page = metrics.encode();
    assert_eq!(
        gauge(
            &scrape,
            "millrace_jobs_running",
            &[("client", &worker_id), ("queue", "default")]
        ),
        Some(1.0),
        "job {} runs on {worker_id}:\n{page}",
        held.id
    );
    assert_eq!(
        gauge(
            &scrape,
            "millrace_leader",
            &[("leader", "river"), ("client", &worker_id)]
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        gauge(
            &scrape,
            "millrace_jobs",
            &[("queue", "waiting"), ("state", "available")]
        ),
        Some(3.0),
        "{page}"
    );
    assert_eq!(
        gauge(
            &scrape,
            "millrace_jobs",
            &[("queue", "waiting"), ("state", "retryable")]
        ),
        Some(0.0),
        "every live state is reported"
    );
    assert_eq!(
        gauge(
            &scrape,
            "millrace_jobs",
            &[("queue", "waiting"), ("state", "completed")]
        ),
        None,
        "final states are not counted: that would scan the whole table"
    );
    assert_eq!(
        gauge(
            &scrape,
            "millrace_jobs",
            &[("queue", "default"), ("state", "running")]
        ),
        Some(1.0)
    );
    let lag = gauge(
        &scrape,
        "millrace_queue_lag_seconds",
        &[("queue", "waiting")],
    )
    .expect("lag of waiting");
    assert!((59.0..600.0).contains(&lag), "lag {lag}");
    assert_eq!(
        gauge(
            &scrape,
            "millrace_queue_lag_seconds",
            &[("queue", "default")]
        ),
        Some(0.0),
        "nothing waits in default"
    );
    assert!(
        gauge(&scrape, "millrace_gauges_refresh_duration_seconds", &[]).is_some(),
        "{page}"
    );

    gauges.stop().await;
    worker.stop_and_cancel().await.unwrap();
}
