//! The operator commands (issue 17) end to end: the built `millrace` binary against a real
//! PostgreSQL schema and a real SQLite file, JSON output parsed back, exit statuses 0, 1 and 2,
//! bulk actions on 100k jobs, completions and the man page.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use millrace::{Client, InsertManyParams, InsertOpts};
use millrace_driver::{
    Driver, Executor, JobCompleteParams, JobGetAvailableParams, JobOutcome, LeaderParams,
    LeaderTable,
};
use millrace_postgres::PgDriver;
use millrace_test::TestDb;
use serde_json::{Value, json};

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
async fn jobs_list_filters_pages_and_prints_one_json_object_a_line() {
    let db = TestDb::new().await;
    let d = db.driver();
    let emails = insert(
        d.clone(),
        "email",
        &[
            json!({"to": "a", "customer": 7}),
            json!({"to": "b"}),
            json!({"to": "c"}),
        ],
        InsertOpts::new().queue("mail").tags(["welcome"]),
    )
    .await;
    insert(d.clone(), "report", &[json!({})], InsertOpts::new()).await;

    let all = on(&db, &["jobs", "list", "--json"]).await;
    status(&all, 0);
    let lines = json_lines(&all);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["kind"], "report", "newest first by default");
    assert_eq!(lines[1]["args"]["to"], "c");
    assert_eq!(lines[1]["state"], "available");
    assert_eq!(lines[1]["tags"], json!(["welcome"]));

    let filtered = on(
        &db,
        &[
            "jobs", "list", "--kind", "email", "--queue", "mail", "--order", "asc", "--json",
        ],
    )
    .await;
    status(&filtered, 0);
    assert_eq!(ids(&json_lines(&filtered)), emails);
    let contains = on(
        &db,
        &[
            "jobs",
            "list",
            "--args-contains",
            r#"{"customer":7}"#,
            "--tag",
            "welcome",
            "--json",
        ],
    )
    .await;
    assert_eq!(ids(&json_lines(&contains)), [emails[0]]);
    let range = on(
        &db,
        &[
            "jobs",
            "list",
            "--min-id",
            &emails[1].to_string(),
            "--max-id",
            &emails[2].to_string(),
            "--created-since",
            "1h",
            "--json",
        ],
    )
    .await;
    assert_eq!(ids(&json_lines(&range)), [emails[2], emails[1]]);

    // Keyset pages: the cursor goes to stderr, the next page starts after it.
    let page = on(
        &db,
        &["jobs", "list", "--kind", "email", "--limit", "2", "--json"],
    )
    .await;
    status(&page, 0);
    assert_eq!(ids(&json_lines(&page)), [emails[2], emails[1]]);
    let cursor = format!("next page: --after {}", emails[1]);
    assert!(stderr(&page).contains(&cursor), "{}", stderr(&page));
    let rest = on(
        &db,
        &[
            "jobs",
            "list",
            "--kind",
            "email",
            "--limit",
            "2",
            "--after",
            &emails[1].to_string(),
            "--json",
        ],
    )
    .await;
    assert_eq!(ids(&json_lines(&rest)), [emails[0]]);
    assert!(!stderr(&rest).contains("next page"));

    // A table for people: a header, one line a job, columns aligned.
    let table = on(&db, &["jobs", "list", "--kind", "email"]).await;
    status(&table, 0);
    let text = stdout(&table);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("ID"), "{text}");
    let state_col = header.find("STATE").unwrap();
    for line in lines {
        assert_eq!(&line[state_col..state_col + 9], "available", "{text}");
    }
    assert!(!text.contains('\u{1b}'), "no colour when not a terminal");

    let none = on(&db, &["jobs", "list", "--state", "discarded", "--json"]).await;
    status(&none, 1);
    assert!(stdout(&none).is_empty());
    assert!(stderr(&none).contains("no jobs matched"));
}

