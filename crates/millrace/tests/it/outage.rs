//! The database going away under a running client: a TCP proxy between the client and
//! PostgreSQL that the test cuts. Cut, it forwards nothing more and answers no new
//! connection, as a dead network path does, which is worse for a client than a refused
//! connection: nothing ever fails, it only hangs. PostgreSQL only: SQLite has no network.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// Runs until the test opens its gate, so every copy is running at once however slowly a
/// loaded machine fetches them, and they all finish when the test says.
#[derive(Debug, Serialize, Deserialize)]
struct Brief {}

impl JobArgs for Brief {
    const KIND: &'static str = "outage_brief";
}

struct BriefWorker {
    gate: watch::Receiver<bool>,
}

impl Worker for BriefWorker {
    type Args = Brief;

    async fn work(&self, _job: Job<Brief>) -> Result<(), WorkError> {
        let mut gate = self.gate.clone();
        gate.wait_for(|open| *open)
            .await
            .map_err(|_| WorkError::msg("the test dropped its gate"))?;
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
    let (gate, gate_rx) = watch::channel(false);
    let mut workers = Workers::new();
    workers.register(BriefWorker { gate: gate_rx }).unwrap();
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
        client.insert(Brief {}, None).await.unwrap();
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
    // release, the resignations and the heartbeat's deletion all meet a dead database. (Jobs
    // that slept 300 ms instead raced the fetch: on a loaded CI machine the first finished
    // before the fifth was fetched, and five never ran at once.)
    proxy.set(Mode::Blackhole);
    gate.send_replace(true);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(60), client.stop())
        .await
        .expect("stop returns while the database is unreachable")
        .unwrap();
    let took = started.elapsed();
    // The bound; three times the bound is the margin.
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

/// Waits up to 30 s until `check` holds, polling the row: no event tells another client's
/// rescue.
async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, check: impl FnMut() -> F) {
    millrace_test::eventually(what, Duration::from_secs(30), check).await;
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

/// Holds one of its client's pool connections until the test lets go, noting whether its
/// token fired (its client fenced itself) meanwhile.
#[derive(Debug, Serialize, Deserialize)]
struct Hog {}

impl JobArgs for Hog {
    const KIND: &'static str = "outage_hog";
}

struct HogWorker {
    release: watch::Receiver<bool>,
    holding: Arc<AtomicUsize>,
    fenced: Arc<AtomicBool>,
}

impl Worker for HogWorker {
    type Args = Hog;

    async fn work(&self, job: Job<Hog>) -> Result<(), WorkError> {
        let pool = job.client::<PgDriver>()?.driver().pool().clone();
        let conn = pool.acquire().await?;
        self.holding.fetch_add(1, Ordering::SeqCst);
        let mut release = self.release.clone();
        tokio::select! {
            _ = release.wait_for(|go| *go) => {}
            () = job.cancelled() => self.fenced.store(true, Ordering::SeqCst),
        }
        drop(conn);
        Ok(())
    }
}

/// The heartbeat renews on a connection of its own, so a client whose pool its workers hold
/// for longer than the fence allows keeps its lease and its jobs: self-fencing is for a
/// database that cannot be reached, not for a busy pool (issue 20). On the pool, the renewals
/// starved behind the workers and the client cancelled its own jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_neither_starves_the_heartbeat_nor_fences_the_client() {
    const POOL: u32 = 3;
    let db = TestDb::new().await;
    let lease = Duration::from_secs(2);
    let pool = PgPoolOptions::new()
        .max_connections(POOL)
        // Workers waiting for a connection wait out the test rather than fail.
        .acquire_timeout(Duration::from_secs(60))
        .connect_lazy(db.url())
        .unwrap();
    let (release, released) = watch::channel(false);
    let holding = Arc::new(AtomicUsize::new(0));
    let fenced = Arc::new(AtomicBool::new(false));
    let mut workers = Workers::new();
    workers
        .register(HogWorker {
            release: released,
            holding: holding.clone(),
            fenced: fenced.clone(),
        })
        .unwrap();
    let client = Client::builder(PgDriver::new(pool.clone()).with_schema(db.schema().clone()))
        .id("hogged")
        .workers(workers)
        .queue("default", QueueConfig::new().max_workers(POOL as usize))
        .heartbeat_lease(lease)
        .job_timeout(None)
        .build()
        .unwrap();
    client.start().await.unwrap();
    for _ in 0..POOL {
        client.insert(Hog {}, None).await.unwrap();
    }
    // The notifier's LISTEN connection and the workers' take every connection of the pool.
    wait_until("the workers saturate the pool", || async {
        holding.load(Ordering::SeqCst) >= (POOL - 1) as usize
            && pool.size() == POOL
            && pool.num_idle() == 0
    })
    .await;
    let client_table = db.schema().qualify("millrace_client");
    // Times as seconds since the epoch, all by the server's clock; no row yet reads as 0.
    let heartbeat_at = || async {
        sqlx::query_scalar::<_, f64>(AssertSqlSafe(format!(
            "SELECT extract(epoch FROM heartbeat_at)::float8 FROM {client_table} \
             WHERE id = 'hogged'"
        )))
        .fetch_optional(db.pool())
        .await
        .unwrap()
        .unwrap_or(0.0)
    };
    let saturated: f64 = sqlx::query_scalar("SELECT extract(epoch FROM now())::float8")
        .fetch_one(db.pool())
        .await
        .unwrap();
    // Renewed after twice the lease of saturation: well past the point (four fifths of the
    // lease without a renewal) where a starved client fences itself.
    let past_fence = saturated + (lease * 2).as_secs_f64();
    let renewed = tokio::time::timeout(lease * 6, async {
        while heartbeat_at().await < past_fence {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let was_fenced = fenced.load(Ordering::SeqCst);
    release.send_replace(true);
    client.stop().await.unwrap();
    assert!(
        renewed.is_ok(),
        "the heartbeat was not renewed for twice its lease while the pool was saturated"
    );
    assert!(
        !was_fenced,
        "the client fenced itself (cancelled its jobs) although the database was reachable"
    );
}
