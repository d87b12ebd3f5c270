//! The chaos soak (issue 20): worker processes, an inserter process and a fault scheduler that,
//! at times drawn from a seed, kills and pauses workers, restarts PostgreSQL, terminates
//! backends, cuts, delays and half-opens the network between a worker and PostgreSQL (a proxy
//! on the loopback per worker), writes rows no client can decode, and on SQLite fills the file
//! to its page limit and holds its write lock from another process. Afterwards the ledger
//! checker (`millrace_test::soak`) must find nothing lost, nothing twice, no two holders of
//! the persistent worker at once, no periodic slot skipped or doubled, and no unique job twice.
//!
//! By default each test runs a fixed seed and one random seed (printed), about a minute in
//! all; `SOAK_SEED=n` replays one seed, `SOAK_SECS=n` sets how long faults go on per seed:
//!
//! ```text
//! SOAK_SEED=20 SOAK_SECS=900 cargo nextest run -p millrace-test --test soak --no-capture
//! ```
//!
//! PostgreSQL restarts happen on a private cluster (`millrace_test::pg_cluster`), never on the
//! shared server. Correctness is asserted strictly; time bounds are generous, since CI runs
//! this on two busy cores.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace::{Client, JobArgs, MigrateOpts, Migrator, Schema};
use millrace_postgres::PgDriver;
use millrace_sqlite::SqliteDriver;
use millrace_test::fault_plan::{FaultKind, FaultPlan, PlanSettings, PlannedFault};
use millrace_test::fault_proxy::{FaultProxy, NetFault};
use millrace_test::pg_cluster::Cluster;
use millrace_test::soak::{self, LedgerReport, Plain};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, SqlitePool};
use tokio::time::Instant;