#[tokio::test]
async fn jobs_get_shows_errors_traces_output_and_a_timeline() {
    let db = TestDb::new().await;
    let d = db.driver();
    let id = insert(
        d.clone(),
        "email",
        &[json!({"to": "ada"})],
        InsertOpts::new().max_attempts(1),
    )
    .await[0];
    fetch(&d, "default", 1, "worker-1").await;
    discard(&d, id, "smtp refused: 550").await;

    let got = on(&db, &["jobs", "get", &id.to_string(), "--json"]).await;
    status(&got, 0);
    let job = json_one(&got);
    assert_eq!(job["state"], "discarded");
    assert_eq!(job["errors"][0]["error"], "smtp refused: 550");
    assert_eq!(job["errors"][0]["attempt"], 1);
    assert_eq!(job["output"], json!({"sent": 3}));
    assert_eq!(job["attempted_by"], json!(["worker-1"]));
    let events: Vec<&str> = job["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"created"));
    assert_eq!(events.last(), Some(&"finalized"));
    assert!(events.contains(&"attempt_failed"), "{events:?}");

    let text = on(&db, &["jobs", "get", &id.to_string()]).await;
    status(&text, 0);
    let text = stdout(&text);
    for expected in [
        "state:        discarded",
        "smtp refused: 550",
        "at worker.rs:12",
        "\"sent\": 3",
        "timeline:",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }

    let missing = on(&db, &["jobs", "get", "999999999"]).await;
    status(&missing, 1);
    assert_eq!(stderr(&missing).trim(), "job 999999999 not found");
}

#[tokio::test]
async fn jobs_actions_skip_running_jobs_report_what_they_skipped_and_ask_first() {
    let db = TestDb::new().await;
    let d = db.driver();
    let ids = insert(
        d.clone(),
        "sync",
        &[json!({"n": 1}), json!({"n": 2}), json!({"n": 3})],
        InsertOpts::new().max_attempts(1),
    )
    .await;
    // ids[0] running, ids[1] discarded, ids[2] available.
    fetch(&d, "default", 2, "worker-1").await;
    discard(&d, ids[1], "boom").await;
    let (running, discarded) = (ids[0].to_string(), ids[1].to_string());

    // More than one job: without a terminal the command refuses unless --yes.
    let refused = on(&db, &["jobs", "retry", &running, &discarded]).await;
    status(&refused, 2);
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));

    let retried = on(
        &db,
        &[
            "jobs", "retry", &running, &discarded, "424242", "--yes", "--json",
        ],
    )
    .await;
    status(&retried, 0);
    let report = json_one(&retried);
    assert_eq!(report["action"], "retry");
    assert_eq!(report["applied"], 1);
    assert_eq!(
        report["skipped"],
        json!([{"id": ids[0], "kind": "sync", "queue": "default", "state": "running"}])
    );
    assert_eq!(report["not_found"], json!([424242]));
    let job = json_one(&on(&db, &["jobs", "get", &discarded, "--json"]).await);
    assert_eq!(job["state"], "available");
    assert_eq!(
        job["max_attempts"], 2,
        "a job that used its attempts gets one more"
    );

    // One running job alone: a retry changes nothing, exit 1, and says why.
    let skipped = on(&db, &["jobs", "retry", &running]).await;
    status(&skipped, 1);
    assert!(
        stdout(&skipped).contains(&format!("skipped job {running}")),
        "{}",
        stdout(&skipped)
    );
    let delete_running = on(&db, &["jobs", "delete", &running, "--json"]).await;
    status(&delete_running, 1);
    assert_eq!(json_one(&delete_running)["applied"], 0);

    // Cancel by filter: waiting jobs at once, the running one is asked to stop.
    let cancelled = on(
        &db,
        &["jobs", "cancel", "--kind", "sync", "--yes", "--json"],
    )
    .await;
    status(&cancelled, 0);
    let report = json_one(&cancelled);
    assert_eq!(report["matched"], 3);
    assert_eq!(report["applied"], 3);
    assert_eq!(report["cancel_requested"], 1);
    let job = json_one(&on(&db, &["jobs", "get", &running, "--json"]).await);
    assert_eq!(
        job["state"], "running",
        "a running job is never overwritten"
    );
    assert!(job["metadata"]["cancel_attempted_at"].is_string());

    let deleted = on(&db, &["jobs", "delete", "--state", "cancelled", "--yes"]).await;
    status(&deleted, 0);
    assert_eq!(stdout(&deleted).trim(), "deleted 2 jobs");
    let nothing = on(&db, &["jobs", "delete", "--state", "cancelled", "--yes"]).await;
    status(&nothing, 1);
    assert!(stderr(&nothing).contains("no jobs matched"));
}

