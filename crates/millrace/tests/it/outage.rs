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
use tokio_util::sync::CancellationToken;

/// A TCP proxy to the test database's server that can be cut.
struct Proxy {
    port: u16,
    cut: CancellationToken,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = CancellationToken::new();
        let cut_accepts = cut.clone();
        tokio::spawn(async move {
            let mut blackholed = Vec::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if cut_accepts.is_cancelled() {
                    // Accepted, never answered: the client's connect hangs.
                    blackholed.push(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let cut = cut_accepts.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        // Keep both ends open and forward nothing: queries in flight hang.
                        () = cut.cancelled() => std::future::pending::<()>().await,
                    }
                });
            }
        });
        Proxy { port, cut }
    }

    /// Cuts every connection, present and future.
    fn cut(&self) {
        self.cut.cancel();
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
    let upstream = {
        let options = PgConnectOptions::from_str(db.url()).unwrap();
        format!("{}:{}", options.get_host(), options.get_port())
    };
    let proxy = Proxy::start(upstream).await;
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
    proxy.cut();
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
