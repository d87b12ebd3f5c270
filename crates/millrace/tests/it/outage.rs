//! The database going away under a running client: a TCP proxy between the client and
//! PostgreSQL that the test cuts. Cut, it forwards nothing more and answers no new
//! connection, as a dead network path does, which is worse for a client than a refused
//! connection: nothing ever fails, it only hangs. PostgreSQL only: SQLite has no network.

use std::str::FromStr;
use std::time::{Duration, Instant};

use millrace::{
    BoxError, Client, Event, Job, JobArgs, PersistentContext, PersistentWorker, QueueConfig,
    WorkError, Worker, Workers,
};
use millrace_postgres::PgDriver;
use millrace_test::TestDb;
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Forward,
    /// A dead network path: nothing is forwarded any more, new connections are accepted
    /// and never answered. Nothing fails; everything hangs.
    Blackhole,
    /// A server that is down: every connection is closed, new ones at once.
    Refuse,
}

/// A TCP proxy to the test database's server that can be cut.
struct Proxy {
    port: u16,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, _) = watch::channel(Mode::Forward);
        let modes = mode.clone();
        tokio::spawn(async move {
            let mut blackholed = Vec::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                match *modes.borrow() {
                    Mode::Forward => {}
                    Mode::Blackhole => {
                        blackholed.push(inbound);
                        continue;
                    }
                    Mode::Refuse => continue,
                }
                let upstream = upstream.clone();
                let mut mode = modes.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        changed = async { mode.wait_for(|m| *m != Mode::Forward).await.map(|m| *m) } => {
                            if let Ok(Mode::Blackhole) = changed {
                                // Keep both ends open and forward nothing.
                                std::future::pending::<()>().await;
                            }
                        }
                    }
                });
            }
        });
        Proxy { port, mode }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Brief {
    millis: u64,
}

impl JobArgs for Brief {
    const KIND: &'static str = "outage_brief";
}

struct BriefWorker;

impl Worker for BriefWorker {
    type Args = Brief;

    async fn work(&self, job: Job<Brief>) -> Result<(), WorkError> {
        tokio::time::sleep(Duration::from_millis(job.args.millis)).await;
        Ok(())
    }
}

struct Looper;

impl PersistentWorker for Looper {
    async fn run(&self, ctx: PersistentContext) -> Result<(), BoxError> {
        ctx.cancelled().await;
        Ok(())
    }
}

/// The address of the test database's server.
fn upstream(db: &TestDb) -> String {
    let options = PgConnectOptions::from_str(db.url()).unwrap();
    format!("{}:{}", options.get_host(), options.get_port())
}

/// A driver on the test's schema whose connections all go through `proxy`.
async fn driver_through(db: &TestDb, proxy: &Proxy) -> PgDriver {
    let options = PgConnectOptions::from_str(db.url())
        .unwrap()
        .host("127.0.0.1")
        .port(proxy.port);
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .connect_with(options)
        .await
        .unwrap();
    PgDriver::new(pool).with_schema(db.schema().clone())
}

async fn running_jobs(db: &TestDb) -> i64 {
    let job = db.schema().qualify("river_job");
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {job} WHERE state = 'running' AND kind = 'outage_brief'"
    )))
    .fetch_one(db.pool())
    .await
    .unwrap()
}

// Issue 13, item 3: stop used to wait until the database came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_an_outage_returns_within_its_bound() {
    let db = TestDb::new().await;
    let proxy = Proxy::start(upstream(&db)).await;
    let bound = Duration::from_secs(1);
    let mut workers = Workers::new();
    workers.register(BriefWorker).unwrap();
    let client = Client::builder(driver_through(&db, &proxy).await)
        .workers(workers)
        .queue("default", QueueConfig::new().max_workers(10))
        .fetch_cooldown(Duration::from_millis(10))
        .persistent_worker("outage_looper", Looper)
        .cancel_grace(Duration::from_millis(300))
        .stop_database_timeout(bound)
        .build()
        .unwrap();
    let mut events = client.subscribe();
    client.start().await.unwrap();
    let persistent_started = async {
        while !matches!(
            events.recv().await.unwrap(),
            Event::PersistentWorkerStarted { .. }
        ) {}
    };
    tokio::time::timeout(Duration::from_secs(20), persistent_started)
        .await
        .expect("the persistent instance starts");
    for _ in 0..5 {
        client.insert(Brief { millis: 300 }, None).await.unwrap();
    }
    let all_running = async {
        while running_jobs(&db).await < 5 {
            // Polling the row: there is no event for "started running".
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), all_running)
        .await
        .expect("the jobs start");

    // The jobs finish during the outage, so their outcomes, the orphan sweep, the instance's
    // release, the resignations and the heartbeat's deletion all meet a dead database.
    proxy.set(Mode::Blackhole);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(60), client.stop())
        .await
        .expect("stop returns while the database is unreachable")
        .unwrap();
    let took = started.elapsed();
    // The jobs' 300 ms, then the bound; three times the bound is the margin.
    assert!(
        took < bound * 3,
        "stop took {took:?} with a bound of {bound:?}"
    );
    assert_eq!(
        running_jobs(&db).await,
        5,
        "outcomes that could not be stored leave the rows for the rescuers"
    );
}

