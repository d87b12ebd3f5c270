//! `millrace jobs`: list with filters and pages, get, the bulk actions, and insert.

use std::time::{Duration, Instant};

use millrace::{Client, InsertManyParams, InsertOpts};
use millrace_test::TestDb;
use serde_json::json;

use super::{discard, fetch, ids, insert, json_lines, json_one, on, status, stderr, stdout};

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
