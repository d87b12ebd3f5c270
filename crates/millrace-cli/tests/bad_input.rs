//! The `millrace` command under hostile but fair input (issue 13, item 5): numeric flags out
//! of range, a reader that closes the pipe early, SIGINT and SIGTERM in the middle of a
//! benchmark, a server that refuses connections, database errors, and a connection blip under
//! the demo.

use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use millrace_test::TestDb;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdout};
use tokio::sync::watch;

/// The local server's test database, as `millrace_test` reads it.
fn database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn command(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_millrace"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `millrace` with `args` to its end, which must come within `within`.
async fn millrace(args: &[&str], within: Duration) -> Output {
    tokio::time::timeout(within, command(args).output())
        .await
        .unwrap_or_else(|_| panic!("millrace {args:?} did not end within {within:?}"))
        .expect("run millrace")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits for the child to exit, within `within`.
async fn exit_within(child: &mut Child, within: Duration, what: &str) -> ExitStatus {
    tokio::time::timeout(within, child.wait())
        .await
        .unwrap_or_else(|_| panic!("{what}: millrace did not exit within {within:?}"))
        .expect("wait for millrace")
}

/// Reads the child's stderr to the end on a task of its own, so a full pipe never blocks it.
fn collect_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                return;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// The next stdout line that contains `needle`, within `within`.
async fn line_containing(
    lines: &mut tokio::io::Lines<BufReader<ChildStdout>>,
    needle: &str,
    within: Duration,
) -> String {
    let find = async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("stdout ended without a line containing {needle:?}");
    };
    tokio::time::timeout(within, find)
        .await
        .unwrap_or_else(|_| panic!("no line containing {needle:?} within {within:?}"))
}

async fn schema_exists(db: &TestDb, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(name)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("the child runs").to_string();
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

#[tokio::test]
async fn numeric_flags_out_of_range_are_usage_errors_with_status_2() {
    let url = database_url();
    let bench = |extra: &[&'static str]| {
        let mut args = vec!["bench", "--database-url", url.as_str()];
        args.extend_from_slice(extra);
        args
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            bench(&["--duration", "1", "--rate", "2000000000"]),
            "--rate",
        ),
        (bench(&["--duration", "1", "--rate", "0"]), "--rate"),
        (bench(&["-n", "10", "--pool-size", "0"]), "--pool-size"),
        (
            bench(&["-n", "10", "--insert-batch", "0"]),
            "--insert-batch",
        ),
        (bench(&["--duration", "nan", "--rate", "10"]), "--duration"),
        (bench(&["--duration", "inf", "--rate", "10"]), "--duration"),
        (bench(&["--duration=-1", "--rate", "10"]), "--duration"),
        (bench(&["--duration", "0", "--rate", "10"]), "--duration"),
        (
            bench(&["--duration", "1e300", "--rate", "10"]),
            "--duration",
        ),
        (bench(&["-n", "0"]), "--count"),
        (bench(&["-n", "10", "--max-workers", "0"]), "--max-workers"),
        (
            bench(&["-n", "10", "--max-workers", "10001"]),
            "--max-workers",
        ),
        (
            bench(&["-n", "10", "--fetch-poll-ms", "0"]),
            "--fetch-poll-ms",
        ),
        (
            bench(&["-n", "10", "--fetch-cooldown-ms", "99999999999"]),
            "--fetch-cooldown-ms",
        ),
        (
            vec![
                "bench",
                "persistent",
                "--database-url",
                &url,
                "--lease",
                "0",
            ],
            "--lease",
        ),
        (
            vec![
                "bench",
                "persistent",
                "--database-url",
                &url,
                "--lease",
                "18446744073709551615",
            ],
            "--lease",
        ),
        (
            vec![
                "bench",
                "persistent",
                "--database-url",
                &url,
                "--trials",
                "0",
            ],
            "--trials",
        ),
        (vec!["demo", "--rate", "0"], "--rate"),
        (vec!["demo", "--lease", "0"], "--lease"),
        (vec!["demo", "--periodic-secs", "0"], "--periodic-secs"),
        (vec!["demo", "--duration", "0"], "--duration"),
        (
            vec!["migrate-up", "--database-url", &url, "--max-steps", "0"],
            "--max-steps",
        ),
        (
            vec![
                "migrate-up",
                "--database-url",
                &url,
                "--target-version",
                "0",
            ],
            "--target-version",
        ),
        (
            vec![
                "migrate-down",
                "--database-url",
                &url,
                "--target-version=-2",
            ],
            "--target-version",
        ),
        (vec!["migrate-get", "--version", "0"], "--version"),
        (
            vec!["validate", "--database-url", &url, "--target-version", "0"],
            "--target-version",
        ),
    ];
    for (args, flag) in cases {
        let output = millrace(&args, Duration::from_secs(15)).await;
        let err = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("invalid value") && err.contains(flag),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn closed_stdout_ends_the_command_quietly() {
    let db = TestDb::new().await;

    // The demo prints a line per job; the reader takes the first and goes away.
    let mut demo = command(&[
        "demo",
        "--database-url",
        db.url(),
        "--schema",
        db.schema().name(),
    ])
    .spawn()
    .unwrap();
    let stderr = collect_stderr(&mut demo);
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    line_containing(&mut lines, "millrace demo: client", Duration::from_secs(20)).await;
    drop(lines);
    let status = exit_within(&mut demo, Duration::from_secs(15), "demo").await;
    let err = stderr.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "demo: {status}: {err}");
    assert!(!err.contains("panicked"), "{err}");

    // The benchmark drops its schema on the way out.
    let mut bench = command(&["bench", "--database-url", db.url(), "-n", "2000"])
        .spawn()
        .unwrap();
    let schema = format!("millrace_bench_{}", bench.id().unwrap());
    let stderr = collect_stderr(&mut bench);
    let mut lines = BufReader::new(bench.stdout.take().unwrap()).lines();
    line_containing(&mut lines, "settings:", Duration::from_secs(20)).await;
    drop(lines);
    let status = exit_within(&mut bench, Duration::from_secs(20), "bench").await;
    let err = stderr.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "bench: {status}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !schema_exists(&db, &schema).await,
        "bench left {schema} behind"
    );
}

#[tokio::test]
async fn bench_drops_its_schema_on_sigint_and_sigterm() {
    let db = TestDb::new().await;
    for (name, code) in [("INT", 130), ("TERM", 143)] {
        let mut bench = command(&[
            "bench",
            "--database-url",
            db.url(),
            "--duration",
            "60",
            "--rate",
            "200",
        ])
        .spawn()
        .unwrap();
        let schema = format!("millrace_bench_{}", bench.id().unwrap());
        let stderr = collect_stderr(&mut bench);
        let mut lines = BufReader::new(bench.stdout.take().unwrap()).lines();
        // Progress lines come once the producer runs: the benchmark is in full swing.
        line_containing(&mut lines, "inserted", Duration::from_secs(20)).await;
        assert!(
            schema_exists(&db, &schema).await,
            "{schema} exists while it runs"
        );
        signal(&bench, name);
        // Keep reading, so the benchmark never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let status = exit_within(&mut bench, Duration::from_secs(15), name).await;
        let err = stderr.lock().unwrap().clone();
        assert_eq!(status.code(), Some(code), "SIG{name}: {status}: {err}");
        assert!(
            !schema_exists(&db, &schema).await,
            "SIG{name} left {schema} behind: {err}"
        );
    }
    // And the normal end.
    let bench = command(&["bench", "--database-url", db.url(), "-n", "200"])
        .spawn()
        .unwrap();
    let schema = format!("millrace_bench_{}", bench.id().unwrap());
    let output = tokio::time::timeout(Duration::from_secs(60), bench.wait_with_output())
        .await
        .expect("bench -n 200 ends within a minute")
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!schema_exists(&db, &schema).await, "{schema} left behind");
}

