//! `millrace bench persistent` end to end: a small fleet of real `millrace demo` processes,
//! killed and stopped, never running the persistent instance twice.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use millrace_test::TestDb;

/// The lease the benchmark runs its demos with, in seconds.
const LEASE_SECS: u64 = 2;

#[tokio::test]
async fn bench_persistent_sees_one_instance_and_fast_failovers() {
    let db = TestDb::new().await;
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_millrace"))
        .args([
            "bench",
            "persistent",
            "--database-url",
            db.url(),
            "--schema",
            db.schema().name(),
            "--trials",
            "2",
            "--lease",
            &LEASE_SECS.to_string(),
            "--clients",
            "2",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the benchmark ends within two minutes")
        .expect("run millrace bench persistent");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the benchmark failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    let fields: HashMap<&str, &str> = last
        .split_whitespace()
        .filter_map(|field| field.split_once('='))
        .collect();
    let number = |name: &str| -> u64 {
        fields
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the last line: {last}"))
    };
    assert_eq!(number("two_instances"), 0, "{stdout}");
    assert_eq!(number("trials"), 2);
    assert_eq!(number("lease_s"), LEASE_SECS);
    // Generous: three times the promised bound, the lease plus two seconds.
    let bound_ms = 3 * (LEASE_SECS + 2) * 1000;
    for name in ["kill_failover_p50_ms", "kill_failover_max_ms"] {
        assert!(number(name) < bound_ms, "{name} too high:\n{stdout}");
    }
    // A holder that dies can only be replaced once its lease has run out; renewals come four
    // times per lease, so no sooner than three quarters of it after the kill.
    assert!(
        number("kill_failover_p50_ms") >= LEASE_SECS * 1000 * 3 / 4 - 100,
        "taken over before the lease ran out:\n{stdout}"
    );
    assert!(number("stop_handover_max_ms") < 3 * 2000, "{stdout}");
}
