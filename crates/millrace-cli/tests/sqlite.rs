//! The `millrace` command on SQLite files (issue 7): the demo with no database URL, the
//! migration commands, the benchmark and `queues set-concurrency` on `sqlite://` URLs, and the
//! error a URL of another scheme gets.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

/// An empty folder of its own for a test, under Cargo's scratch space for integration tests.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("millrace-cli-sqlite-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch folder");
    dir
}

/// Runs `millrace` with `args` in `dir`, without DATABASE_URL, and waits for it to exit.
async fn millrace(dir: &Path, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_millrace"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("millrace {args:?} ends within two minutes"))
        .expect("run millrace")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that the command exited 0, showing what it printed when it did not.
fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

#[tokio::test]
async fn demo_without_a_url_runs_on_a_sqlite_file_in_the_current_folder() {
    let dir = scratch("demo");
    let output = millrace(&dir, &["demo", "--duration", "3"]).await;
    assert_success(&output, "millrace demo");
    let out = stdout(&output);
    let header = out.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("millrace demo: client ")
            && header.contains(" on sqlite millrace-demo.sqlite, "),
        "{header}"
    );
    assert!(
        out.contains("persistent-worker ticker started client="),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("completed ") && l.contains("demo_send_email")),
        "no job completed:\n{out}"
    );
    assert!(dir.join("millrace-demo.sqlite").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn migrate_commands_work_on_a_sqlite_url() {
    let dir = scratch("migrate");
    let url = format!("sqlite://{}", dir.join("jobs.db").display());
    let db = ["--database-url", url.as_str()];
    let cmd = |name: &'static str, extra: &'static [&'static str]| {
        let mut args = vec![name];
        args.extend(db);
        args.extend(extra);
        args
    };

    // Reading a file that is not there is an error, not a new empty database.
    let missing = millrace(&dir, &cmd("migrate-list", &[])).await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("does not exist"),
        "{}",
        stderr(&missing)
    );
    assert!(!dir.join("jobs.db").exists());

    let up = millrace(&dir, &cmd("migrate-up", &[])).await;
    assert_success(&up, "migrate-up");
    let applied = stdout(&up);
    assert!(
        applied.contains("applied main 001 create_river_migration"),
        "{applied}"
    );
    assert!(
        applied.contains("applied main 008 job_id_autoincrement"),
        "{applied}"
    );
    assert!(applied.contains("applied millrace 001 fleet"), "{applied}");

    let list = millrace(&dir, &cmd("migrate-list", &[])).await;
    assert_success(&list, "migrate-list");
    let listed = stdout(&list);
    assert_eq!(listed.lines().count(), 11, "{listed}");
    assert!(listed.lines().all(|l| l.contains(" applied ")), "{listed}");
    assert_success(&millrace(&dir, &cmd("validate", &[])).await, "validate");

    let down = millrace(&dir, &cmd("migrate-down", &["--target-version", "0"])).await;
    assert_success(&down, "migrate-down");
    let reverted = stdout(&down);
    assert!(
        reverted.contains("reverted millrace 001 fleet"),
        "{reverted}"
    );
    assert!(
        reverted.contains("reverted main 001 create_river_migration"),
        "{reverted}"
    );
    let list = millrace(&dir, &cmd("migrate-list", &[])).await;
    assert_success(&list, "migrate-list");
    assert!(
        stdout(&list).lines().all(|l| l.ends_with("pending")),
        "{}",
        stdout(&list)
    );
    let pending = millrace(&dir, &cmd("validate", &[])).await;
    assert_eq!(pending.status.code(), Some(1), "{}", stderr(&pending));

    // A SQLite schema is an attached database, which the command cannot attach.
    let schema = millrace(&dir, &cmd("migrate-up", &["--schema", "jobs"])).await;
    assert_eq!(schema.status.code(), Some(2));
    assert!(
        stderr(&schema).contains("attached database"),
        "{}",
        stderr(&schema)
    );

    // migrate-get prints SQLite's SQL when told, or when the URL is SQLite's.
    for args in [
        vec!["migrate-get", "--version", "2", "--driver", "sqlite"],
        cmd("migrate-get", &["--version", "2"]),
    ] {
        let get = millrace(&dir, &args).await;
        assert_success(&get, "migrate-get");
        let sql = stdout(&get);
        assert!(
            sql.contains("CREATE TABLE \"main\".river_job"),
            "{args:?}: {sql}"
        );
    }
    let get = millrace(&dir, &["migrate-get", "--version", "2"]).await;
    assert_success(&get, "migrate-get");
    assert!(
        stdout(&get).contains("\"public\".river_job"),
        "PostgreSQL's SQL without a URL:\n{}",
        stdout(&get)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bench_on_sqlite_uses_a_file_of_its_own_and_prints_the_summary_line() {
    let dir = scratch("bench");
    let url = format!("sqlite://{}", dir.join("app.db").display());
    let output = millrace(&dir, &["bench", "--database-url", &url, "-n", "2000"]).await;
    assert_success(&output, "millrace bench");
    let out = stdout(&output);
    let last = out.lines().last().unwrap_or_default();
    let fields: Vec<&str> = last
        .split_whitespace()
        .map(|field| field.split_once('=').map_or("", |(name, _)| name))
        .collect();
    assert_eq!(
        fields[..3],
        ["jobs_per_sec", "work_jobs_per_sec", "insert_jobs_per_sec"],
        "{last}"
    );
    assert!(
        last.split_whitespace().all(|f| f
            .split_once('=')
            .is_some_and(|(_, v)| v.parse::<f64>().is_ok())),
        "{last}"
    );
    // The named file was never touched, and the benchmark's own is gone.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_url_of_another_scheme_is_a_clear_error_with_status_2() {
    let dir = scratch("scheme");
    let url = "mysql://root:secret@localhost/app";
    for args in [
        vec!["migrate-up", "--database-url", url],
        vec!["demo", "--database-url", url, "--duration", "1"],
        vec!["bench", "--database-url", url, "-n", "1"],
    ] {
        let output = millrace(&dir, &args).await;
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("unsupported database URL scheme \"mysql\"") && err.contains("sqlite://"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("secret"), "the password leaked: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bench_in_a_kept_schema_refuses_unfinished_jobs_of_its_kind() {
    let dir = scratch("bench-kept");
    let path = dir.join("kept.db");
    let url = format!("sqlite://{}", path.display());
    let kept = ["bench", "--database-url", &url, "--schema", "main"];
    let run = |extra: &'static [&'static str]| {
        let args: Vec<&str> = kept.iter().copied().chain(extra.iter().copied()).collect();
        let dir = dir.clone();
        async move { millrace(&dir, &args).await }
    };
    // Finished jobs of earlier runs stay and do not get in the way.
    assert_success(&run(&["-n", "300"]).await, "first run");
    assert_success(&run(&["-n", "300"]).await, "second run");
    assert_success(
        &run(&["--duration", "1", "--rate", "200"]).await,
        "latency run",
    );
    // An unfinished job of the benchmark's kind would be worked and counted: refused.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO river_job (args, kind, max_attempts, priority, queue) \
         VALUES ('{}', 'noop', 25, 1, 'default')",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let refused = run(&["-n", "10"]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("holds unfinished jobs of kind \"noop\""),
        "{}",
        stderr(&refused)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends `signal` (`INT`, `TERM`) to the process `pid`.
fn send_signal(pid: u32, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} {pid}");
}

// Issue 13, item 3: a second Ctrl-C used to be ignored while the stop waited on the database.
#[tokio::test]
async fn demo_exits_at_once_on_a_second_signal() {
    use sqlx::Connection as _;
    use tokio::io::AsyncBufReadExt as _;

    let dir = scratch("second-signal");
    let mut demo = tokio::process::Command::new(env!("CARGO_BIN_EXE_millrace"))
        .args(["demo", "--rate", "50"])
        .current_dir(&dir)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn millrace demo");
    let mut lines = tokio::io::BufReader::new(demo.stdout.take().unwrap()).lines();
    let started = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("completed ") {
                return;
            }
        }
        panic!("the demo ended before working a job");
    };
    tokio::time::timeout(Duration::from_secs(60), started)
        .await
        .expect("the demo works a job within a minute");
    // Keep draining its output, so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // Hold the write lock, so the stop waits on the database: the outcomes, the persistent
    // instance's release and the heartbeat's deletion all need to write.
    let url = format!("sqlite://{}", dir.join("millrace-demo.sqlite").display());
    let mut lock = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();

    let pid = demo.id().expect("the demo runs");
    send_signal(pid, "INT");
    let first = tokio::time::timeout(Duration::from_millis(700), demo.wait()).await;
    assert!(
        first.is_err(),
        "the stop should be waiting on the locked database, yet the demo ended: {first:?}"
    );
    let second = std::time::Instant::now();
    send_signal(pid, "INT");
    let status = tokio::time::timeout(Duration::from_secs(3), demo.wait())
        .await
        .expect("a second signal ends the demo at once")
        .unwrap();
    assert_eq!(status.code(), Some(130), "{status}");
    assert!(
        second.elapsed() < Duration::from_secs(1),
        "{:?}",
        second.elapsed()
    );
    drop(lock);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn queues_set_concurrency_on_a_sqlite_file_sets_shows_refuses_and_clears() {
    let dir = scratch("set-concurrency");
    let url = format!("sqlite://{}", dir.join("jobs.db").display());
    let on = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend(["--database-url".to_owned(), url.clone()]);
        all
    };
    let run = |args: Vec<String>| {
        let dir = dir.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            millrace(&dir, &args).await
        }
    };
    assert_success(&run(on(&["migrate-up"])).await, "migrate-up");

    let set = run(on(&[
        "queues",
        "set-concurrency",
        "api",
        "--global",
        "2",
        "--by-args",
        "customer_id,region",
    ]))
    .await;
    assert_success(&set, "set-concurrency");
    assert!(
        stdout(&set).contains("global 2, by args customer_id,region"),
        "{}",
        stdout(&set)
    );
    let get = run(on(&["queues", "get", "api", "--json"])).await;
    assert_success(&get, "queues get");
    let api: serde_json::Value =
        serde_json::from_str(stdout(&get).trim()).expect("one JSON object");
    assert_eq!(api["concurrency_override"]["global_limit"], 2);
    assert_eq!(
        api["concurrency_override"]["partition"]["by_args"],
        serde_json::json!(["customer_id", "region"])
    );

    // Refused with status 2 and the reason, and nothing written.
    let zero = run(on(&["queues", "set-concurrency", "api", "--global", "0"])).await;
    assert_eq!(zero.status.code(), Some(2), "{}", stderr(&zero));
    assert!(stderr(&zero).contains("invalid limit"), "{}", stderr(&zero));
    let get = run(on(&["queues", "get", "api", "--json"])).await;
    let api: serde_json::Value =
        serde_json::from_str(stdout(&get).trim()).expect("one JSON object");
    assert_eq!(api["concurrency_override"]["global_limit"], 2);

    assert_success(
        &run(on(&["queues", "set-concurrency", "api", "--clear"])).await,
        "set-concurrency --clear",
    );
    let get = run(on(&["queues", "get", "api", "--json"])).await;
    let api: serde_json::Value =
        serde_json::from_str(stdout(&get).trim()).expect("one JSON object");
    assert_eq!(api["concurrency_override"], serde_json::Value::Null);
    assert_eq!(api["metadata"], serde_json::json!({}));
}