#[tokio::test]
async fn a_refused_server_fails_fast_naming_host_and_port() {
    // A port nobody listens on: bound, then freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let cases = [
        vec!["demo", "--database-url", url.as_str(), "--duration", "1"],
        vec!["bench", "--database-url", url.as_str(), "-n", "10"],
        vec!["bench", "persistent", "--database-url", url.as_str()],
        vec!["migrate-list", "--database-url", url.as_str()],
    ];
    for args in cases {
        let started = Instant::now();
        let output = millrace(&args, Duration::from_secs(40)).await;
        let took = started.elapsed();
        let err = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            took < Duration::from_secs(5),
            "{args:?} took {took:?}: {err}"
        );
        assert!(
            err.contains(&format!("127.0.0.1:{port}")),
            "{args:?}: the error names no host and port: {err}"
        );
        assert!(err.contains("refused"), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn each_error_is_printed_once() {
    // An error the migrator returns (and used to log as well).
    let url = database_url();
    let output = millrace(
        &[
            "migrate-up",
            "--database-url",
            &url,
            "--schema",
            "millrace_no_such_schema",
            "--target-version",
            "99",
            "--dry-run",
        ],
        Duration::from_secs(20),
    )
    .await;
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert_eq!(err.matches("has no version 99").count(), 1, "{err}");

    // An error of the database itself (which sqlx repeats in its wrapper).
    let url = url.replacen("postgres@", "millrace_no_such_role@", 1);
    for args in [
        vec!["demo", "--database-url", url.as_str(), "--duration", "1"],
        vec!["migrate-list", "--database-url", url.as_str()],
    ] {
        let output = millrace(&args, Duration::from_secs(20)).await;
        let err = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err.matches("role \"millrace_no_such_role\" does not exist")
                .count(),
            1,
            "{args:?}: {err}"
        );
    }
}

