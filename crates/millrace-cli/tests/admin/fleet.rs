//! `millrace sequences`, `leaders`, `clients`, `periodic` and `persistent`: what the fleet
//! is doing.

use std::time::Duration;

use jiff::Timestamp;
use millrace::InsertOpts;
use millrace_driver::{Driver, Executor, LeaderParams, LeaderTable};
use millrace_postgres::PgDriver;
use millrace_test::TestDb;
use serde_json::{Value, json};

use super::{discard, fetch, insert, json_lines, json_one, on, status, stdout};

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