#[tokio::test]
async fn bulk_actions_on_100k_jobs_finish_in_seconds() {
    const JOBS: usize = 100_000;
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let args = json!({"batch": true});
    let inserted = client
        .insert_many_fast((0..JOBS).map(|_| InsertManyParams::from_json("bulk", &args)))
        .await
        .unwrap();
    assert_eq!(inserted as usize, JOBS);

    let mut timings = Vec::new();
    for (action, filter) in [
        ("retry", ["--kind", "bulk", "--state", "available"]),
        ("cancel", ["--kind", "bulk", "--state", "available"]),
        ("delete", ["--kind", "bulk", "--state", "cancelled"]),
    ] {
        let started = Instant::now();
        let mut args = vec!["jobs", action];
        args.extend(filter);
        args.extend(["--yes", "--json"]);
        let output = on(&db, &args).await;
        let took = started.elapsed();
        status(&output, 0);
        let report = json_one(&output);
        assert_eq!(report["matched"], JOBS, "{action}");
        assert_eq!(report["applied"], JOBS, "{action}");
        assert_eq!(report["skipped"], json!([]), "{action}");
        // Generous for a debug build on two shared cores; the figure is printed.
        assert!(took < Duration::from_secs(60), "{action} took {took:?}");
        timings.push(format!("{action} {took:?}"));
    }
    eprintln!("100k jobs by filter: {}", timings.join(", "));
    let left = on(&db, &["jobs", "list", "--kind", "bulk"]).await;
    status(&left, 1);
}

#[tokio::test]
async fn jobs_insert_runs_a_kind_by_hand_and_reports_unique_duplicates() {
    let db = TestDb::new().await;
    let args = [
        "jobs",
        "insert",
        "rebuild_index",
        "--args",
        r#"{"table":"users"}"#,
        "--queue",
        "maintenance",
        "--priority",
        "2",
        "--max-attempts",
        "3",
        "--tag",
        "manual",
        "--metadata",
        r#"{"by":"ops"}"#,
        "--unique-by-args",
        "--json",
    ];
    let first = on(&db, &args).await;
    status(&first, 0);
    let job = json_one(&first);
    assert_eq!(job["kind"], "rebuild_index");
    assert_eq!(job["queue"], "maintenance");
    assert_eq!(job["priority"], 2);
    assert_eq!(job["max_attempts"], 3);
    assert_eq!(job["args"], json!({"table": "users"}));
    assert_eq!(job["metadata"]["by"], "ops");
    assert_eq!(job["unique_skipped_as_duplicate"], false);
    let again = on(&db, &args).await;
    status(&again, 0);
    let dup = json_one(&again);
    assert_eq!(dup["unique_skipped_as_duplicate"], true);
    assert_eq!(dup["id"], job["id"]);

    let later = on(&db, &["jobs", "insert", "later", "--scheduled-at", "10m"]).await;
    status(&later, 0);
    assert!(stdout(&later).contains("scheduled"), "{}", stdout(&later));

    let bad_queue = on(&db, &["jobs", "insert", "x", "--queue", "Not A Queue"]).await;
    status(&bad_queue, 2);
    assert_eq!(
        stderr(&bad_queue).lines().count(),
        1,
        "{}",
        stderr(&bad_queue)
    );
}

#[tokio::test]
async fn queues_show_counts_lag_and_pause_state() {
    let db = TestDb::new().await;
    let d = db.driver();
    insert(
        d.clone(),
        "job_a",
        &[json!({}), json!({})],
        InsertOpts::new().queue("alpha"),
    )
    .await;
    insert(
        d.clone(),
        "job_b",
        &[json!({})],
        InsertOpts::new().queue("beta"),
    )
    .await;
    fetch(&d, "beta", 1, "worker-1").await;

    let listed = on(&db, &["queues", "list", "--json"]).await;
    status(&listed, 0);
    let queues = json_lines(&listed);
    assert_eq!(queues.len(), 2);
    assert_eq!(queues[0]["name"], "alpha");
    assert_eq!(queues[0]["counts"]["available"], 2);
    assert_eq!(
        queues[0]["counts"]["completed"], 0,
        "every state is present"
    );
    assert!(queues[0]["oldest_available_age_ms"].as_u64().is_some());
    assert_eq!(queues[1]["running"], 1);
    assert_eq!(queues[1]["oldest_available_at"], Value::Null);

    status(&on(&db, &["queues", "pause", "alpha"]).await, 0);
    let alpha = json_one(&on(&db, &["queues", "get", "alpha", "--json"]).await);
    assert_eq!(alpha["paused"], true);
    assert!(alpha["paused_at"].is_string());
    status(&on(&db, &["queues", "resume", "alpha"]).await, 0);
    let alpha = json_one(&on(&db, &["queues", "get", "alpha", "--json"]).await);
    assert_eq!(alpha["paused"], false);

    let table = on(&db, &["queues", "list"]).await;
    assert!(stdout(&table).starts_with("QUEUE"), "{}", stdout(&table));
    let missing = on(&db, &["queues", "get", "gamma"]).await;
    status(&missing, 1);
    let bad = on(&db, &["queues", "pause", "Bad Name"]).await;
    status(&bad, 2);
}

