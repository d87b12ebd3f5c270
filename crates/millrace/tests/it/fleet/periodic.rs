//! Periodic jobs across the fleet: on start, on the interval, after missed runs and across a
//! leader change, and the recipe that keeps exactly one seeded instance.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use millrace::{
    Client, InsertOpts, Job, JobArgs, JobState, PeriodicJob, Schedule, UniqueOpts, WorkError,
    Worker, Workers,
};
use serde::{Deserialize, Serialize};

use crate::fixture::{
    D, TestDb, sql_epoch, sql_metadata_is_true, sql_metadata_text, sql_now, sql_now_plus,
};

use super::{Tick, TickWorker, builder, eventually, exec, scalar};

async fn periodic_jobs_of(db: &TestDb, id: &str) -> i64 {
    scalar(
        db,
        &format!(
            "SELECT count(*) FROM {{job}} WHERE {} = '{id}' AND {}",
            sql_metadata_text("river:periodic_job_id"),
            sql_metadata_is_true("periodic")
        ),
    )
    .await
}

#[tokio::test]
async fn periodic_job_runs_on_start_and_on_its_interval() {
    let db = TestDb::new().await;
    let job = PeriodicJob::new(Schedule::interval(Duration::from_millis(300)), || {
        (Tick {}, None)
    })
    .id("every_300ms")
    .run_on_start(true);
    let client = builder(&db, "scheduler").periodic_job(job).build().unwrap();
    client.start().await.unwrap();
    eventually("three runs", || async {
        periodic_jobs_of(&db, "every_300ms").await >= 3
    })
    .await;
    let stored: i64 = scalar(
        &db,
        &format!(
            "SELECT count(*) FROM {{periodic}} WHERE id = 'every_300ms' AND next_run_at > {}",
            sql_now_plus(-60)
        ),
    )
    .await;
    assert_eq!(stored, 1, "the next run is stored");
    // Removed at run time: no more runs.
    assert!(client.periodic_jobs().remove_by_id("every_300ms"));
    client.stop().await.unwrap();
}

#[tokio::test]
async fn run_on_start_waits_for_a_stored_next_run() {
    let db = TestDb::new().await;
    exec(
        &db,
        &format!(
            "INSERT INTO {{periodic}} (id, next_run_at) VALUES ('stored', {})",
            sql_now_plus(3600)
        ),
    )
    .await;
    let stored = PeriodicJob::new(Schedule::interval(Duration::from_secs(3600)), || {
        (Tick {}, None)
    })
    .id("stored")
    .run_on_start(true);
    let fresh = PeriodicJob::new(Schedule::interval(Duration::from_secs(3600)), || {
        (Tick {}, None)
    })
    .id("fresh")
    .run_on_start(true);
    let client = builder(&db, "scheduler")
        .periodic_job(stored)
        .periodic_job(fresh)
        .build()
        .unwrap();
    client.start().await.unwrap();
    eventually("the fresh job runs on start", || async {
        periodic_jobs_of(&db, "fresh").await == 1
    })
    .await;
    // Both are handled in the same pass, so the stored one had its chance.
    assert_eq!(periodic_jobs_of(&db, "stored").await, 0);
    client.stop().await.unwrap();
}

#[tokio::test]
async fn missed_runs_coalesce_into_one() {
    let db = TestDb::new().await;
    // The next run was due an hour ago: many 1-minute ticks were missed while no client ran.
    exec(
        &db,
        &format!(
            "INSERT INTO {{periodic}} (id, next_run_at) VALUES ('minutely', {})",
            sql_now_plus(-3600)
        ),
    )
    .await;
    let job = PeriodicJob::new(Schedule::interval(Duration::from_secs(60)), || {
        (Tick {}, None)
    })
    .id("minutely");
    let client = builder(&db, "scheduler").periodic_job(job).build().unwrap();
    client.start().await.unwrap();
    eventually("the missed run", || async {
        periodic_jobs_of(&db, "minutely").await >= 1
    })
    .await;
    let next_in_future: bool = scalar(
        &db,
        &format!(
            "SELECT next_run_at > {} FROM {{periodic}} WHERE id = 'minutely'",
            sql_now()
        ),
    )
    .await;
    assert!(next_in_future);
    assert_eq!(
        periodic_jobs_of(&db, "minutely").await,
        1,
        "missed runs coalesce"
    );
    client.stop().await.unwrap();
}

