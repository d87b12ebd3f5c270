//! Exactly once when replies are lost after the server committed: the proofs, and the proxy
//! in front of the test database that loses the replies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use millrace::Client;
use millrace_test::TestDb;
use sqlx::AssertSqlSafe;
use tokio::time::Instant;

use super::fleet::Fleet;
use super::jobs::{assert_exactly_once, create_runs_table, insert_load_jobs, wait_until};
use super::load_worker::{ACQUIRE_TIMEOUT, load_client, load_pool};
use super::logs::{print_warnings, run_logged};
use super::{JOBS, LOAD_DEADLINE, MAX_WORKERS, POOL_SIZE, PROCESS_DEADLINE};

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