/// The seed every default run replays.
const FIXED_SEED: u64 = 20;
/// How long faults go on per seed by default, PostgreSQL and SQLite.
const PG_SECS: u64 = 30;
const SQLITE_SECS: u64 = 15;
/// Worker processes.
const PG_WORKERS: usize = 3;
const SQLITE_WORKERS: usize = 2;
/// The workers' heartbeat and persistent lease: short, so that pauses and blackholes outlast it.
const LEASE: Duration = Duration::from_secs(4);
/// Jobs a second from the inserter.
const PG_RATE: u64 = 60;
const SQLITE_RATE: u64 = 30;
/// The longest the fleet may take to finish every job once faults stop (generous: CI is two
/// busy cores).
const DRAIN_DEADLINE: Duration = Duration::from_secs(150);
/// The longest a recovery is waited for; beyond it the fault counts as not recovered.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(90);
/// How long a process may take to say `ready`, or to exit after SIGTERM.
const PROCESS_DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_soak_loses_and_repeats_nothing() {
    for seed in seeds() {
        let secs = soak_secs(PG_SECS);
        eprintln!("postgres soak: seed {seed}, faults for {secs} s (SOAK_SEED={seed} replays it)");
        pg_soak(seed, Duration::from_secs(secs)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_soak_loses_and_repeats_nothing() {
    for seed in seeds() {
        let secs = soak_secs(SQLITE_SECS);
        eprintln!("sqlite soak: seed {seed}, faults for {secs} s (SOAK_SEED={seed} replays it)");
        sqlite_soak(seed, Duration::from_secs(secs)).await;
    }
}

/// `SOAK_SEED` alone, or the fixed seed and one drawn now.
fn seeds() -> Vec<u64> {
    match std::env::var("SOAK_SEED") {
        Ok(seed) => vec![seed.parse().expect("SOAK_SEED is a number")],
        Err(_) => {
            let random = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos() as u64
                ^ u64::from(std::process::id());
            vec![FIXED_SEED, random % 1_000_000]
        }
    }
}

fn soak_secs(default: u64) -> u64 {
    std::env::var("SOAK_SECS")
        .map(|s| s.parse().expect("SOAK_SECS is a number"))
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL.

async fn pg_soak(seed: u64, span: Duration) {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("start the cluster");
    let cluster = Arc::new(cluster);
    let url = cluster.url();
    let upstream: SocketAddr = format!("127.0.0.1:{}", cluster.port()).parse().unwrap();
    let schema = Schema::new("soak").unwrap();
    let options: PgConnectOptions = url.parse().unwrap();
    // Named so the backend terminator spares it: the checker must see the truth.
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(options.application_name("checker"));
    sqlx::raw_sql("CREATE SCHEMA soak")
        .execute(&pool)
        .await
        .unwrap();
    let driver = PgDriver::new(pool.clone()).with_schema(schema.clone());
    Migrator::new(driver.clone())
        .migrate_up(MigrateOpts::default())
        .await
        .expect("migrate");
    sqlx::raw_sql(AssertSqlSafe(soak::ledger_sql_pg(&schema)))
        .execute(&pool)
        .await
        .expect("create the ledger");
    let admin = Client::builder(driver).build().unwrap();

    let logs = LogDir::new(&format!("pg-{seed}"));
    let mut proxies = Vec::new();
    let mut workers = Vec::new();
    for w in 0..PG_WORKERS {
        let proxy = FaultProxy::start(upstream).await;
        let name = format!("soak_w{w}_0");
        workers.push(Some(
            Proc::spawn(
                &logs,
                &name,
                &[
                    "worker",
                    "--driver",
                    "pg",
                    "--database-url",
                    &proxy.url_for(&url),
                ],
                &[
                    "--schema",
                    "soak",
                    "--process",
                    &name,
                    "--lease-ms",
                    &LEASE.as_millis().to_string(),
                ],
            )
            .await,
        ));
        proxies.push(Arc::new(proxy));
    }
    let inserter = Proc::spawn(
        &logs,
        "soak_inserter",
        &["inserter", "--driver", "pg", "--database-url", &url],
        &[
            "--schema",
            "soak",
            "--process",
            "soak_inserter",
            "--rate",
            &PG_RATE.to_string(),
        ],
    )
    .await;

    let plan = FaultPlan::generate(
        seed,
        &PlanSettings {
            span,
            workers: PG_WORKERS,
            menu: FaultKind::POSTGRES.to_vec(),
            lease: LEASE,
            mean_gap: Duration::from_millis(1_500),
        },
    );
    eprint!("{}", plan.timeline());
    let workers = Arc::new(Mutex::new(workers));
    let recoveries = Arc::new(Mutex::new(Vec::new()));
    let restarting = Arc::new(tokio::sync::Mutex::new(()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (index, fault) in plan.faults.iter().cloned().enumerate() {
        tokio::time::sleep_until(started + fault.at).await;
        let ctx = PgFaultCtx {
            cluster: cluster.clone(),
            pool: pool.clone(),
            schema: schema.clone(),
            admin: admin.clone(),
            proxies: proxies.clone(),
            workers: workers.clone(),
            logs: logs.clone(),
            url: url.clone(),
            recoveries: recoveries.clone(),
            restarting: restarting.clone(),
        };
        tasks.push(tokio::spawn(async move { ctx.apply(index, fault).await }));
    }
    tokio::time::sleep_until(started + span).await;
    for task in tasks {
        // Each task is bounded by its hold and the recovery deadline.
        task.await.expect("a fault task panicked");
    }
    for proxy in &proxies {
        proxy.set(NetFault::Healthy);
    }
    let inserter_log = inserter.terminate().await;

    // Drain: every job reaches its final state, the cancel jobs cancelled as they run.
    let deadline = Instant::now() + DRAIN_DEADLINE;
    loop {
        if matches!(soak::mark_drained_pg(&pool, &schema).await, Ok(true)) {
            break;
        }
        let open = count_open_pg(&pool, &schema).await;
        if Instant::now() >= deadline {
            let report = soak::check_pg(&pool, &schema).await;
            let stuck = describe_open_pg(&pool, &schema).await;
            panic!(
                "seed {seed}: jobs still open {DRAIN_DEADLINE:?} after the faults stopped \
                 ({open:?}); {report:?}\n{stuck}\n{}\nlogs in {}",
                plan.timeline(),
                logs.dir.display()
            );
        }
        let _ = cancel_running(&admin).await;
        tokio::time::sleep(POLL * 5).await;
    }
    let workers = std::mem::take(&mut *lock(&workers));
    for worker in workers.into_iter().flatten() {
        worker.terminate().await;
    }

    let report = soak::check_pg(&pool, &schema)
        .await
        .expect("read the ledger");
    let recoveries = lock(&recoveries).clone();
    print_figures(
        "postgres",
        seed,
        span,
        &plan,
        &report,
        &recoveries,
        started.elapsed(),
    );
    assert_clean(seed, &plan, &report, &logs);
    assert!(
        report.jobs > 100 && report.periodic_jobs > 2 && report.persistent_holders > 0,
        "seed {seed}: the soak ran too little to prove anything: {report}; inserter log: {:?}",
        inserter_log.lines().rev().take(5).collect::<Vec<_>>()
    );
    pool.close().await;
    drop(cluster);
    logs.remove();
}

#[derive(Clone)]
struct PgFaultCtx {
    cluster: Arc<Cluster>,
    pool: PgPool,
    schema: Schema,
    admin: Client<PgDriver>,
    proxies: Vec<Arc<FaultProxy>>,
    workers: Arc<Mutex<Vec<Option<Proc>>>>,
    logs: LogDir,
    url: String,
    recoveries: Arc<Mutex<Vec<(FaultKind, Outcome)>>>,
    restarting: Arc<tokio::sync::Mutex<()>>,
}

impl PgFaultCtx {
    async fn apply(self, index: usize, fault: PlannedFault) {
        let w = fault.worker;
        // For outages the recovery counts from their end; for instant faults and kills, from
        // the fault itself.
        let healed = match fault.kind {
            FaultKind::KillWorker => {
                // A worker still starting again after an earlier fault is spared: its slot is
                // empty until it says `ready`.
                let Some(old) = lock(&self.workers)[w].take() else {
                    lock(&self.recoveries).push((FaultKind::KillWorker, Outcome::Skipped));
                    return;
                };
                let healed = old.kill();
                let watch = self.snapshot().await;
                tokio::time::sleep(fault.hold).await;
                let name = format!("soak_w{w}_{}", index + 1);
                let new = Proc::spawn(
                    &self.logs,
                    &name,
                    &[
                        "worker",
                        "--driver",
                        "pg",
                        "--database-url",
                        &self.proxies[w].url_for(&self.url),
                    ],
                    &[
                        "--schema",
                        "soak",
                        "--process",
                        &name,
                        "--lease-ms",
                        &LEASE.as_millis().to_string(),
                    ],
                )
                .await;
                lock(&self.workers)[w] = Some(new);
                self.recover(fault.kind, healed, watch).await;
                return;
            }
            FaultKind::PauseWorker => {
                // Counted from the pause: the fleet must rescue the paused worker's jobs
                // while it sleeps, within its lease.
                let Some(pid) = lock(&self.workers)[w].as_ref().map(Proc::pid) else {
                    lock(&self.recoveries).push((FaultKind::PauseWorker, Outcome::Skipped));
                    return;
                };
                signal(pid, "-STOP");
                let paused = Instant::now();
                // The pause ends on time whatever the database does meanwhile.
                let resume = async {
                    tokio::time::sleep(fault.hold).await;
                    signal(pid, "-CONT");
                };
                let measure = async {
                    let watch = self.snapshot().await;
                    self.recover(fault.kind, paused, watch).await;
                };
                tokio::join!(resume, measure);
                return;
            }
            FaultKind::RestartPostgres => {
                // A restart still under way (a slow start on busy cores) spares this one:
                // stopping a server that is already down would fail.
                let Ok(_restarting) = self.restarting.clone().try_lock_owned() else {
                    lock(&self.recoveries).push((FaultKind::RestartPostgres, Outcome::Skipped));
                    return;
                };
                let cluster = self.cluster.clone();
                let hold = fault.hold;
                tokio::task::spawn_blocking(move || cluster.restart(hold))
                    .await
                    .expect("restart postgres");
                Instant::now()
            }
            FaultKind::TerminateBackends => {
                let _ = sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name LIKE 'soak\\_%' AND pid <> pg_backend_pid()",
                )
                .execute(&self.pool)
                .await;
                Instant::now()
            }
            FaultKind::Blackhole | FaultKind::HalfOpen | FaultKind::Latency => {
                self.proxies[w].set(match fault.kind {
                    FaultKind::Blackhole => NetFault::Blackhole,
                    FaultKind::HalfOpen => NetFault::HalfOpen,
                    _ => NetFault::Latency(fault.delay),
                });
                tokio::time::sleep(fault.hold).await;
                self.proxies[w].set(NetFault::Healthy);
                Instant::now()
            }
            FaultKind::ResetConnections => {
                self.proxies[w].reset();
                Instant::now()
            }
            FaultKind::HostileRows => {
                insert_hostile_rows(&self.pool, &self.schema).await;
                Instant::now()
            }
            FaultKind::DiskFull | FaultKind::WriteLock => unreachable!("SQLite faults"),
        };
        let watch = self.snapshot().await;
        self.recover(fault.kind, healed, watch).await;
    }

    /// The running jobs (but the persistent instance) at this moment, by (id, attempt).
    async fn snapshot(&self) -> Vec<(i64, i16)> {
        let sql = format!(
            "SELECT id, attempt FROM {} WHERE state = 'running' AND kind NOT LIKE 'millrace_persistent:%'",
            self.schema.qualify("river_job")
        );
        let deadline = Instant::now() + RECOVERY_DEADLINE;
        loop {
            match sqlx::query_as(AssertSqlSafe(sql.clone()))
                .fetch_all(&self.pool)
                .await
            {
                Ok(rows) => return rows,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
                Err(_) => return Vec::new(),
            }
        }
    }

    /// Waits until a probe job inserted now completes and every job running at the fault has
    /// moved on (finished, or rescued and running again), and records how long that took.
    async fn recover(&self, kind: FaultKind, from: Instant, watch: Vec<(i64, i16)>) {
        let deadline = from + RECOVERY_DEADLINE;
        let probe = loop {
            match insert_probe(&self.admin, &self.pool, &self.schema).await {
                Ok(id) => break Some(id),
                Err(_) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
                Err(_) => break None,
            }
        };
        let ids: Vec<i64> = watch.iter().map(|(id, _)| *id).collect();
        let attempts: Vec<i16> = watch.iter().map(|(_, a)| *a).collect();
        let sql = format!(
            "SELECT (SELECT state = 'completed' FROM {job} WHERE id = $1) \
             AND NOT EXISTS (SELECT 1 FROM {job} j JOIN unnest($2::bigint[], $3::smallint[]) \
                 AS w(id, attempt) ON j.id = w.id AND j.attempt = w.attempt \
                 WHERE j.state = 'running')",
            job = self.schema.qualify("river_job")
        );
        let took = loop {
            let Some(probe) = probe else { break None };
            let done: Result<Option<bool>, _> = sqlx::query_scalar(AssertSqlSafe(sql.clone()))
                .bind(probe)
                .bind(&ids)
                .bind(&attempts)
                .fetch_one(&self.pool)
                .await;
            if let Ok(Some(true)) = done {
                break Some(from.elapsed());
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(POLL).await;
        };
        lock(&self.recoveries).push((kind, took.into()));
    }
}

/// Inserts a plain job and records it in the ledger, in one transaction; returns its id.
async fn insert_probe(
    admin: &Client<PgDriver>,
    pool: &PgPool,
    schema: &Schema,
) -> Result<i64, Box<dyn std::error::Error + Send + Sync>> {
    let mut tx = pool.begin().await?;
    let job = admin.insert_tx(&mut tx, Plain { n: -1 }, None).await?.job;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {} (job_id, kind) VALUES ($1, 'soak_plain')",
        schema.qualify("soak_inserted")
    )))
    .bind(job.id.0)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(job.id.0)
}

/// Rows no River client writes, as another client or a hand might (issue 13): args that do
/// not decode, an error entry whose time does not parse, and a NULL tag. Each must reach a
/// final state on its own, without stalling the rest.
async fn insert_hostile_rows(pool: &PgPool, schema: &Schema) {
    let sql = format!(
        "WITH j AS (INSERT INTO {job} \
             (state, attempt, max_attempts, priority, queue, kind, args, metadata, scheduled_at, tags, errors) \
         VALUES \
             ('available', 0, 1, 1, 'default', $1, '{{\"n\":\"not a number\"}}', '{{}}', now(), '{{}}', NULL), \
             ('available', 0, 2, 1, 'default', $1, '{{\"n\":1}}', '{{}}', now(), '{{}}', \
                 ARRAY['{{\"at\":\"yesterday\",\"attempt\":1,\"error\":\"x\"}}'::jsonb]), \
             ('available', 0, 2, 1, 'default', $1, '{{\"n\":2}}', '{{}}', now(), \
                 ARRAY['a', NULL]::varchar[], NULL) \
         RETURNING id) \
         INSERT INTO {inserted} (job_id, kind) SELECT id, 'hostile' FROM j",
        job = schema.qualify("river_job"),
        inserted = schema.qualify("soak_inserted"),
    );
    let _ = sqlx::query(AssertSqlSafe(sql))
        .bind(soak::HOSTILE_KIND)
        .execute(pool)
        .await;
}

/// The rows still open and the client heartbeats, as text: what a stuck drain needs to be
/// understood once the private cluster is gone.
async fn describe_open_pg(pool: &PgPool, schema: &Schema) -> String {
    let rows: Result<Vec<(String,)>, _> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT format('job %s %s %s attempt %s attempted_at %s by %s scheduled_at %s \
                 metadata %s errors %s', id, kind, state, attempt, attempted_at, attempted_by, \
                 scheduled_at, metadata, errors) \
         FROM {} WHERE finalized_at IS NULL ORDER BY id LIMIT 20",
        schema.qualify("river_job")
    )))
    .fetch_all(pool)
    .await;
    let clients: Result<Vec<(String,)>, _> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT format('client %s started %s heartbeat %s lease until %s (now %s)', id, \
                 started_at, heartbeat_at, lease_expires_at, now()) \
         FROM {} ORDER BY id",
        schema.qualify("millrace_client")
    )))
    .fetch_all(pool)
    .await;
    let lines = |r: Result<Vec<(String,)>, sqlx::Error>| match r {
        Ok(rows) => rows
            .into_iter()
            .map(|(line,)| line)
            .collect::<Vec<_>>()
            .join("\n"),
        Err(err) => format!("(could not read: {err})"),
    };
    format!("open rows:\n{}\nclients:\n{}", lines(rows), lines(clients))
}

