//! The PostgreSQL driver through a real PgBouncer in transaction mode, which each test starts
//! on a free port in front of the test database, with so few server connections that
//! consecutive transactions of one client connection land on different server connections
//! (issue 14, item 4).
//!
//! PgBouncer comes from `scripts/test.sh` (Debian's `pgbouncer` package), or from
//! `MILLRACE_PGBOUNCER`. Without it these tests fail under `CI` and, elsewhere, say loudly that
//! they did not run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use millrace::{
    BoxError, Client, ClientBuilder, InsertManyParams, InsertOpts, Job, JobArgs, PeriodicJob,
    PersistentContext, PersistentOpts, PersistentWorker, QueueConfig, Schedule, UniqueOpts,
    WorkError, Worker, Workers,
};
use millrace_driver::{Driver, Executor};
use millrace_postgres::PgDriver;
use millrace_test::TestDb;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};

const DEADLINE: Duration = Duration::from_secs(20);

/// Server connections PgBouncer keeps to PostgreSQL for the test database: fewer than the
/// client pool's connections, so server connections really are shared between them.
const SERVER_CONNECTIONS: u32 = 2;

/// Connections of the client pool to PgBouncer.
const CLIENT_CONNECTIONS: u32 = 8;

#[derive(Debug, Serialize, Deserialize)]
struct Work {
    n: i64,
}

impl JobArgs for Work {
    const KIND: &'static str = "pgbouncer_work";
}

#[derive(Clone, Default)]
struct WorkWorker {
    runs: Arc<AtomicUsize>,
}

impl Worker for WorkWorker {
    type Args = Work;

    async fn work(&self, _job: Job<Work>) -> Result<(), WorkError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A persistent worker that records its progress once and runs until cancelled.
#[derive(Clone, Default)]
struct Looper {
    starts: Arc<AtomicUsize>,
}

impl PersistentWorker for Looper {
    async fn run(&self, ctx: PersistentContext) -> Result<(), BoxError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        ctx.record_progress(serde_json::json!({ "through": "pgbouncer" }))
            .await?;
        ctx.cancelled().await;
        Ok(())
    }
}

#[tokio::test]
async fn jobs_run_through_pgbouncer_with_a_direct_pool_for_listen_and_leadership() {
    let db = TestDb::new().await;
    let Some(bouncer) = PgBouncer::start_or_skip(db.url()) else {
        return;
    };
    let pool = bouncer.pool("test", CLIENT_CONNECTIONS).await;
    let driver = PgDriver::new(pool.clone())
        .with_schema(db.schema().clone())
        .transaction_pooled()
        .direct(db.pool().clone());
    assert!(driver.supports_listen_notify(), "LISTEN on the direct pool");
    workload(&db, &pool, driver).await;
}

#[tokio::test]
async fn jobs_run_through_pgbouncer_polling_without_a_direct_pool() {
    let db = TestDb::new().await;
    let Some(bouncer) = PgBouncer::start_or_skip(db.url()) else {
        return;
    };
    let pool = bouncer.pool("test", CLIENT_CONNECTIONS).await;
    let driver = PgDriver::new(pool.clone())
        .with_schema(db.schema().clone())
        .transaction_pooled();
    assert!(
        !driver.supports_listen_notify(),
        "no LISTEN through the pooler: the client polls"
    );
    workload(&db, &pool, driver).await;
}

/// Without the mode, the driver's named prepared statements collide on a shared server
/// connection: the mode is necessary, not a precaution. `single` is a PgBouncer database with
/// one server connection, so two client connections are certain to share it.
#[tokio::test]
async fn named_prepared_statements_break_through_pgbouncer_without_the_mode() {
    let db = TestDb::new().await;
    let Some(bouncer) = PgBouncer::start_or_skip(db.url()) else {
        return;
    };
    let pool = bouncer.pool("single", 2).await;
    let plain = PgDriver::new(pool.clone()).with_schema(db.schema().clone());
    let err = two_connections_read(&plain, &pool)
        .await
        .expect_err("named statements collide on the shared server connection");
    let message = format!("{err:?}");
    assert!(
        message.contains("prepared statement") && message.contains("already exists"),
        "unexpected error: {message}"
    );

    let pooled = PgDriver::new(pool.clone())
        .with_schema(db.schema().clone())
        .transaction_pooled();
    two_connections_read(&pooled, &pool)
        .await
        .expect("unnamed statements share the server connection");
}

