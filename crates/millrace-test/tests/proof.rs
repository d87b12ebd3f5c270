//! The proof under load (issue 3, point 6), against a real PostgreSQL:
//!
//! - 10,000 jobs worked by three clients, one of them in an OS process of its own
//!   (`millrace-load-worker`), each job exactly once;
//! - the same while the clients' connections are killed with `pg_terminate_backend`, while
//!   PostgreSQL restarts (a private cluster on a port of its own, never the shared server), and
//!   while replies are lost after the server committed (a proxy drops them): a fetch whose
//!   reply was lost gives its rows back, also when the client stops right after it;
//! - jobs crossing between Millrace and River's own clients: the `riverqueue` crate both ways,
//!   and River's Python client inserting;
//! - 10,000 jobs in 100 sequences over three processes: none overlap, none reorder
//!   (`proof/sequences.rs`, issue 19);
//! - a global limit of 2 per partition over 5 partitions, three processes, one of them
//!   SIGKILLed and PostgreSQL restarted: never more than 2 running per partition
//!   (`proof/limits.rs`, issue 19);
//! - a rate limit of 50 jobs/s held within 5 % over a minute by three clients
//!   (`proof/rate.rs`, issue 19).
//!
//! Workers record every run in `<schema>.load_runs`, and each test asks the database, not the
//! clients: every job completed at its first attempt without an error, and was recorded exactly
//! once, by the client that `attempted_by` names.

#[path = "proof/limits.rs"]
mod limits;
#[allow(
    dead_code,
    reason = "the binary's `main` and argument parsing are not used here"
)]
#[path = "../src/bin/millrace-load-worker.rs"]
mod load_worker;
#[path = "proof/rate.rs"]
mod rate;
#[path = "proof/sequences.rs"]
mod sequences;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use load_worker::{
    ACQUIRE_TIMEOUT, LoadArgs, load_client, load_pool, load_pool_with, record_failures,
    runs_table_sql,
};
use millrace::{Client, InsertManyParams, InsertOpts, MigrateOpts, Migrator, Schema, UniqueOpts};
use millrace_postgres::PgDriver;
use millrace_test::TestDb;
use millrace_test::pg_cluster::Cluster;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgPool};
use tokio::time::Instant;

/// Jobs in each load run.
const JOBS: i64 = 10_000;
/// Jobs in each interop test.
const INTEROP_JOBS: i64 = 500;
/// Workers per client, and connections per client's pool.
const MAX_WORKERS: usize = 20;
const POOL_SIZE: u32 = 5;
/// How often a test looks at the database while it waits.
const POLL: Duration = Duration::from_millis(50);
/// The longest a load run may go without one more job completed: a stall, where slowness is
/// not. Under faults every fraction of a second on two cores that CI shares with other tests, a run has
/// taken from 20 s to over 60 s, so its total time says little; progress says whether the
/// fleet still works.
const STALL: Duration = Duration::from_secs(20);
/// The longest a load run may take in all, well inside nextest's limit of five minutes.
const LOAD_DEADLINE: Duration = Duration::from_secs(240);
/// The longest an interop run may take.
const INTEROP_DEADLINE: Duration = Duration::from_secs(30);
/// How often the killer terminates every connection of the fleet. At 200 ms the run sat on a
/// cliff: when opening a connection and running a statement took longer than the interval,
/// nothing got through for 30 s, even on a quiet machine; half a second still kills every
/// connection many times a run.
const KILL_EVERY: Duration = Duration::from_millis(500);
/// The fleet's acquire timeout while its connections are killed: the library's default
/// (`ConnectOptions::connect_timeout`, 10 s), not the load pools' one second. sqlx's acquire
/// timeout covers both the wait in the pool's queue and the opening of a connection; with
/// every connection killed at once and 20 workers queuing, callers reached the head of the
/// queue with too little of one second left to connect, none got a connection, and nothing
/// got through for 30 s, until the workers gave up recording their runs.
const CHURN_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long PostgreSQL stays down at each restart.
const OUTAGE: Duration = Duration::from_millis(3_000);
/// How long `millrace-load-worker` may take to start, and to exit after SIGTERM.
const PROCESS_DEADLINE: Duration = Duration::from_secs(30);

/// Exactly once, at 10,000 jobs, with three clients: two in this process, one in another.
#[test]
fn ten_thousand_jobs_are_worked_exactly_once_by_three_clients() {
    run_logged(|_logs| async {
        let db = TestDb::new().await;
        create_runs_table(db.pool(), db.schema()).await;
        let fleet = Fleet::start(db.url(), db.schema(), ACQUIRE_TIMEOUT).await;

        let started = Instant::now();
        insert_load_jobs(&fleet.clients[0], JOBS).await;
        wait_until(db.pool(), db.schema(), LOAD_DEADLINE, |done| done == JOBS).await;
        let elapsed = started.elapsed();
        fleet.stop().await;

        let runs = assert_exactly_once(db.pool(), db.schema(), JOBS).await;
        for client in Fleet::CLIENT_IDS {
            assert!(
                runs.get(client).is_some_and(|&n| n > 0),
                "every client should have worked some of the jobs, got {runs:?}"
            );
        }
        eprintln!("{JOBS} jobs in {elapsed:.2?}, runs per client: {runs:?}");
    });
}

