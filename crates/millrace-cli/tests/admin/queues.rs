//! `millrace queues`: counts, lag and pause state, and the concurrency override.

use std::time::Duration;

use millrace::InsertOpts;
use millrace_driver::{Driver, Executor};
use millrace_postgres::PgDriver;
use millrace_test::TestDb;
use serde_json::{Value, json};

use super::{fetch, insert, json_lines, json_one, on, status, stderr, stdout};

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
