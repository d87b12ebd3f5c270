//! The operator commands (issue 17) end to end: the built `millrace` binary against a real
//! PostgreSQL schema and a real SQLite file, JSON output parsed back, exit statuses 0, 1 and 2,
//! bulk actions on 100k jobs, completions and the man page.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use jiff::Timestamp;
use millrace::{Client, InsertManyParams, InsertOpts};
use millrace_driver::{Driver, Executor, JobCompleteParams, JobGetAvailableParams, JobOutcome};
use millrace_test::TestDb;
use serde_json::Value;

mod fleet;
mod jobs;
mod queues;

/// Runs `millrace` with `args`, without DATABASE_URL or a terminal, and waits for it.
async fn millrace(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_millrace"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .unwrap_or_else(|_| panic!("millrace {args:?} ends within 90 s"))
        .expect("run millrace")
}

/// `millrace` on the test's schema: `args` then the connection flags.
async fn on(db: &TestDb, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--database-url", db.url(), "--schema", db.schema().name()]);
    millrace(&all).await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn status(output: &Output, expected: i32) {
    assert_eq!(
        output.status.code(),
        Some(expected),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn json_one(output: &Output) -> Value {
    let mut lines = json_lines(output);
    assert_eq!(lines.len(), 1, "one object: {}", stdout(output));
    lines.remove(0)
}

fn ids(lines: &[Value]) -> Vec<i64> {
    lines.iter().map(|l| l["id"].as_i64().unwrap()).collect()
}

/// Inserts jobs of `kind` with the given args through the library.
async fn insert<D: Driver>(driver: D, kind: &str, args: &[Value], opts: InsertOpts) -> Vec<i64> {
    let client = Client::builder(driver).build().unwrap();
    client
        .insert_many(
            args.iter()
                .map(|a| InsertManyParams::from_json(kind, a).opts(opts.clone())),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.job.id.0)
        .collect()
}

/// Fetches up to `max` jobs of `queue` for `client`, so they are running.
async fn fetch<D: Driver>(driver: &D, queue: &str, max: i32, client: &str) -> Vec<i64> {
    driver
        .executor()
        .job_get_available(&JobGetAvailableParams {
            queue: queue.to_owned(),
            max,
            client_id: client.to_owned(),
            now: None,
            limit: None,
            rate: None,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().id.0)
        .collect()
}

/// Fails a running job's last attempt for good (max_attempts 1), recording `error`.
async fn discard<D: Driver>(driver: &D, id: i64, error: &str) {
    let row = driver
        .executor()
        .job_get_by_id(millrace::JobId(id))
        .await
        .unwrap()
        .unwrap();
    driver
        .executor()
        .job_complete_many(&[JobCompleteParams {
            id: row.id,
            attempt: row.attempt,
            outcome: JobOutcome::Errored {
                error: millrace::AttemptError {
                    at: row.attempted_at.unwrap(),
                    attempt: i32::from(row.attempt),
                    error: error.to_owned(),
                    trace: "at worker.rs:12\nat runtime.rs:40".to_owned(),
                },
                retry_at: Timestamp::now(),
                discard: true,
            },
            metadata_merge: Some(r#"{"output":{"sent":3}}"#.to_owned()),
        }])
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_input_gets_one_clear_line_and_status_2() {
    let db = TestDb::new().await;
    for (args, expected) in [
        (
            &["jobs", "list", "--state", "stuck"][..],
            "unknown state \"stuck\"",
        ),
        (&["jobs", "get", "12x"], "is not a job id"),
        (&["jobs", "retry", "-3"], "unexpected argument"),
        (&["jobs", "insert", "k", "--args", "{nope"], "not JSON"),
        (
            &["jobs", "insert", "k", "--args", "[1,2]"],
            "must be a JSON object",
        ),
        // PostgreSQL's jsonb cannot store NUL: an input error, not the database's (issue 20).
        (
            &["jobs", "insert", "email", "--args", r#"{"s":"a\u0000b"}"#],
            "must not hold a NUL character",
        ),
        (
            &["jobs", "list", "--created-since", "soonish"],
            "expected an RFC 3339 time",
        ),
        (&["jobs", "cancel"], "give job ids or at least one filter"),
    ] {
        let output = on(&db, args).await;
        status(&output, 2);
        let err = stderr(&output);
        assert!(
            err.lines().next().unwrap().contains(expected),
            "{args:?}: {err}"
        );
    }
    let no_schema = millrace(&[
        "jobs",
        "list",
        "--database-url",
        db.url(),
        "--schema",
        "millrace_never_migrated",
    ])
    .await;
    status(&no_schema, 2);
    let err = stderr(&no_schema);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("river_job is missing"), "{err}");
    let no_server = millrace(&[
        "queues",
        "list",
        "--database-url",
        "postgres://postgres@127.0.0.1:1/test",
        "--connect-timeout",
        "2",
    ])
    .await;
    status(&no_server, 2);
}

#[tokio::test]
async fn completions_and_the_man_page_come_from_the_same_definitions() {
    let bash = millrace(&["completions", "bash"]).await;
    status(&bash, 0);
    let script = stdout(&bash);
    for word in ["jobs", "queues", "retry", "--state", "persistent"] {
        assert!(script.contains(word), "{word} in the bash completion");
    }
    for shell in ["zsh", "fish"] {
        let out = millrace(&["completions", shell]).await;
        status(&out, 0);
        assert!(stdout(&out).contains("jobs"), "{shell}");
    }
    let man = millrace(&["man"]).await;
    status(&man, 0);
    let page = stdout(&man);
    assert!(page.contains(".TH millrace 1"), "{page}");
    assert!(page.contains("jobs"));

    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("millrace-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    status(&millrace(&["man", "--dir", dir.to_str().unwrap()]).await, 0);
    let list =
        std::fs::read_to_string(dir.join("millrace-jobs-list.1")).expect("a page per command");
    assert!(list.starts_with(".ie") || list.contains(".TH"), "{list}");
    assert!(list.contains("args\\-contains"), "{list}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("millrace-cli-admin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch folder");
    dir
}

/// `millrace` on a SQLite URL: `args` then `--database-url`.
async fn run(url: &str, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--database-url", url]);
    millrace(&all).await
}

#[tokio::test]
async fn every_command_works_on_a_sqlite_file() {
    let dir = scratch("sqlite");
    let url = format!("sqlite://{}", dir.join("jobs.db").display());
    // A file that was never migrated: one line, status 2.
    let never = run(&url, &["jobs", "list"]).await;
    status(&never, 2);
    status(&run(&url, &["migrate-up"]).await, 0);

    let inserted = run(
        &url,
        &[
            "jobs",
            "insert",
            "email",
            "--args",
            r#"{"to":"a"}"#,
            "--queue",
            "mail",
            "--json",
        ],
    )
    .await;
    status(&inserted, 0);
    let id = json_one(&inserted)["id"].as_i64().unwrap();
    status(
        &run(
            &url,
            &["jobs", "insert", "email", "--args", r#"{"to":"b"}"#],
        )
        .await,
        0,
    );

    let listed = run(
        &url,
        &[
            "jobs",
            "list",
            "--kind",
            "email",
            "--args-contains",
            r#"{"to":"a"}"#,
            "--json",
        ],
    )
    .await;
    status(&listed, 0);
    assert_eq!(ids(&json_lines(&listed)), [id]);
    let got = json_one(&run(&url, &["jobs", "get", &id.to_string(), "--json"]).await);
    assert_eq!(got["queue"], "mail");

    let cancelled = run(
        &url,
        &["jobs", "cancel", "--kind", "email", "--yes", "--json"],
    )
    .await;
    status(&cancelled, 0);
    assert_eq!(json_one(&cancelled)["applied"], 2);
    let retried = run(&url, &["jobs", "retry", &id.to_string(), "--json"]).await;
    status(&retried, 0);
    assert_eq!(json_one(&retried)["applied"], 1);
    let deleted = run(
        &url,
        &["jobs", "delete", "--state", "cancelled", "--yes", "--json"],
    )
    .await;
    assert_eq!(json_one(&deleted)["applied"], 1);

    let queues = json_lines(&run(&url, &["queues", "list", "--json"]).await);
    assert_eq!(queues.len(), 1);
    assert_eq!(queues[0]["name"], "mail");
    assert_eq!(queues[0]["counts"]["available"], 1);
    status(&run(&url, &["queues", "pause", "mail"]).await, 0);
    assert_eq!(
        json_one(&run(&url, &["queues", "get", "mail", "--json"]).await)["paused"],
        true
    );

    for command in [
        vec!["leader"],
        vec!["clients"],
        vec!["periodic", "list"],
        vec!["persistent", "list"],
    ] {
        status(&run(&url, &command).await, 1);
    }
    let leader = json_one(&run(&url, &["leader", "--json"]).await);
    assert_eq!(leader["river"], Value::Null);

    let pg_only = run(&url, &["jobs", "list", "--sslmode", "require"]).await;
    status(&pg_only, 2);
    let _ = std::fs::remove_dir_all(&dir);
}