/// Exactly once while every connection of the fleet (pools and LISTEN, in this process and the
/// other) is terminated by the server every 500 ms. A fetch or a completion whose reply dies
/// with its connection must neither lose nor repeat a job.
#[test]
fn jobs_are_worked_exactly_once_while_connections_are_killed() {
    run_logged(|logs| async move {
        let db = TestDb::new().await;
        create_runs_table(db.pool(), db.schema()).await;
        let fleet = Fleet::start(db.url(), db.schema(), CHURN_ACQUIRE_TIMEOUT).await;

        let started = Instant::now();
        insert_load_jobs(&fleet.clients[0], JOBS).await;
        let mut progress = Progress::new(LOAD_DEADLINE);
        let mut next_kill = Instant::now();
        let mut rounds = 0;
        let mut killed = 0;
        loop {
            // The test's own pool is not the fleet's: its connections are never killed.
            let done = completed(db.pool(), db.schema())
                .await
                .expect("count completed jobs");
            if done == JOBS {
                break;
            }
            if let Err(why) = progress.check(Some(done)) {
                panic!(
                    "{why}: {done} of {JOBS} jobs completed ({rounds} kill rounds); states: \
                     {}\n{}",
                    states(db.pool(), db.schema()).await,
                    fleet.report(db.pool()).await
                );
            }
            if Instant::now() >= next_kill {
                let n = kill_connections(db.pool(), &fleet.application_names).await;
                if n > 0 {
                    rounds += 1;
                    killed += n;
                }
                next_kill = Instant::now() + KILL_EVERY;
            }
            tokio::time::sleep(POLL).await;
        }
        let elapsed = started.elapsed();
        let process_log = fleet.stop().await;

        assert!(
            rounds >= 3,
            "the run should have lost its connections several times while jobs remained, got \
             {rounds} kill rounds"
        );
        let runs = assert_exactly_once(db.pool(), db.schema(), JOBS).await;
        eprintln!(
            "{JOBS} jobs in {elapsed:.2?} through {rounds} kill rounds ({killed} connections \
             terminated), runs per client: {runs:?}"
        );
        print_warnings(&logs.lines(), &process_log);
    });
}

/// Exactly once while PostgreSQL goes down hard (`pg_ctl stop -m immediate`, a crash as far
/// as clients and recovery are concerned) and comes back, twice. Clients reconnect by
/// themselves, keep the outcomes they could not store, and give back rows whose fetch reply
/// was lost. Each part of each client logs each outage about once, not at every retry.
#[test]
fn jobs_are_worked_exactly_once_across_postgres_restarts() {
    run_logged(|logs| async move {
        let cluster = tokio::task::block_in_place(Cluster::start);
        let url = cluster.url();
        let schema = Schema::new("millrace_proof").expect("valid schema");
        let pool = load_pool(&url, "mrproof_checker", 3).expect("checker pool");
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {}", schema.name())))
            .execute(&pool)
            .await
            .expect("create the schema");
        Migrator::new(PgDriver::new(pool.clone()).with_schema(schema.clone()))
            .migrate_up(MigrateOpts::default())
            .await
            .expect("migrate the private cluster");
        create_runs_table(&pool, &schema).await;
        let fleet = Fleet::start(&url, &schema, ACQUIRE_TIMEOUT).await;

        let started = Instant::now();
        insert_load_jobs(&fleet.clients[0], JOBS).await;
        let mut restarts = Vec::new();
        for thirds in [1, 2] {
            // Restart when a third, then two thirds, of the jobs are done.
            let done = wait_until(&pool, &schema, LOAD_DEADLINE, |done| {
                done >= JOBS * thirds / 3
            })
            .await;
            assert!(
                done < JOBS,
                "the run ended before PostgreSQL restarted: it proves nothing"
            );
            let running = count_running(&pool, &schema).await;
            tokio::task::block_in_place(|| cluster.restart(OUTAGE));
            restarts.push((done, running));
        }
        wait_until(&pool, &schema, LOAD_DEADLINE, |done| done == JOBS).await;
        let elapsed = started.elapsed();
        let process_log = fleet.stop().await;

        let runs = assert_exactly_once(&pool, &schema, JOBS).await;
        eprintln!(
            "{JOBS} jobs in {elapsed:.2?} through {} restarts (completed, running at each: \
             {restarts:?}), runs per client: {runs:?}",
            restarts.len()
        );
        let in_process = logs.lines();
        print_warnings(&in_process, &process_log);
        assert_warnings_bounded(&in_process, 2, restarts.len());
        assert_warnings_bounded(&process_log, 1, restarts.len());
        pool.close().await;
    });
}

/// Exactly once when replies are lost: the fleet reaches PostgreSQL through a proxy that, for
/// every 40th statement, delivers it, lets the server run and commit it, then drops the
/// connection before the client sees the reply. A fetch whose rows went `running` without the
/// client knowing must be given back, a stored completion retried without harm, and a worker's
/// own insert retried. (Killing a backend mid-statement rolls the statement back; this is the
/// case where the statement committed.)
#[test]
fn jobs_are_worked_exactly_once_when_replies_are_lost_after_commit() {
    run_logged(|logs| async move {
        let db = TestDb::new().await;
        create_runs_table(db.pool(), db.schema()).await;
        let proxy = LossyProxy::start(db.url(), Cut::Every(40)).await;
        // Replies are lost once the fleet has started: a start whose own statement loses
        // its reply fails, and a test of the work has no use for that.
        proxy.arm(false);
        let fleet = Fleet::start(&proxy.url, db.schema(), ACQUIRE_TIMEOUT).await;
        proxy.arm(true);

        let started = Instant::now();
        let inserter = Client::builder(db.driver())
            .build()
            .expect("build the inserter");
        insert_load_jobs(&inserter, JOBS).await;
        wait_until(db.pool(), db.schema(), LOAD_DEADLINE, |done| done == JOBS).await;
        let elapsed = started.elapsed();
        let process_log = fleet.stop().await;
        let cuts = proxy.cuts();

        let runs = assert_exactly_once(db.pool(), db.schema(), JOBS).await;
        let in_process = logs.lines();
        let given_back = [&in_process, &process_log]
            .into_iter()
            .flatten()
            .filter(|line| line.contains("returned jobs whose fetch reply was lost"))
            .count();
        eprintln!(
            "{JOBS} jobs in {elapsed:.2?} with {cuts} replies lost after commit; {given_back} \
             sweeps gave fetched rows back; runs per client: {runs:?}"
        );
        assert!(
            given_back > 0,
            "no fetch lost its reply after committing, so the sweep of orphaned rows went \
             untested ({cuts} replies lost)"
        );
        print_warnings(&in_process, &process_log);
    });
}