/// Waits for its token (a heartbeat that cannot be renewed fires it), then fails.
#[derive(Debug, Serialize, Deserialize)]
struct Patient {}

impl JobArgs for Patient {
    const KIND: &'static str = "outage_patient";
}

struct PatientWorker;

impl Worker for PatientWorker {
    type Args = Patient;

    async fn work(&self, job: Job<Patient>) -> Result<(), WorkError> {
        job.cancelled().await;
        Err(WorkError::msg("stopped by its token"))
    }
}

async fn state_of(db: &TestDb, id: millrace::JobId) -> String {
    let job = db.schema().qualify("river_job");
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT state::text FROM {job} WHERE id = $1"
    )))
    .bind(id.0)
    .fetch_one(db.pool())
    .await
    .unwrap()
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let wait = async {
        // Polling the row: no event tells another client's rescue.
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("{what} within 30 s"));
}

// Issue 13, item 4: an outage longer than the heartbeat lease, end to end and measured (the
// figures in the README's section on heartbeats come from this test's output).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_longer_than_the_heartbeat_lease_reports_the_fenced_out_completion() {
    let db = TestDb::new().await;
    let lease = Duration::from_secs(2);
    let workers = || {
        let mut workers = Workers::new();
        workers.register(PatientWorker).unwrap();
        workers
    };
    // The survivor: on the database directly, it leads and rescues; it works another queue.
    let survivor = Client::builder(db.driver())
        .workers(workers())
        .queue("elsewhere", QueueConfig::new())
        .heartbeat_lease(lease)
        .build()
        .unwrap();
    survivor.start().await.unwrap();
    let proxy = Proxy::start(upstream(&db)).await;
    let client = Client::builder(driver_through(&db, &proxy).await)
        .workers(workers())
        .queue("default", QueueConfig::new())
        .heartbeat_lease(lease)
        .job_timeout(None)
        .cancel_grace(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut events = client.subscribe();
    client.start().await.unwrap();
    let id = client.insert(Patient {}, None).await.unwrap().job.id;
    wait_until("the job starts", || async {
        state_of(&db, id).await == "running"
    })
    .await;

    proxy.set(Mode::Refuse);
    let cut = Instant::now();
    wait_until("the survivor rescues the job", || async {
        state_of(&db, id).await != "running"
    })
    .await;
    let rescued = cut.elapsed();
    proxy.set(Mode::Forward);
    let fenced_out = async {
        loop {
            if let Event::CompletionsFencedOut { jobs } = events.recv().await.unwrap() {
                return jobs;
            }
        }
    };
    let jobs = tokio::time::timeout(Duration::from_secs(30), fenced_out)
        .await
        .expect("the late completion is reported as fenced out");
    let reported = cut.elapsed();
    eprintln!(
        "heartbeat lease {lease:?}: job rescued {rescued:?} after the outage began; \
         the late completion reported fenced out {reported:?} after it began \
         ({:?} after the database returned)",
        reported - rescued
    );
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].id, jobs[0].attempt), (id, 1));
    // The lease, plus the survivor's one-second rescue pass, plus a margin.
    assert!(
        rescued < lease + Duration::from_secs(3),
        "rescued after {rescued:?}"
    );
    client.stop_and_cancel().await.unwrap();
    survivor.stop().await.unwrap();
    let row = survivor.job_get(id).await.unwrap();
    assert!(
        row.errors.iter().all(|e| e.error != "stopped by its token"),
        "the fenced-out outcome left no trace on the row: {:?}",
        row.errors
    );
    assert!(
        row.errors[0].error.contains("stopped heartbeating"),
        "{:?}",
        row.errors
    );
}