#[tokio::test]
async fn queues_set_concurrency_overrides_the_limit_and_get_shows_it_with_the_declarations() {
    let db = TestDb::new().await;
    let d: PgDriver = db.driver();
    d.executor()
        .queue_update_metadata("api", r#"{"owner":"growth"}"#)
        .await
        .unwrap();
    let set = on(
        &db,
        &[
            "queues",
            "set-concurrency",
            "api",
            "--global",
            "2",
            "--by-args",
            "customer_id,region",
        ],
    )
    .await;
    status(&set, 0);
    assert!(
        stdout(&set).contains("global 2, by args customer_id,region"),
        "{}",
        stdout(&set)
    );
    let api = json_one(&on(&db, &["queues", "get", "api", "--json"]).await);
    assert_eq!(api["metadata"]["owner"], "growth", "other keys are kept");
    assert_eq!(api["concurrency_override"]["global_limit"], 2);
    assert_eq!(
        api["concurrency_override"]["partition"]["by_args"],
        json!(["customer_id", "region"])
    );
    assert_eq!(api["declared_limits"], json!({}));

    // Two live clients declaring different limits for the queue.
    let mut e = d.executor();
    for (id, global) in [("host_a", 2), ("host_b", 5)] {
        e.client_heartbeat(id, Duration::from_secs(30))
            .await
            .unwrap();
        let declared = json!({"api": {
            "concurrency": {"global_limit": global, "local_limit": 0,
                            "partition": {"by_args": [], "by_kind": false}},
            "rate_limit": null,
        }});
        e.client_declare_queues(id, &declared.to_string())
            .await
            .unwrap();
    }
    let text = stdout(&on(&db, &["queues", "get", "api"]).await);
    assert!(
        text.contains("concurrency override: global 2, by args customer_id,region")
            && text.contains("clients DISAGREE")
            && text.contains("host_a: concurrency global 2")
            && text.contains("host_b: concurrency global 5"),
        "{text}"
    );

    // Refused before anything is written.
    let zero = on(&db, &["queues", "set-concurrency", "api", "--global", "0"]).await;
    status(&zero, 2);
    assert!(stderr(&zero).contains("invalid limit"), "{}", stderr(&zero));
    status(&on(&db, &["queues", "set-concurrency", "api"]).await, 2);
    status(
        &on(
            &db,
            &[
                "queues",
                "set-concurrency",
                "api",
                "--clear",
                "--global",
                "1",
            ],
        )
        .await,
        2,
    );

    status(
        &on(&db, &["queues", "set-concurrency", "api", "--clear"]).await,
        0,
    );
    let api = json_one(&on(&db, &["queues", "get", "api", "--json"]).await);
    assert_eq!(api["metadata"], json!({"owner": "growth"}));
    assert_eq!(api["concurrency_override"], Value::Null);
}

#[tokio::test]
async fn sequences_list_shows_heads_backlogs_and_blocks() {
    let db = TestDb::new().await;
    let d = db.driver();
    let blocked = insert(
        d.clone(),
        "ledger",
        &[json!({"n": 0}), json!({"n": 1}), json!({"n": 2})],
        InsertOpts::new().sequence_key("cli-seq").max_attempts(1),
    )
    .await;
    let moving = insert(
        d.clone(),
        "ledger",
        &[json!({"n": 0}), json!({"n": 1})],
        InsertOpts::new().sequence_key("other"),
    )
    .await;
    // Only each sequence's first job is available to fetch.
    let mut fetched = fetch(&d, "default", 10, "worker-1").await;
    fetched.sort_unstable();
    assert_eq!(fetched, [blocked[0], moving[0]]);
    discard(&d, blocked[0], "ledger closed").await;

    let listed = on(&db, &["sequences", "list", "--json"]).await;
    status(&listed, 0);
    let sequences = json_lines(&listed);
    assert_eq!(sequences.len(), 2, "{sequences:?}");
    assert_eq!(sequences[0]["key"], "cli-seq");
    assert_eq!(sequences[0]["head_id"], blocked[0]);
    assert_eq!(sequences[0]["head_state"], "discarded");
    assert_eq!(sequences[0]["pending"], 2);
    assert_eq!(sequences[0]["blocked"], true);
    assert_eq!(sequences[1]["key"], "other");
    assert_eq!(sequences[1]["head_state"], "running");
    assert_eq!(sequences[1]["pending"], 1);
    assert_eq!(sequences[1]["blocked"], false);

    let only_blocked = json_lines(&on(&db, &["sequences", "list", "--blocked", "--json"]).await);
    assert_eq!(only_blocked.len(), 1);
    assert_eq!(only_blocked[0]["key"], "cli-seq");

    // Deleting the failed job moves its sequence on at once.
    status(
        &on(&db, &["jobs", "delete", &blocked[0].to_string()]).await,
        0,
    );
    let moved = json_one(&on(&db, &["sequences", "list", "--key", "cli-seq", "--json"]).await);
    assert_eq!(moved["head_id"], blocked[1]);
    assert_eq!(moved["head_state"], "available");
    assert_eq!(moved["pending"], 1);
    assert_eq!(moved["blocked"], false);

    let table = on(&db, &["sequences", "list"]).await;
    assert!(stdout(&table).starts_with("KEY"), "{}", stdout(&table));
    status(
        &on(&db, &["sequences", "list", "--key", "nothing"]).await,
        1,
    );
    status(&on(&db, &["sequences", "list", "--limit", "0"]).await, 2);
}

#[tokio::test]
async fn fleet_commands_show_leaders_clients_schedules_and_persistent_instances() {
    let db = TestDb::new().await;
    let d: PgDriver = db.driver();
    for command in [
        &["clients"][..],
        &["periodic", "list"],
        &["persistent", "list"],
        &["leader"],
    ] {
        status(&on(&db, command).await, 1);
    }
    let mut e = d.executor();
    for table in [LeaderTable::River, LeaderTable::Millrace] {
        e.leader_attempt_elect(&LeaderParams {
            table,
            leader_id: "host_a".to_owned(),
            ttl: Duration::from_secs(30),
        })
        .await
        .unwrap()
        .expect("elected");
    }
    e.client_heartbeat("host_a", Duration::from_secs(30))
        .await
        .unwrap();
    let declared = json!({"api": {
        "concurrency": {"global_limit": 2, "local_limit": 0, "partition": {"by_args": [], "by_kind": false}},
        "rate_limit": null,
    }});
    assert!(
        e.client_declare_queues("host_a", &declared.to_string())
            .await
            .unwrap()
    );
    let next = Timestamp::now() - jiff::SignedDuration::from_secs(120);
    e.periodic_job_set_next("nightly_report", None, next)
        .await
        .unwrap();
    insert(
        d.clone(),
        "millrace_persistent:stream",
        &[json!({})],
        InsertOpts::new().queue("millrace_persistent"),
    )
    .await;
    fetch(&d, "millrace_persistent", 1, "host_b").await;

    let leader = on(&db, &["leader", "--json"]).await;
    status(&leader, 0);
    let leader = json_one(&leader);
    assert_eq!(leader["river"]["leader_id"], "host_a");
    assert_eq!(leader["river"]["expired"], false);
    assert_eq!(leader["millrace"]["leader_id"], "host_a");

    let clients = json_lines(&on(&db, &["clients", "--json"]).await);
    assert_eq!(ids_of(&clients, "id"), ["host_a", "host_b"]);
    assert_eq!(clients[0]["live"], true);
    assert_eq!(clients[0]["declared_limits"], declared);
    assert_eq!(clients[1]["live"], Value::Null, "no heartbeat row");
    assert_eq!(clients[1]["declared_limits"], Value::Null);
    assert_eq!(clients[1]["running_total"], 1);
    assert_eq!(
        clients[1]["running"][0]["kind"],
        "millrace_persistent:stream"
    );

    let periodic = json_one(&on(&db, &["periodic", "list", "--json"]).await);
    assert_eq!(periodic["id"], "nightly_report");
    assert!(
        periodic["overdue_ms"].as_u64().unwrap() >= 110_000,
        "{periodic}"
    );
    assert_eq!(periodic["last_run_at"], Value::Null);

    let persistent = json_one(&on(&db, &["persistent", "list", "--json"]).await);
    assert_eq!(persistent["name"], "stream");
    assert_eq!(persistent["state"], "running");
    assert_eq!(persistent["holder"], "host_b");
    assert!(persistent["lease_age_ms"].as_u64().is_some());

    let text = stdout(&on(&db, &["clients"]).await);
    assert!(text.contains("api: global 2"), "{text}");

    let text = stdout(&on(&db, &["leader"]).await);
    assert!(text.contains("river leader:     host_a"), "{text}");
}

fn ids_of<'a>(lines: &'a [Value], key: &str) -> Vec<&'a str> {
    lines.iter().map(|l| l[key].as_str().unwrap()).collect()
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