/// A fetch that committed while its reply was lost leaves rows `running` under a client that
/// does not know it holds them; the producer gives them back before it fetches again. Here the
/// client stops right after such a fetch, before fetching again: the rows must still go back
/// to `available`, attempt unspent. Nothing else would return them before River's one-hour
/// stuck-job rescue, since a clean stop deletes the client's heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_a_fetch_whose_reply_was_lost_are_given_back_at_stop() {
    let db = TestDb::new().await;
    create_runs_table(db.pool(), db.schema()).await;
    let inserter = Client::builder(db.driver())
        .build()
        .expect("build the inserter");
    insert_load_jobs(&inserter, 5).await;
    let proxy = LossyProxy::start(db.url(), Cut::FirstFetch).await;
    let pool = load_pool(&proxy.url, "mrproof_lost_fetch", POOL_SIZE).expect("pool");
    let client = load_client(pool, db.schema(), "lost_fetch", MAX_WORKERS).expect("client");
    client.start().await.expect("start");
    tokio::time::timeout(PROCESS_DEADLINE, proxy.state.cut_done.notified())
        .await
        .expect("the client's first fetch should go through the proxy");
    // The producer waits 100 ms before it retries; stop well within that.
    client.stop().await.expect("stop");

    let sql = format!(
        "SELECT state::text, attempt, count(*) FROM {} GROUP BY 1, 2",
        db.schema().qualify("river_job")
    );
    let rows: Vec<(String, i16, i64)> = sqlx::query_as(AssertSqlSafe(sql))
        .fetch_all(db.pool())
        .await
        .expect("read the jobs");
    assert_eq!(
        rows,
        [("available".to_owned(), 0, 5)],
        "the fetched rows should be available again, attempt unspent, after the stop"
    );
}

/// River's own Rust client inserts (every insert path, into the test's schema); Millrace works
/// the jobs. River's migrator finds the schema Millrace migrated up to date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_inserted_by_riverqueue_are_worked_by_millrace() {
    use riverqueue::database::{PostgresDatabase, SchemaName};

    let db = TestDb::new().await;
    create_runs_table(db.pool(), db.schema()).await;
    let river_schema = SchemaName::new(db.schema().name()).expect("valid schema");
    let applied = riverqueue::migrate::PostgresMigrator::new(db.pool().clone())
        .with_schema(river_schema.clone())
        .migrate_up()
        .await
        .expect("River's migrator runs on Millrace's schema");
    assert!(
        applied.is_empty(),
        "River's migrator applied {applied:?} on a current schema"
    );
    let river = riverqueue::Client::builder(
        PostgresDatabase::new(db.pool().clone()).with_schema(river_schema),
    )
    .build()
    .expect("build the River client");

    river.insert(RiverLoad { n: 0 }).await.expect("insert");
    let opts = riverqueue::InsertOpts::default()
        .with_max_attempts(5)
        .with_priority(2)
        .with_tags(["from_river"]);
    river
        .insert(RiverLoad { n: 1 })
        .opts(opts)
        .await
        .expect("insert with options");
    let unique = riverqueue::InsertOpts::default()
        .with_unique(riverqueue::UniqueOpts::default().with_by_args(true));
    river
        .insert(RiverLoad { n: 2 })
        .opts(unique)
        .await
        .expect("insert unique");
    let past = riverqueue::jiff::Timestamp::now() - riverqueue::jiff::SignedDuration::from_secs(1);
    let scheduled = riverqueue::InsertOpts::default().with_scheduled_at(past);
    river
        .insert(RiverLoad { n: 3 })
        .opts(scheduled)
        .await
        .expect("insert scheduled");
    let rest = (4..INTEROP_JOBS).map(|n| RiverLoad { n });
    river.insert_many(rest).await.expect("insert many");

    assert_options_kept(db.pool(), db.schema(), "from_river").await;
    let pool = load_pool(db.url(), "mrproof_interop", POOL_SIZE).expect("pool");
    let millrace = load_client(pool, db.schema(), "millrace_worker", MAX_WORKERS).expect("client");
    millrace.start().await.expect("start");
    wait_until(db.pool(), db.schema(), INTEROP_DEADLINE, |done| {
        done == INTEROP_JOBS
    })
    .await;
    millrace.stop().await.expect("stop");

    let runs = assert_exactly_once(db.pool(), db.schema(), INTEROP_JOBS).await;
    assert_eq!(runs.keys().collect::<Vec<_>>(), ["millrace_worker"]);
}