/// Reads through two client connections, one after the other, with statements that differ:
/// each connection numbers its named statements from 1, so the second one's first statement
/// reuses the first one's name on the shared server connection.
async fn two_connections_read(
    driver: &PgDriver,
    pool: &PgPool,
) -> Result<(), millrace_driver::DriverError> {
    let mut first = pool.acquire().await.unwrap();
    let mut second = pool.acquire().await.unwrap();
    driver
        .conn_executor(&mut first)
        .job_get_by_id(millrace::JobId(1))
        .await?;
    driver
        .conn_executor(&mut second)
        .leader_get(millrace_driver::LeaderTable::River)
        .await?;
    Ok(())
}

/// Insert (one, many, fast, in the caller's transaction), work, unique, periodic, a persistent
/// worker and leadership, all through the pooler.
async fn workload(db: &TestDb, bouncer_pool: &PgPool, driver: PgDriver) {
    let started = Instant::now();
    let worker = WorkWorker::default();
    let looper = Looper::default();
    let mut workers = Workers::new();
    workers.register(worker.clone()).unwrap();
    let periodic = PeriodicJob::new(Schedule::interval(Duration::from_millis(300)), || {
        (Work { n: -1 }, None)
    })
    .id("bouncer_tick")
    .run_on_start(true);
    let builder = Client::builder(driver)
        .id("bouncer-client")
        .workers(workers)
        .queue("default", QueueConfig::new().max_workers(20))
        .fetch_cooldown(Duration::from_millis(10))
        .fetch_poll_interval(Duration::from_millis(100))
        .schedule_interval(Duration::from_millis(100))
        .maintenance_interval(Duration::from_millis(100))
        .heartbeat_lease(Duration::from_secs(2))
        .cancel_grace(Duration::from_millis(500))
        .periodic_job(periodic);
    let client = ClientBuilder::persistent_worker_with(
        builder,
        "looper",
        looper.clone(),
        PersistentOpts::new()
            .lease(Duration::from_secs(2))
            .restart_backoff(Duration::from_millis(50), Duration::from_millis(200)),
    )
    .build()
    .unwrap();
    client.start().await.unwrap();

    // Inserts of every kind, while the client fetches, completes and elects on the same pool.
    client.insert(Work { n: 0 }, None).await.unwrap();
    client
        .insert_many((1..=100).map(|n| InsertManyParams::new(Work { n })))
        .await
        .unwrap();
    client
        .insert_many_fast((101..=200).map(|n| InsertManyParams::new(Work { n })))
        .await
        .unwrap();
    let mut tx = bouncer_pool.begin().await.unwrap();
    client
        .insert_tx(&mut *tx, Work { n: 201 }, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let unique = || Some(InsertOpts::new().unique(UniqueOpts::new().by_args()));
    let first = client.insert(Work { n: 1000 }, unique()).await.unwrap();
    let again = client.insert(Work { n: 1000 }, unique()).await.unwrap();
    assert!(!first.unique_skipped_as_duplicate);
    assert!(
        again.unique_skipped_as_duplicate,
        "the duplicate is skipped"
    );
    assert_eq!(again.job.id, first.job.id);

    eventually("203 inserted jobs worked", || async {
        count(
            db,
            "kind = 'pgbouncer_work' AND state = 'completed' AND (args ->> 'n')::int8 >= 0",
        )
        .await
            == 203
    })
    .await;
    eventually("two periodic runs", || async {
        count(
            db,
            "metadata ->> 'river:periodic_job_id' = 'bouncer_tick' AND state = 'completed'",
        )
        .await
            >= 2
    })
    .await;
    eventually("the persistent worker's progress", || async {
        count(
            db,
            "kind = 'millrace_persistent:looper' AND state = 'running' \
             AND metadata -> 'progress' ->> 'through' = 'pgbouncer'",
        )
        .await
            == 1
    })
    .await;
    for leader in ["river_leader", "millrace_leader"] {
        let sql = format!(
            "SELECT leader_id FROM {} WHERE expires_at > now()",
            db.schema().qualify(leader)
        );
        eventually(&format!("{leader} held by the client"), || async {
            sqlx::query_scalar::<_, String>(AssertSqlSafe(sql.clone()))
                .fetch_optional(db.pool())
                .await
                .unwrap()
                .as_deref()
                == Some("bouncer-client")
        })
        .await;
    }
    assert_eq!(looper.starts.load(Ordering::SeqCst), 1, "never restarted");

    client.stop().await.unwrap();
    // Soft stop hands the persistent instance back through the pooler too.
    assert_eq!(
        count(
            db,
            "kind = 'millrace_persistent:looper' AND state = 'running'"
        )
        .await,
        0
    );
    assert!(worker.runs.load(Ordering::SeqCst) >= 205);
    eprintln!("workload through PgBouncer took {:?}", started.elapsed());
}

async fn count(db: &TestDb, filter: &str) -> i64 {
    let sql = format!(
        "SELECT count(*) FROM {} WHERE {filter}",
        db.schema().qualify("river_job")
    );
    sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(db.pool())
        .await
        .unwrap()
}

/// Waits, up to [`DEADLINE`], until `check` holds.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    millrace_test::eventually(what, DEADLINE, check).await;
}