/// A loopback TCP proxy to PostgreSQL that the test can cut: while cut, it closes every
/// connection it forwards and every new one at once, as a server restart would.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let (cuts, _) = watch::channel(0u64);
        let flag = cut.clone();
        let cuts_rx = cuts.subscribe();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cuts = cuts_rx.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    let forward = async {
                        tokio::select! {
                            _ = tokio::io::copy(&mut ri, &mut wo) => {}
                            _ = tokio::io::copy(&mut ro, &mut wi) => {}
                        }
                    };
                    tokio::select! {
                        () = forward => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy { port, cut, cuts }
    }

    fn cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            self.cuts.send_modify(|n| *n += 1);
        }
    }
}

#[tokio::test]
async fn demo_rides_out_a_connection_blip() {
    let db = TestDb::new().await;
    let upstream: u16 = db
        .url()
        .rsplit('@')
        .next()
        .and_then(|rest| rest.split(['/', '?']).next())
        .and_then(|host| host.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or(5432);
    let proxy = Proxy::start(upstream).await;
    let proxied = db
        .url()
        .replacen(&format!(":{upstream}/"), &format!(":{}/", proxy.port), 1);
    let mut demo = command(&[
        "demo",
        "--database-url",
        &proxied,
        "--schema",
        db.schema().name(),
        "--rate",
        "20",
    ])
    // The note that inserting resumed is logged at info.
    .env("RUST_LOG", "warn,millrace=info")
    .spawn()
    .unwrap();
    let stderr = collect_stderr(&mut demo);
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    line_containing(&mut lines, "inserted ", Duration::from_secs(20)).await;
    // From here on the demo's stdout is read on a task of its own, stamped.
    let inserts: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let sink = inserts.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("inserted ") {
                sink.lock().unwrap().push(Instant::now());
            }
        }
    });

    proxy.cut(true);
    // The demo says it is riding the blip out, and does not exit.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !stderr.lock().unwrap().contains("inserting failed") {
        if let Some(status) = demo.try_wait().unwrap() {
            panic!(
                "the demo exited during the blip ({status}):\n{}",
                stderr.lock().unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no warning within 15 s:\n{}",
            stderr.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restored = Instant::now();
    proxy.cut(false);
    // Inserting resumes once the database is back, and says so.
    let deadline = restored + Duration::from_secs(20);
    loop {
        let fresh = inserts.lock().unwrap().iter().any(|at| *at > restored);
        if fresh && stderr.lock().unwrap().contains("inserting resumed") {
            break;
        }
        if let Some(status) = demo.try_wait().unwrap() {
            panic!(
                "the demo exited after the blip ({status}):\n{}",
                stderr.lock().unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "inserting did not resume within 20 s:\n{}",
            stderr.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&demo, "INT");
    let status = exit_within(&mut demo, Duration::from_secs(30), "demo").await;
    assert!(status.success(), "{status}: {}", stderr.lock().unwrap());
}