/// Millrace inserts (every insert path); River's own Rust client works the jobs, woken by
/// Millrace's notifications on the schema's channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_inserted_by_millrace_are_worked_by_riverqueue() {
    use riverqueue::database::{PostgresDatabase, SchemaName};

    let db = TestDb::new().await;
    create_runs_table(db.pool(), db.schema()).await;
    let millrace = Client::builder(db.driver())
        .build()
        .expect("build the Millrace client");
    millrace
        .insert(LoadArgs { n: 0 }, None)
        .await
        .expect("insert");
    let opts = InsertOpts::new()
        .max_attempts(5)
        .priority(2)
        .tags(["from_millrace"]);
    millrace
        .insert(LoadArgs { n: 1 }, Some(opts))
        .await
        .expect("insert with options");
    let unique = InsertOpts::new().unique(UniqueOpts::new().by_args());
    millrace
        .insert(LoadArgs { n: 2 }, Some(unique))
        .await
        .expect("insert unique");
    let mut tx = db.tx().await;
    millrace
        .insert_tx(&mut tx, LoadArgs { n: 3 }, None)
        .await
        .expect("insert in a transaction");
    tx.commit().await.expect("commit");
    let half = INTEROP_JOBS / 2;
    millrace
        .insert_many((4..half).map(|n| InsertManyParams::new(LoadArgs { n })))
        .await
        .expect("insert many");
    millrace
        .insert_many_fast((half..INTEROP_JOBS).map(|n| InsertManyParams::new(LoadArgs { n })))
        .await
        .expect("insert many by COPY");

    let runs_table = db.schema().qualify("load_runs");
    let record: Arc<str> = format!(
        "INSERT INTO {runs_table} (run_id, job_id, attempt, client) VALUES ($1, $2, $3, $4)"
    )
    .into();
    let record_pool = db.pool().clone();
    let mut workers = riverqueue::Workers::new();
    workers
        .add_fn(
            move |_ctx: riverqueue::WorkContext, job: riverqueue::Job<RiverLoad>| {
                let (pool, record) = (record_pool.clone(), record.clone());
                async move {
                    let run_id = format!("river_worker:{}:{}", job.row.id, job.row.attempt);
                    sqlx::query(AssertSqlSafe(record))
                        .bind(run_id)
                        .bind(job.row.id)
                        .bind(job.row.attempt)
                        .bind("river_worker")
                        .execute(&pool)
                        .await?;
                    Ok::<_, riverqueue::BoxError>(riverqueue::WorkOutcome::Complete)
                }
            },
        )
        .expect("register the River worker");
    let queue = riverqueue::QueueConfig::new(MAX_WORKERS)
        .with_fetch_cooldown(Duration::from_millis(10))
        .with_fetch_poll_interval(Duration::from_millis(200));
    let river_schema = SchemaName::new(db.schema().name()).expect("valid schema");
    let river = riverqueue::Client::builder(
        PostgresDatabase::new(db.pool().clone()).with_schema(river_schema),
    )
    .id("river_worker")
    .workers(workers)
    .queue(millrace::QUEUE_DEFAULT, queue)
    .build()
    .expect("build the River client");
    let mut run = river.start().expect("start the River client");
    wait_until(db.pool(), db.schema(), INTEROP_DEADLINE, |done| {
        done == INTEROP_JOBS
    })
    .await;
    run.stop().await.expect("stop the River client");

    let runs = assert_exactly_once(db.pool(), db.schema(), INTEROP_JOBS).await;
    assert_eq!(runs.keys().collect::<Vec<_>>(), ["river_worker"]);
}

/// River's Python client (PyPI `riverqueue`, SQLAlchemy on psycopg 3) inserts; Millrace works
/// the jobs. The Python client has no schema option, so the script points its connections at
/// the test's schema through `search_path`. Fails, with the command to run, when the client
/// is not installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_inserted_by_rivers_python_client_are_worked_by_millrace() {
    require_python_client();
    let db = TestDb::new().await;
    create_runs_table(db.pool(), db.schema()).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/insert_jobs.py");
    let output = tokio::task::spawn_blocking({
        let (url, schema) = (db.url().to_owned(), db.schema().name().to_owned());
        move || {
            Command::new("python3")
                .arg(script)
                .args([url, schema, INTEROP_JOBS.to_string()])
                .output()
        }
    })
    .await
    .expect("join")
    .expect("run python3");
    assert!(
        output.status.success(),
        "insert_jobs.py failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("insert_jobs.py prints JSON");
    assert_eq!(summary["inserted"], INTEROP_JOBS);

    assert_options_kept(db.pool(), db.schema(), "from_python").await;
    let pool = load_pool(db.url(), "mrproof_interop", POOL_SIZE).expect("pool");
    let millrace = load_client(pool, db.schema(), "millrace_worker", MAX_WORKERS).expect("client");
    millrace.start().await.expect("start");
    wait_until(db.pool(), db.schema(), INTEROP_DEADLINE, |done| {
        done == INTEROP_JOBS
    })
    .await;
    millrace.stop().await.expect("stop");

    let runs = assert_exactly_once(db.pool(), db.schema(), INTEROP_JOBS).await;
    assert_eq!(runs.keys().collect::<Vec<_>>(), ["millrace_worker"]);
}

/// Load args as River's Rust client declares them: the same kind and JSON as [`LoadArgs`].
#[derive(Debug, Clone, Serialize, Deserialize, riverqueue::JobArgs)]
#[river(kind = "millrace_load")]
struct RiverLoad {
    n: i64,
}

// ---------------------------------------------------------------------------------------------
// The fleet: two clients in this process and one in another.

