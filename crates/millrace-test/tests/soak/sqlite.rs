//! The SQLite soak: its run and its faults, a full file and a write lock held by another
//! process among them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace::{Client, MigrateOpts, Migrator};
use millrace_sqlite::SqliteDriver;
use millrace_test::fault_plan::{FaultKind, FaultPlan, PlanSettings, PlannedFault};
use millrace_test::soak::{self, Plain};
use sqlx::SqlitePool;
use tokio::time::Instant;

use super::harness::{
    DRAIN_DEADLINE, LEASE, LogDir, POLL, PROCESS_DEADLINE, Proc, RECOVERY_DEADLINE, lock, signal,
};
use super::verdict::{Outcome, assert_clean, print_figures};

/// Worker processes.
const SQLITE_WORKERS: usize = 2;
/// Jobs a second from the inserter.
const SQLITE_RATE: u64 = 30;

pub(crate) async fn sqlite_soak(seed: u64, span: Duration) {
    let logs = LogDir::new(&format!("sqlite-{seed}"));
    let path = logs.dir.join("soak.sqlite3");
    let path_str = path.display().to_string();
    let options = SqliteDriver::connect_options(&path_str)
        .unwrap()
        .pragma("max_page_count", soak::SQLITE_MAX_PAGES.to_string());
    let driver = SqliteDriver::open_with(options).await.expect("open SQLite");
    Migrator::new(driver.clone())
        .migrate_up(MigrateOpts::default())
        .await
        .expect("migrate SQLite");
    let pool = driver.pool().clone();
    sqlx::raw_sql(soak::ledger_sql_sqlite())
        .execute(&pool)
        .await
        .expect("create the ledger");

    let mut workers = Vec::new();
    for w in 0..SQLITE_WORKERS {
        let name = format!("soak_w{w}_0");
        workers.push(Some(
            Proc::spawn(
                &logs,
                &name,
                &["worker", "--driver", "sqlite", "--database-url", &path_str],
                &[
                    "--process",
                    &name,
                    "--lease-ms",
                    &LEASE.as_millis().to_string(),
                ],
            )
            .await,
        ));
    }
    let inserter = Proc::spawn(
        &logs,
        "soak_inserter",
        &[
            "inserter",
            "--driver",
            "sqlite",
            "--database-url",
            &path_str,
        ],
        &[
            "--process",
            "soak_inserter",
            "--rate",
            &SQLITE_RATE.to_string(),
        ],
    )
    .await;
    let plan = FaultPlan::generate(
        seed,
        &PlanSettings {
            span,
            workers: SQLITE_WORKERS,
            menu: FaultKind::SQLITE.to_vec(),
            lease: LEASE,
            mean_gap: Duration::from_millis(2_000),
        },
    );
    eprint!("{}", plan.timeline());
    let workers = Arc::new(Mutex::new(workers));
    let recoveries = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (index, fault) in plan.faults.iter().cloned().enumerate() {
        tokio::time::sleep_until(started + fault.at).await;
        let ctx = SqliteFaultCtx {
            driver: driver.clone(),
            workers: workers.clone(),
            logs: logs.clone(),
            path: path_str.clone(),
            recoveries: recoveries.clone(),
        };
        tasks.push(tokio::spawn(async move { ctx.apply(index, fault).await }));
    }
    tokio::time::sleep_until(started + span).await;
    for task in tasks {
        task.await.expect("a fault task panicked");
    }
    let recoveries = lock(&recoveries).clone();
    inserter.terminate().await;
    let deadline = Instant::now() + DRAIN_DEADLINE;
    loop {
        let open: Result<i64, _> =
            sqlx::query_scalar("SELECT count(*) FROM river_job WHERE finalized_at IS NULL")
                .fetch_one(&pool)
                .await;
        if matches!(open, Ok(0)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: jobs still open {DRAIN_DEADLINE:?} after the faults stopped ({open:?})\n{}\nlogs in {}",
            plan.timeline(),
            logs.dir.display()
        );
        tokio::time::sleep(POLL * 5).await;
    }
    let workers = std::mem::take(&mut *lock(&workers));
    for worker in workers.into_iter().flatten() {
        worker.terminate().await;
    }
    let report = soak::check_sqlite(&pool).await.expect("read the ledger");
    print_figures(
        "sqlite",
        seed,
        span,
        &plan,
        &report,
        &recoveries,
        started.elapsed(),
    );
    assert_clean(seed, &plan, &report, &logs);
    assert!(
        report.jobs > 50,
        "seed {seed}: the soak ran too little: {report}"
    );
    pool.close().await;
    logs.remove();
}