/// A PgBouncer of this test's own, in transaction mode on a free port, in front of the test
/// database's server. It refuses to run as root, so as root it runs as `postgres`. Dropping it
/// stops it and deletes its directory, also when the test fails.
struct PgBouncer {
    child: Child,
    dir: PathBuf,
    port: u16,
    user: String,
}

impl PgBouncer {
    /// Starts PgBouncer in front of the server of the database URL `server`, or returns `None`
    /// with a warning when it is not installed outside CI.
    ///
    /// # Panics
    ///
    /// When PgBouncer is missing under `CI`, or does not start.
    fn start_or_skip(server: &str) -> Option<PgBouncer> {
        let Some(program) = pgbouncer_program() else {
            let hint = "PgBouncer is not installed: run scripts/test.sh, `apt-get install \
                        pgbouncer`, or set MILLRACE_PGBOUNCER to its path";
            if std::env::var_os("CI").is_some() {
                panic!("{hint}");
            }
            eprintln!("SKIPPED (not under CI): {hint}");
            return None;
        };
        Some(PgBouncer::start(&program, server))
    }

    fn start(program: &Path, server: &str) -> PgBouncer {
        let server: PgConnectOptions = server.parse().expect("the test database URL parses");
        let user = server.get_username().to_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("find a free port")
            .port();
        let dir =
            std::env::temp_dir().join(format!("millrace-pgbouncer-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create PgBouncer's directory");
        let database = server.get_database().unwrap_or("test");
        let target = format!(
            "host={} port={} dbname={database}",
            server.get_host(),
            server.get_port()
        );
        // Each setting says why: docs/deploy.md shows the same ones to operators.
        let ini = format!(
            "[databases]\n\
             test = {target}\n\
             single = {target} pool_size=1\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {auth}\n\
             pool_mode = transaction\n\
             default_pool_size = {SERVER_CONNECTIONS}\n\
             max_client_conn = 100\n\
             ignore_startup_parameters = extra_float_digits\n\
             logfile = {log}\n",
            auth = dir.join("userlist.txt").display(),
            log = dir.join("pgbouncer.log").display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).expect("write pgbouncer.ini");
        std::fs::write(dir.join("userlist.txt"), format!("\"{user}\" \"\"\n"))
            .expect("write userlist.txt");

        let mut cmd = Command::new(program);
        cmd.arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            // Dropping root in the child itself, not through runuser, keeps PgBouncer our
            // direct child, so that `kill` in drop reaches it.
            let (uid, gid) = postgres_ids();
            std::os::unix::process::CommandExt::uid(&mut cmd, uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, gid);
            Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{gid}"))
                .arg(&dir)
                .status()
                .expect("chown PgBouncer's directory");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", program.display()));
        let bouncer = PgBouncer {
            child,
            dir,
            port,
            user,
        };
        bouncer.wait_listening();
        bouncer
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PgBouncer did not listen on {} within 10 s; its log:\n{}",
                self.port,
                std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A pool of `size` connections to PgBouncer's `database`.
    async fn pool(&self, database: &str, size: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(size)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&format!(
                "postgres://{}@127.0.0.1:{}/{database}",
                self.user, self.port
            ))
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "cannot connect through PgBouncer: {err}; its log:\n{}",
                    std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
                )
            })
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `MILLRACE_PGBOUNCER`, else `pgbouncer` on the `PATH`, else Debian's `/usr/sbin/pgbouncer`
/// (`/usr/sbin` is not on a user's `PATH`).
fn pgbouncer_program() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MILLRACE_PGBOUNCER") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("pgbouncer"))
        .find(|program| program.is_file())
}

fn is_root() -> bool {
    id(&["-u"]) == 0
}

fn postgres_ids() -> (u32, u32) {
    (id(&["-u", "postgres"]), id(&["-g", "postgres"]))
}

fn id(args: &[&str]) -> u32 {
    let output = Command::new("id").args(args).output().expect("run id");
    assert!(output.status.success(), "id {args:?} failed");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("id prints a number")
}