/// Jobs not yet final, but the persistent instance.
async fn count_open_pg(pool: &PgPool, schema: &Schema) -> Result<i64, String> {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {} WHERE finalized_at IS NULL \
         AND kind NOT LIKE 'millrace_persistent:%'",
        schema.qualify("river_job")
    )))
    .fetch_one(pool)
    .await
    .map_err(|err| err.to_string())
}

async fn cancel_running(admin: &Client<PgDriver>) -> millrace::Result<()> {
    let running = admin
        .job_list(
            millrace::JobListParams::new()
                .kinds([soak::CancelMidRun::KIND])
                .states([millrace::JobState::Running])
                .limit(100),
        )
        .await?;
    for job in running.jobs {
        admin.job_cancel(job.id).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// SQLite.

async fn sqlite_soak(seed: u64, span: Duration) {
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

// ---------------------------------------------------------------------------------------------
// Figures and verdicts.

fn assert_clean(seed: u64, plan: &FaultPlan, report: &LedgerReport, logs: &LogDir) {
    assert!(
        report.is_clean(),
        "seed {seed} broke the ledger ({report}):\n{}\n{}\nprocess logs in {}; replay with \
         SOAK_SEED={seed}",
        report.violations().join("\n"),
        plan.timeline(),
        logs.dir.display()
    );
}

fn print_figures(
    driver: &str,
    seed: u64,
    span: Duration,
    plan: &FaultPlan,
    report: &LedgerReport,
    recoveries: &[(FaultKind, Outcome)],
    elapsed: Duration,
) {
    let mut by_kind: BTreeMap<FaultKind, (Vec<Duration>, usize)> = BTreeMap::new();
    let mut skipped: BTreeMap<FaultKind, usize> = BTreeMap::new();
    for (kind, outcome) in recoveries {
        let entry = by_kind.entry(*kind).or_default();
        match outcome {
            Outcome::Recovered(took) => entry.0.push(*took),
            Outcome::NotRecovered => entry.1 += 1,
            Outcome::Skipped => *skipped.entry(*kind).or_default() += 1,
        }
    }
    eprintln!(
        "SOAK {driver} seed {seed}: faults for {span:?}, {elapsed:.1?} in all; {} faults; {report}",
        plan.faults.len()
    );
    eprintln!(
        "SOAK {driver} seed {seed}: recovery per fault kind (applied, p50, p95, max, not \
         recovered, skipped):"
    );
    for (kind, (mut times, missed)) in by_kind {
        times.sort();
        let pick = |q: f64| {
            times
                .get(((times.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .map_or("-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()))
        };
        eprintln!(
            "SOAK   {:<20} {:>4} {:>7} {:>7} {:>7} {:>4} {:>4}",
            kind.name(),
            times.len() + missed,
            pick(0.5),
            pick(0.95),
            pick(1.0),
            missed,
            skipped.get(&kind).copied().unwrap_or(0)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Processes.

/// Where one soak's processes log (and, on SQLite, its database lives); kept when the soak
/// fails, removed when it passes.
#[derive(Clone)]
struct LogDir {
    dir: PathBuf,
}

impl LogDir {
    fn new(name: &str) -> LogDir {
        let dir = std::env::temp_dir().join(format!("millrace-soak-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the soak's folder");
        LogDir { dir }
    }

    fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A soak process, killed if the test ends without stopping it.
struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts a process and waits for its `ready`. A worker whose client cannot start (the
    /// database is down, say) exits with an error; like a process supervisor, this starts it
    /// again, a bounded number of times.
    async fn spawn(logs: &LogDir, name: &str, args: &[&str], more: &[&str]) -> Proc {
        const STARTS: u32 = 20;
        let mut failures = Vec::new();
        for start in 0..STARTS {
            match Proc::try_spawn(logs, &format!("{name}.{start}"), args, more).await {
                Ok(proc) => return proc,
                Err(log) => failures.push(log),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!(
            "{name} did not start in {STARTS} tries; the last said:\n{}",
            failures.last().map_or("", String::as_str)
        );
    }

    async fn try_spawn(
        logs: &LogDir,
        name: &str,
        args: &[&str],
        more: &[&str],
    ) -> Result<Proc, String> {
        let log = logs.dir.join(format!("{name}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_millrace-soak-worker"))
            .args(args)
            .args(more)
            // Ends by itself should this test die without stopping it.
            .args(["--seconds", "7200"])
            .env("RUST_LOG", "warn,millrace=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("create a log file"))
            .spawn()
            .expect("spawn millrace-soak-worker");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // Ends at `ready`, or when the process closes its stdout by exiting.
        let ready = tokio::task::spawn_blocking(move || rx.recv_timeout(PROCESS_DEADLINE))
            .await
            .expect("wait for ready");
        let proc = Proc {
            child: Some(child),
            log,
        };
        if matches!(ready.as_deref(), Ok("ready")) {
            Ok(proc)
        } else {
            Err(proc.lines().join("\n"))
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// SIGKILL, reaped; returns when it was killed.
    fn kill(mut self) -> Instant {
        let mut child = self.child.take().expect("a live process");
        let _ = child.kill();
        let at = Instant::now();
        let _ = child.wait();
        at
    }

    /// Waits for the process to exit by itself.
    async fn wait_exit(mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("a live process");
        while child.try_wait().expect("wait").is_none() {
            assert!(
                Instant::now() < deadline,
                "a process did not exit within {limit:?}"
            );
            tokio::time::sleep(POLL).await;
        }
        self.child = None;
    }

    /// SIGTERM, then waits for a clean exit; returns its log.
    async fn terminate(mut self) -> String {
        let pid = self.pid();
        signal(pid, "-TERM");
        let deadline = Instant::now() + PROCESS_DEADLINE;
        let mut child = self.child.take().expect("a live process");
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "process {pid} did not exit within {PROCESS_DEADLINE:?} of SIGTERM"
            );
            tokio::time::sleep(POLL).await;
        };
        let log = self.lines().join("\n");
        assert!(
            status.success(),
            "process {pid} exited with {status}:\n{log}"
        );
        log
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What became of one fault.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// The fleet recovered this long after the fault (see `PgFaultCtx::recover`).
    Recovered(Duration),
    /// Not within the recovery deadline.
    NotRecovered,
    /// Not applied: its worker was still starting again after an earlier fault.
    Skipped,
}

impl From<Option<Duration>> for Outcome {
    fn from(took: Option<Duration>) -> Outcome {
        took.map_or(Outcome::NotRecovered, Outcome::Recovered)
    }
}

/// Locks a mutex shared by the fault tasks; a task that panicked holding it has already
/// failed the soak, so the others read on.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn signal(pid: u32, which: &str) {
    // `kill` with pid 0 would signal the whole process group, this test included.
    assert!(pid > 0, "no process to signal");
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} {pid} failed");
}