/// Three load clients on one schema: two in this process, one `millrace-load-worker` process.
struct Fleet {
    clients: Vec<Client<PgDriver>>,
    process: LoadProcess,
    /// Each client's `application_name`, so a test can kill exactly their connections.
    application_names: Vec<String>,
}

impl Fleet {
    const CLIENT_IDS: [&'static str; 3] = ["load_client_1", "load_client_2", "load_process"];

    async fn start(url: &str, schema: &Schema, acquire_timeout: Duration) -> Fleet {
        let application_names: Vec<String> = (1..=3)
            .map(|n| format!("mrproof_{}_{n}", schema.name()))
            .collect();
        let process = LoadProcess::spawn(
            url,
            schema,
            &application_names[2],
            Self::CLIENT_IDS[2],
            acquire_timeout,
        )
        .await;
        let mut clients = Vec::new();
        for (id, name) in Self::CLIENT_IDS.iter().zip(&application_names).take(2) {
            let pool = load_pool_with(url, name, POOL_SIZE, acquire_timeout).expect("pool");
            let client = load_client(pool, schema, id, MAX_WORKERS).expect("client");
            client.start().await.expect("start");
            clients.push(client);
        }
        Fleet {
            clients,
            process,
            application_names,
        }
    }

    /// What a stalled run looks like from here, for its failure message: the in-process
    /// pools' sizes and idle connections, why this process's workers failed to record their
    /// runs, and what the fleet's server connections are doing.
    async fn report(&self, pool: &PgPool) -> String {
        let pools: Vec<(u32, usize)> = self
            .clients
            .iter()
            .map(|c| (c.driver().pool().size(), c.driver().pool().num_idle()))
            .collect();
        type Activity = (String, i32, Option<String>, Option<String>, Option<String>);
        let activity: Vec<Activity> = sqlx::query_as(
            "SELECT application_name, pid, state, wait_event_type || ':' || wait_event, \
             left(query, 100) FROM pg_stat_activity WHERE application_name = ANY($1) \
             ORDER BY 1, 2",
        )
        .bind(&self.application_names)
        .fetch_all(pool)
        .await
        .unwrap_or_default();
        format!(
            "in-process pools (size, idle): {pools:?}\nfailed recordings in this process: \
             {:?}\nthe fleet's server connections:\n{}",
            record_failures::snapshot(),
            activity
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// Stops every client softly, the process by SIGTERM (it must exit 0), and returns the
    /// process's log.
    async fn stop(mut self) -> Vec<String> {
        for client in &self.clients {
            client.stop().await.expect("stop a client");
        }
        self.process.terminate().await
    }
}

/// A running `millrace-load-worker`, killed if the test ends without stopping it.
struct LoadProcess {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl LoadProcess {
    async fn spawn(
        url: &str,
        schema: &Schema,
        application_name: &str,
        id: &str,
        acquire_timeout: Duration,
    ) -> LoadProcess {
        Self::spawn_with(url, schema, application_name, id, acquire_timeout, &[]).await
    }

    /// [`LoadProcess::spawn`] with more arguments for `millrace-load-worker`.
    async fn spawn_with(
        url: &str,
        schema: &Schema,
        application_name: &str,
        id: &str,
        acquire_timeout: Duration,
        extra: &[&str],
    ) -> LoadProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_millrace-load-worker"))
            .args(extra)
            .args(["--database-url", url, "--schema", schema.name()])
            .args(["--application-name", application_name, "--client-id", id])
            .args(["--max-workers", &MAX_WORKERS.to_string()])
            .args(["--pool-size", &POOL_SIZE.to_string()])
            .args([
                "--acquire-timeout-ms",
                &acquire_timeout.as_millis().to_string(),
            ])
            // Ends by itself should this test die without stopping it.
            .args(["--seconds", "110"])
            .env("RUST_LOG", "warn,millrace=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn millrace-load-worker");
        let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stdout_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let child_stderr = child.stderr.take().expect("piped stderr");
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(child_stderr).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(line);
            }
        });
        let process = LoadProcess {
            child,
            stderr,
            readers: vec![stdout_reader, stderr_reader],
        };
        let expected = format!("ready {id}");
        let ready = tokio::time::timeout(PROCESS_DEADLINE, async {
            while let Some(line) = lines.recv().await {
                if line == expected {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(ready, Ok(true)),
            "millrace-load-worker did not start within {PROCESS_DEADLINE:?}; its log:\n{}",
            process.stderr.lock().expect("lock").join("\n")
        );
        process
    }

    /// Sends SIGTERM, waits for a clean exit, and returns the process's log.
    async fn terminate(&mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + PROCESS_DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the process") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "millrace-load-worker did not exit within {PROCESS_DEADLINE:?} of SIGTERM"
            );
            tokio::time::sleep(POLL).await;
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let log = self.stderr.lock().expect("lock").clone();
        assert!(
            status.success(),
            "millrace-load-worker exited with {status} after SIGTERM; its log:\n{}",
            log.join("\n")
        );
        log
    }
}

impl LoadProcess {
    /// Sends SIGKILL and reaps the process: it dies mid-work, holding its running jobs.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the process");
        self.child.wait().expect("reap the process");
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for LoadProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Terminates every backend of the given application names; returns how many.
async fn kill_connections(pool: &PgPool, application_names: &[String]) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = ANY($1) AND pid <> pg_backend_pid()",
    )
    .bind(application_names)
    .fetch_one(pool)
    .await
    .expect("terminate the fleet's connections")
}

// ---------------------------------------------------------------------------------------------
// A proxy that loses replies.

/// A TCP proxy in front of the test database that loses replies after the server has acted
/// on them: it forwards a statement, waits for the server to finish it (its ReadyForQuery,
/// sent after the commit), drops the reply and closes both connections. [`Cut`] says which
/// statements.
struct LossyProxy {
    url: String,
    state: Arc<ProxyState>,
    accept: tokio::task::JoinHandle<()>,
}

/// Which statements [`LossyProxy`] loses the reply of.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// Every n-th statement of any connection.
    Every(u64),
    /// The first fetch of jobs (River's `JobGetAvailable` statement), only.
    FirstFetch,
}

