//! `millrace health`: exit status 0 when the database is reachable and migrated, 1 when not
//! (an unreachable server included), 2 on bad input; `--json` for probes (issue 14, item 6).

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use millrace_test::TestDb;

async fn health(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_millrace"))
            .arg("health")
            .args(args)
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("health ends within 30 s")
    .expect("run millrace");
    (output, started.elapsed())
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "not JSON ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[tokio::test]
async fn a_migrated_database_is_healthy_and_a_bare_schema_is_not() {
    let db = TestDb::new().await;
    let schema = db.schema().name().to_owned();
    let (output, _) = health(&["--database-url", db.url(), "--schema", &schema, "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report = json(&output);
    assert_eq!(report["healthy"], true);
    assert_eq!(report["database_reachable"], true);
    assert_eq!(report["pending_migrations"], serde_json::json!([]));

    // No client runs, so no River leader: unhealthy only when a leader is required.
    let (output, _) = health(&[
        "--database-url",
        db.url(),
        "--schema",
        &schema,
        "--require-leader",
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("leader:     none"));

    let (output, _) = health(&[
        "--database-url",
        db.url(),
        "--schema",
        "millrace_never_migrated",
        "--json",
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report = json(&output);
    assert_eq!(report["healthy"], false);
    assert!(
        report["pending_migrations"]
            .as_array()
            .is_some_and(|p| p.iter().any(|v| v == "main/1")),
        "{report}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_unhealthy_fast_and_bad_input_is_status_2() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let (output, took) = health(&["--database-url", &url, "--json"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let report = json(&output);
    assert_eq!(report["database_reachable"], false);
    let error = report["database_error"].as_str().unwrap();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");

    let (output, _) = health(&["--database-url", &url, "--sslmode", "sometimes"]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("sslmode"));
}