#[derive(Clone)]
struct SqliteFaultCtx {
    driver: SqliteDriver,
    workers: Arc<Mutex<Vec<Option<Proc>>>>,
    logs: LogDir,
    path: String,
    recoveries: Arc<Mutex<Vec<(FaultKind, Outcome)>>>,
}

impl SqliteFaultCtx {
    async fn apply(self, index: usize, fault: PlannedFault) {
        let w = fault.worker;
        let pool = self.driver.pool();
        let from = match fault.kind {
            FaultKind::KillWorker => {
                let Some(old) = lock(&self.workers)[w].take() else {
                    lock(&self.recoveries).push((FaultKind::KillWorker, Outcome::Skipped));
                    return;
                };
                let killed = old.kill();
                tokio::time::sleep(fault.hold).await;
                let name = format!("soak_w{w}_{}", index + 1);
                let new = Proc::spawn(
                    &self.logs,
                    &name,
                    &["worker", "--driver", "sqlite", "--database-url", &self.path],
                    &[
                        "--process",
                        &name,
                        "--lease-ms",
                        &LEASE.as_millis().to_string(),
                    ],
                )
                .await;
                lock(&self.workers)[w] = Some(new);
                killed
            }
            FaultKind::PauseWorker => {
                let Some(pid) = lock(&self.workers)[w].as_ref().map(Proc::pid) else {
                    lock(&self.recoveries).push((FaultKind::PauseWorker, Outcome::Skipped));
                    return;
                };
                signal(pid, "-STOP");
                let paused = Instant::now();
                let (took, ()) = tokio::join!(recover_sqlite(&self.driver, paused), async {
                    tokio::time::sleep(fault.hold).await;
                    signal(pid, "-CONT");
                });
                lock(&self.recoveries).push((fault.kind, took.into()));
                return;
            }
            FaultKind::DiskFull => {
                fill(pool).await;
                tokio::time::sleep(fault.hold).await;
                let deadline = Instant::now() + RECOVERY_DEADLINE;
                while sqlx::query("DELETE FROM soak_filler")
                    .execute(pool)
                    .await
                    .is_err()
                {
                    assert!(Instant::now() < deadline, "could not free the filled pages");
                    tokio::time::sleep(POLL).await;
                }
                Instant::now()
            }
            FaultKind::WriteLock => {
                let hold = fault.hold.as_millis().to_string();
                let holder = Proc::spawn(
                    &self.logs,
                    &format!("lock_{index}"),
                    &["lock", "--database-url", &self.path],
                    &["--hold-ms", &hold],
                )
                .await;
                holder.wait_exit(fault.hold + PROCESS_DEADLINE).await;
                Instant::now()
            }
            other => unreachable!("{other} is not a SQLite fault"),
        };
        let took = recover_sqlite(&self.driver, from).await;
        lock(&self.recoveries).push((fault.kind, took.into()));
    }
}

/// Fills the file to its page limit with blobs, until SQLite reports it full (bounded).
async fn fill(pool: &SqlitePool) {
    for _ in 0..(soak::SQLITE_MAX_PAGES / 64 + 10) {
        // 256 KiB a row: 64 pages.
        let filled = sqlx::query("INSERT INTO soak_filler (data) VALUES (zeroblob(262144))")
            .execute(pool)
            .await;
        if let Err(err) = filled {
            if err.to_string().contains("full") {
                return;
            }
        }
    }
    panic!("SQLite never reported the file full");
}

/// Waits until a probe job inserted now completes; the time from `from`, or `None` past the
/// recovery deadline.
async fn recover_sqlite(driver: &SqliteDriver, from: Instant) -> Option<Duration> {
    let deadline = from + RECOVERY_DEADLINE;
    let pool = driver.pool();
    let client = Client::builder(driver.clone()).build().unwrap();
    let probe = loop {
        let inserted = async {
            let mut tx = pool.begin().await?;
            let job = client.insert_tx(&mut tx, Plain { n: -1 }, None).await?.job;
            sqlx::query("INSERT INTO soak_inserted (job_id, kind) VALUES (?, 'soak_plain')")
                .bind(job.id.0)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(job.id.0)
        }
        .await;
        match inserted {
            Ok(id) => break id,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
            Err(_) => return None,
        }
    };
    loop {
        let state: Result<String, _> =
            sqlx::query_scalar("SELECT state FROM river_job WHERE id = ?")
                .bind(probe)
                .fetch_one(pool)
                .await;
        if matches!(state.as_deref(), Ok("completed")) {
            return Some(from.elapsed());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}