struct ProxyState {
    cut: Cut,
    /// Whether replies are cut now: off while a test starts its clients, whose `start` fails
    /// (as it should) when a reply of its own statements is lost.
    armed: std::sync::atomic::AtomicBool,
    statements: AtomicU64,
    cuts: AtomicU64,
    /// Notified at each cut, once the server has finished the statement.
    cut_done: tokio::sync::Notify,
}

impl LossyProxy {
    async fn start(url: &str, cut: Cut) -> LossyProxy {
        use sqlx::ConnectOptions;
        use sqlx::postgres::{PgConnectOptions, PgSslMode};

        let options: PgConnectOptions = url.parse().expect("valid database URL");
        let upstream = format!("{}:{}", options.get_host(), options.get_port());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        // Without TLS, every message is framed (type, length), which is how the proxy finds
        // statements and the end of a reply.
        let url = options
            .host("127.0.0.1")
            .port(port)
            .ssl_mode(PgSslMode::Disable)
            .to_url_lossy()
            .to_string();
        let state = Arc::new(ProxyState {
            cut,
            statements: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            cut_done: tokio::sync::Notify::new(),
            armed: std::sync::atomic::AtomicBool::new(true),
        });
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, shared.clone()));
            }
        });
        LossyProxy { url, state, accept }
    }

    fn cuts(&self) -> u64 {
        self.state.cuts.load(Ordering::Relaxed)
    }

    /// Turns the cutting on or off.
    fn arm(&self, armed: bool) {
        self.state.armed.store(armed, Ordering::SeqCst);
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The client messages in one packet, as (type, body); a message cut across packets ends the
/// list, which only makes the proxy miss a statement.
fn client_messages(packet: &[u8]) -> Vec<(u8, &[u8])> {
    let mut messages = Vec::new();
    let mut rest = packet;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if len < 4 || rest.len() < 1 + len {
            break;
        }
        messages.push((rest[0], &rest[5..1 + len]));
        rest = &rest[1 + len..];
    }
    messages
}

/// The first NUL-terminated string of a message body, and what follows it.
fn cstring(body: &[u8]) -> (&[u8], &[u8]) {
    match body.iter().position(|&b| b == 0) {
        Some(end) => (&body[..end], &body[end + 1..]),
        None => (body, &[]),
    }
}

/// Relays one connection, cutting it after a statement as [`LossyProxy`] says.
async fn relay(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    state: Arc<ProxyState>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // Messages go out one by one: without TCP_NODELAY, Nagle's algorithm and delayed ACKs
    // would hold each reply's tail for tens of milliseconds.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (server_read, mut server_write) = server.into_split();
    let mut server_read = tokio::io::BufReader::new(server_read);
    let cut = AtomicBool::new(false);
    let to_server = async {
        let mut buf = vec![0; 64 * 1024];
        let mut first = true;
        // The name this connection prepared the fetch statement under.
        let mut fetch_statement: Option<Vec<u8>> = None;
        loop {
            let n = client_read.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            let packet = &buf[..n];
            // The first packet is the startup message, which has no type byte.
            let now = !std::mem::take(&mut first)
                && state.armed.load(Ordering::SeqCst)
                && match state.cut {
                    Cut::Every(every) => {
                        // Parse, Bind and Query start every statement sqlx sends.
                        matches!(packet[0], b'P' | b'B' | b'Q')
                            && state.statements.fetch_add(1, Ordering::Relaxed) % every == every - 1
                    }
                    Cut::FirstFetch => {
                        let mut bound = false;
                        for (kind, body) in client_messages(packet) {
                            match kind {
                                b'P' => {
                                    let (name, rest) = cstring(body);
                                    let (query, _) = cstring(rest);
                                    let query = String::from_utf8_lossy(query);
                                    if query.contains("SKIP LOCKED")
                                        && query.contains("attempted_by")
                                    {
                                        fetch_statement = Some(name.to_vec());
                                    }
                                }
                                b'B' => {
                                    let (_portal, rest) = cstring(body);
                                    let (name, _) = cstring(rest);
                                    bound |= fetch_statement.as_deref() == Some(name);
                                }
                                _ => {}
                            }
                        }
                        bound && state.statements.fetch_add(1, Ordering::Relaxed) == 0
                    }
                };
            if now {
                cut.store(true, Ordering::SeqCst);
            }
            if server_write.write_all(packet).await.is_err() {
                return;
            }
            if now {
                state.cuts.fetch_add(1, Ordering::Relaxed);
                // The other direction ends the connection at the ReadyForQuery; this bounds
                // the wait should none come.
                tokio::time::sleep(Duration::from_secs(2)).await;
                return;
            }
        }
    };
    let to_client = async {
        loop {
            let mut header = [0; 5];
            if server_read.read_exact(&mut header).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let mut message = header.to_vec();
            message.resize(1 + len, 0);
            if server_read.read_exact(&mut message[5..]).await.is_err() {
                return;
            }
            if cut.load(Ordering::SeqCst) {
                if header[0] == b'Z' {
                    // The statement is done (committed); its reply dies with the connection.
                    return;
                }
            } else if client_write.write_all(&message).await.is_err() {
                return;
            }
        }
    };
    let finished_cut = tokio::select! {
        () = to_server => false,
        () = to_client => cut.load(Ordering::SeqCst),
    };
    // Both sockets close here; only then may a test act on the lost reply.
    drop((client_read, client_write, server_read, server_write));
    if finished_cut {
        state.cut_done.notify_one();
    }
}

