//! What the tests share: seeded databases on both engines, a served dashboard, a database
//! that can be taken away and given back, and waiting with deadlines.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use millrace::{Client, InsertManyParams, InsertOpts, JobRow, MigrateOpts, Migrator};
use millrace_postgres::PgDriver;
use millrace_sqlite::SqliteDriver;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

/// Inserts `n` jobs of `kind` in `queue`, each with args `{"n": i}`.
pub(crate) async fn seed<D: millrace::Driver>(
    client: &Client<D>,
    kind: &str,
    queue: &str,
    n: usize,
) -> Vec<JobRow> {
    let params = (0..n).map(|i| {
        InsertManyParams::from_json(kind, &serde_json::json!({ "n": i }))
            .opts(InsertOpts::new().queue(queue))
    });
    client
        .insert_many(params)
        .await
        .expect("seed jobs")
        .into_iter()
        .map(|r| r.job)
        .collect()
}

/// A client on a fresh SQLite file, migrated through both lines.
pub(crate) async fn sqlite_client(name: &str) -> (Client<SqliteDriver>, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("millrace-web-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let path = dir.join("jobs.db");
    let driver = SqliteDriver::open(path.to_str().expect("utf-8 path"))
        .await
        .expect("open sqlite");
    let migrator = Migrator::new(driver.clone());
    migrator
        .migrate_up(MigrateOpts::new())
        .await
        .expect("migrate main");
    migrator
        .migrate_up(MigrateOpts::new().line("millrace"))
        .await
        .expect("migrate millrace");
    (Client::builder(driver).build().expect("client"), dir)
}

/// Serves `router` on a free loopback port; the server runs until the test's runtime ends.
pub(crate) async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    format!("http://{addr}")
}

/// Polls `check` until it returns `Some`, failing the test after `deadline`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP relay in front of PostgreSQL that can refuse every connection (and cut the open
/// ones) and then let them through again: a database that goes away and comes back, without
/// touching the shared server.
pub(crate) struct Gate {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl Gate {
    pub(crate) async fn start(upstream: SocketAddr) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gate");
        let addr = listener.local_addr().expect("gate addr");
        let up = Arc::new(AtomicBool::new(true));
        let generation = tokio::sync::watch::Sender::new(0u64);
        let (accept_up, accept_gen) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = accept_gen.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Gate {
            addr,
            up,
            generation,
        }
    }

    /// The database URL through the gate.
    pub(crate) fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("url scheme");
        let (auth, rest) = rest.split_once('@').expect("url user");
        let path = &rest[rest.find('/').expect("url path")..];
        format!("{scheme}://{auth}@{}{path}", self.addr)
    }

    pub(crate) fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub(crate) fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// The PostgreSQL server's address from a URL (`…@host:port/…`).
pub(crate) fn pg_addr(url: &str) -> SocketAddr {
    let rest = url.split_once('@').expect("url user").1;
    let hostport = &rest[..rest.find('/').expect("url path")];
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    let hostport = hostport.replace("localhost", "127.0.0.1");
    hostport.parse().expect("host:port")
}

/// A client whose connections go through `gate`, in the test database's schema, giving up on
/// a connection after two seconds.
pub(crate) fn client_through(gate: &Gate, db: &millrace_test::TestDb) -> Client<PgDriver> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(&gate.url_for(db.url()))
        .expect("lazy pool");
    let driver = PgDriver::new(pool).with_schema(db.schema().clone());
    Client::builder(driver).build().expect("client")
}