#[tokio::test]
async fn three_clients_insert_one_job_per_tick_across_a_leader_change() {
    let db = TestDb::new().await;
    let job = || {
        PeriodicJob::new(Schedule::interval(Duration::from_millis(500)), || {
            (Tick {}, None)
        })
        .id("shared_tick")
    };
    let clients: Vec<Client<D>> = (0..3)
        .map(|n| {
            builder(&db, &format!("client-{n}"))
                .periodic_job(job())
                .build()
                .unwrap()
        })
        .collect();
    for c in &clients {
        c.start().await.unwrap();
    }
    eventually("two ticks", || async {
        periodic_jobs_of(&db, "shared_tick").await >= 2
    })
    .await;
    // Stop the Millrace leaseholder: another takes over the schedule from the stored next run.
    let holder: String = scalar(
        &db,
        &format!(
            "SELECT leader_id FROM {}",
            db.schema().qualify("millrace_leader")
        ),
    )
    .await;
    let index = clients.iter().position(|c| c.id() == holder).unwrap();
    clients[index].stop().await.unwrap();
    let before = periodic_jobs_of(&db, "shared_tick").await;
    eventually("ticks continue under the new holder", || async {
        periodic_jobs_of(&db, "shared_tick").await >= before + 3
    })
    .await;
    // Exactly one job per tick: consecutive runs are at least most of an interval apart.
    let created = sql_epoch("created_at");
    let min_gap_ms: f64 = scalar(
        &db,
        &format!(
            "SELECT coalesce(min(gap), 1e9) FROM (SELECT ({created} - lag({created}) OVER (ORDER BY created_at)) * 1000 AS gap FROM {{job}} WHERE {} = 'shared_tick') g",
            sql_metadata_text("river:periodic_job_id")
        ),
    )
    .await;
    assert!(min_gap_ms > 350.0, "two runs {min_gap_ms} ms apart");
    for (n, c) in clients.iter().enumerate() {
        if n != index {
            c.stop().await.unwrap();
        }
    }
}

/// The seed recipe River documents for a single long-running instance.
#[derive(Debug, Serialize, Deserialize)]
struct Seed {}

impl JobArgs for Seed {
    const KIND: &'static str = "seed";

    fn insert_opts() -> InsertOpts {
        InsertOpts::new().unique(UniqueOpts::new().by_state([
            JobState::Available,
            JobState::Pending,
            JobState::Running,
            JobState::Retryable,
            JobState::Scheduled,
        ]))
    }
}

#[derive(Clone)]
struct SeedWorker {
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
    finish: Arc<AtomicBool>,
}

impl Worker for SeedWorker {
    type Args = Seed;

    async fn work(&self, job: Job<Seed>) -> Result<(), WorkError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        // Loops until its token fires or the test lets it finish.
        while !job.is_cancelled() && !self.finish.swap(false, Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    fn timeout(&self, _job: &Job<Seed>) -> Option<Duration> {
        Some(Duration::MAX)
    }
}

#[tokio::test]
async fn seed_recipe_keeps_exactly_one_instance() {
    let db = TestDb::new().await;
    let worker = SeedWorker {
        running: Arc::new(AtomicUsize::new(0)),
        max_running: Arc::new(AtomicUsize::new(0)),
        finish: Arc::new(AtomicBool::new(false)),
    };
    let clients: Vec<Client<D>> = (0..3)
        .map(|n| {
            let mut workers = Workers::new();
            workers.register(worker.clone()).unwrap();
            workers.register(TickWorker::default()).unwrap();
            builder(&db, &format!("seed-{n}"))
                .workers(workers)
                .periodic_job(
                    PeriodicJob::new(Schedule::interval(Duration::from_millis(200)), || {
                        (Seed {}, None)
                    })
                    .id("seed")
                    .run_on_start(true),
                )
                .build()
                .unwrap()
        })
        .collect();
    for c in &clients {
        c.start().await.unwrap();
    }
    let seeds =
        || async { scalar::<i64>(&db, "SELECT count(*) FROM {job} WHERE kind = 'seed'").await };
    eventually("the instance runs", || async {
        worker.running.load(Ordering::SeqCst) == 1
    })
    .await;
    // Many ticks pass: the live instance blocks every new insert, and is not restarted.
    let next_run_secs = format!(
        "SELECT CAST({} AS BIGINT) FROM {{periodic}} WHERE id = 'seed'",
        sql_epoch("next_run_at")
    );
    let ticks_before = scalar::<i64>(&db, &next_run_secs).await;
    eventually("several ticks", || async {
        scalar::<i64>(&db, &next_run_secs).await > ticks_before
    })
    .await;
    assert_eq!(seeds().await, 1);
    // Once it completes, the next tick starts a new one.
    worker.finish.store(true, Ordering::SeqCst);
    eventually("a new instance", || async {
        seeds().await == 2 && worker.running.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(
        worker.max_running.load(Ordering::SeqCst),
        1,
        "never two at once"
    );
    for c in &clients {
        c.stop_and_cancel().await.unwrap();
    }
}