// ---------------------------------------------------------------------------------------------
// Jobs and what the database says about them.

async fn create_runs_table(pool: &PgPool, schema: &Schema) {
    sqlx::raw_sql(AssertSqlSafe(runs_table_sql(schema)))
        .execute(pool)
        .await
        .expect("create load_runs");
}

/// Inserts `count` load jobs in one COPY.
async fn insert_load_jobs(client: &Client<PgDriver>, count: i64) {
    let inserted = client
        .insert_many_fast((0..count).map(|n| InsertManyParams::new(LoadArgs { n })))
        .await
        .expect("insert the load jobs");
    assert_eq!(inserted, count as u64);
}

async fn completed(pool: &PgPool, schema: &Schema) -> Result<i64, sqlx::Error> {
    let sql = format!(
        "SELECT count(*) FROM {} WHERE state = 'completed'",
        schema.qualify("river_job")
    );
    sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(pool).await
}

async fn count_running(pool: &PgPool, schema: &Schema) -> i64 {
    let sql = format!(
        "SELECT count(*) FROM {} WHERE state = 'running'",
        schema.qualify("river_job")
    );
    sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .expect("count running jobs")
}

/// Jobs per state, for failure messages.
async fn states(pool: &PgPool, schema: &Schema) -> String {
    let sql = format!(
        "SELECT state::text, count(*) FROM {} GROUP BY 1 ORDER BY 1",
        schema.qualify("river_job")
    );
    match sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
    {
        Ok(rows) => format!("{rows:?}"),
        Err(err) => format!("(cannot read them: {err})"),
    }
}

