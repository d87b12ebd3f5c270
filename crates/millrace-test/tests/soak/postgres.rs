//! The PostgreSQL soak: its run, its faults on a private cluster, and what it asks the
//! database while it waits.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace::{Client, JobArgs, MigrateOpts, Migrator, Schema};
use millrace_postgres::PgDriver;
use millrace_test::fault_plan::{FaultKind, FaultPlan, PlanSettings, PlannedFault};
use millrace_test::fault_proxy::{FaultProxy, NetFault};
use millrace_test::pg_cluster::Cluster;
use millrace_test::soak::{self, Plain};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use tokio::time::Instant;

use super::harness::{DRAIN_DEADLINE, LEASE, LogDir, POLL, Proc, RECOVERY_DEADLINE, lock, signal};
use super::verdict::{Outcome, assert_clean, print_figures};

/// Worker processes.
const PG_WORKERS: usize = 3;
/// Jobs a second from the inserter.
const PG_RATE: u64 = 60;

pub(crate) async fn pg_soak(seed: u64, span: Duration) {
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