/// Polls the number of completed jobs until `done` holds, and returns it; errors count as "not
/// yet", since the server may be restarting. Panics when no job completes for [`STALL`] or
/// `limit` passes.
async fn wait_until(
    pool: &PgPool,
    schema: &Schema,
    limit: Duration,
    done: impl Fn(i64) -> bool,
) -> i64 {
    let mut progress = Progress::new(limit);
    loop {
        let last = match completed(pool, schema).await {
            Ok(n) if done(n) => return n,
            other => other,
        };
        if let Err(why) = progress.check(last.as_ref().ok().copied()) {
            panic!(
                "jobs did not get done: {why}: last count {last:?}; states: {}",
                states(pool, schema).await
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Tells a run that still makes progress from one that stalled or dragged on.
struct Progress {
    started: Instant,
    limit: Duration,
    last: i64,
    last_change: Instant,
}

impl Progress {
    fn new(limit: Duration) -> Self {
        let now = Instant::now();
        Progress {
            started: now,
            limit,
            last: 0,
            last_change: now,
        }
    }

    /// Records the completed count (`None` when it could not be read); an error when no job
    /// completed for [`STALL`] or the run took longer than its limit.
    fn check(&mut self, done: Option<i64>) -> Result<(), String> {
        let now = Instant::now();
        if let Some(done) = done
            && done != self.last
        {
            self.last = done;
            self.last_change = now;
        }
        if now.duration_since(self.last_change) >= STALL {
            return Err(format!("no job completed for {STALL:?}"));
        }
        if now.duration_since(self.started) >= self.limit {
            return Err(format!("the run took longer than {:?}", self.limit));
        }
        Ok(())
    }
}

/// Asserts that every one of `jobs` jobs completed at its first attempt without an error and
/// was recorded exactly once in `load_runs`, by the client its `attempted_by` names last.
/// Returns the runs per client.
async fn assert_exactly_once(pool: &PgPool, schema: &Schema, jobs: i64) -> BTreeMap<String, i64> {
    let job = schema.qualify("river_job");
    let runs = schema.qualify("load_runs");
    assert_eq!(
        states(pool, schema).await,
        format!("{:?}", [("completed", jobs)]),
        "every job should be completed"
    );
    let sql = format!(
        "SELECT \
             (SELECT count(*) FROM {runs}), \
             (SELECT count(DISTINCT job_id) FROM {runs}), \
             (SELECT count(*) FROM {job} AS j \
                  WHERE NOT EXISTS (SELECT 1 FROM {runs} AS r WHERE r.job_id = j.id)), \
             (SELECT count(*) FROM {runs} AS r JOIN {job} AS j ON j.id = r.job_id \
                  WHERE j.attempted_by[cardinality(j.attempted_by)] IS DISTINCT FROM r.client)"
    );
    let (total, distinct, never_run, other_client): (i64, i64, i64, i64) =
        sqlx::query_as(AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
            .expect("count runs");
    let sql = format!(
        "SELECT job_id, string_agg(client || ' attempt ' || attempt, ', ' ORDER BY at) \
         FROM {runs} GROUP BY job_id HAVING count(*) > 1 ORDER BY job_id LIMIT 5"
    );
    let twice: Vec<(i64, String)> = sqlx::query_as(AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .expect("find jobs run twice");
    assert!(
        total == jobs && distinct == jobs && never_run == 0 && twice.is_empty(),
        "every job should have run exactly once: {total} runs of {distinct} distinct jobs for \
         {jobs} jobs, {never_run} jobs never run; run more than once: {twice:?}"
    );
    assert_eq!(
        other_client, 0,
        "runs recorded by a client other than attempted_by's last"
    );
    let sql = format!(
        "SELECT count(*) FILTER (WHERE attempt <> 1), \
                count(*) FILTER (WHERE coalesce(cardinality(errors), 0) > 0) \
         FROM {job}"
    );
    let (retried, errored): (i64, i64) = sqlx::query_as(AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .expect("count attempts");
    assert_eq!(
        (retried, errored),
        (0, 0),
        "every job should complete at its first attempt without an error (jobs not at attempt \
         1, jobs with errors)"
    );
    let sql = format!("SELECT client, count(*) FROM {runs} GROUP BY client");
    sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .expect("count runs per client")
        .into_iter()
        .collect()
}

/// The job inserted with options (n = 1) kept them, and the one inserted scheduled in the past
/// (n = 3) is `scheduled`, for Millrace's scheduler.
async fn assert_options_kept(pool: &PgPool, schema: &Schema, tag: &str) {
    let sql = format!(
        "SELECT priority, max_attempts, tags::text[] FROM {} WHERE args ->> 'n' = '1'",
        schema.qualify("river_job")
    );
    let (priority, max_attempts, tags): (i16, i16, Vec<String>) =
        sqlx::query_as(AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
            .expect("read the job inserted with options");
    assert_eq!((priority, max_attempts, tags), (2, 5, vec![tag.to_owned()]));
    let sql = format!(
        "SELECT count(*) FROM {} WHERE state = 'scheduled'",
        schema.qualify("river_job")
    );
    let scheduled: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .expect("count scheduled jobs");
    assert_eq!(
        scheduled, 1,
        "the job scheduled in the past should wait for the scheduler"
    );
}

/// Fails, saying how to install it, when River's Python client cannot be imported.
fn require_python_client() {
    const INSTALL: &str =
        "python3 -m pip install riverqueue \"sqlalchemy[asyncio]\" \"psycopg[binary]\"";
    // River's SQLAlchemy driver imports SQLAlchemy's asyncio support, which needs greenlet.
    let check = Command::new("python3")
        .args([
            "-c",
            "import psycopg; from riverqueue.driver import riversqlalchemy",
        ])
        .output();
    match check {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "River's Python client is not installed ({}); install it with `{INSTALL}` \
             (scripts/test.sh does)",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("no output")
        ),
        Err(err) => panic!("cannot run python3 ({err}); install Python 3, then `{INSTALL}`"),
    }
}

// ---------------------------------------------------------------------------------------------
// Logs.

/// The log lines of the clients running in one test's runtime.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().expect("lock"))
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Prints the logs when the test fails, for its report.
struct PrintOnPanic(Logs);

impl Drop for PrintOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "log of the clients in this process:\n{}",
                self.0.lines().join("\n")
            );
        }
    }
}

/// Runs a test on a runtime of its own whose every thread logs into the [`Logs`] it hands the
/// test (`warn`, and `info` from Millrace), so a test sees its own clients' logs only, also
/// when tests share a process.
fn run_logged<F, Fut>(test: F)
where
    F: FnOnce(Logs) -> Fut,
    Fut: Future<Output = ()>,
{
    let logs = Logs::default();
    let buffer = logs.0.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,millrace=info"))
        .with_ansi(false)
        .with_writer(move || LogWriter(buffer.clone()))
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    let for_threads = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // The runtime's threads live as long as it does; so does their default.
            std::mem::forget(tracing::dispatcher::set_default(&for_threads));
        })
        .build()
        .expect("build the runtime");
    let _default = tracing::dispatcher::set_default(&dispatch);
    let _print = PrintOnPanic(logs.clone());
    runtime.block_on(test(logs));
}

fn warnings(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect()
}

fn print_warnings(in_process: &[String], process: &[String]) {
    let warnings_here = warnings(in_process);
    let warnings_there = warnings(process);
    eprintln!(
        "warnings of the clients in this process ({}):\n{}\nwarnings of millrace-load-worker ({}):\n{}",
        warnings_here.len(),
        warnings_here
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        warnings_there.len(),
        warnings_there
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    );
}

/// Asserts that each part of each client logged each outage about once (one more per client
/// allowed): a part that logs every failed retry shows up several times per outage, since the
/// outage outlasts the pools' acquire timeout and the retries fail again and again.
///
/// Counts Millrace's own messages, keyed by target, message and `service` field. sqlx logs each
/// dead connection of a pool once, which is bounded by the pool's size, not by time.
fn assert_warnings_bounded(lines: &[String], clients: usize, outages: usize) {
    let mut per_message: BTreeMap<String, usize> = BTreeMap::new();
    for line in warnings(lines) {
        let Some(start) = line.find("millrace::") else {
            continue;
        };
        let (target, rest) = line[start..]
            .split_once(": ")
            .unwrap_or((&line[start..], ""));
        // The fields (`err=...`, `service=...`) follow the message.
        let message: Vec<&str> = rest.split(' ').take_while(|w| !w.contains('=')).collect();
        let service = rest
            .split(' ')
            .find(|w| w.starts_with("service="))
            .unwrap_or("");
        let key = format!("{target}: {} {service}", message.join(" "));
        *per_message.entry(key).or_default() += 1;
    }
    let bound = clients * (outages + 1);
    let looping: Vec<_> = per_message
        .iter()
        .filter(|(_, count)| **count > bound)
        .collect();
    assert!(
        looping.is_empty(),
        "logged more than {bound} times for {outages} outages of {clients} clients, so logged \
         in a loop rather than once per outage: {looping:?}"
    );
}
