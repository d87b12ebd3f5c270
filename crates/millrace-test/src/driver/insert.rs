//! Conformance checks of the inserts: a batch returning its rows, unique keys and their
//! duplicates, and the fast (COPY-like) path.

use jiff::Timestamp;
use millrace_driver::{Driver, Executor, JobCancelParams, JobInsertParams, JobListParams};
use millrace_types::{JobState, UniqueStates};

use super::{DriverFixture, get, in_secs, insert, job};

/// Inserted rows come back in input order with every option stored.
pub async fn insert_many_returns_rows_in_order<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut second = job("second", "q2");
    second.priority = 3;
    second.max_attempts = 7;
    second.tags = vec!["abc".to_owned(), "de_f".to_owned()];
    second.metadata = r#"{"m":true}"#.to_owned();
    second.args = r#"{"text":"tab\there \\ \"quoted\" ünï"}"#.to_owned();
    let mut third = job("third", "q3");
    third.state = JobState::Scheduled;
    third.scheduled_at = Some(in_secs(3600));
    let rows = insert(&d, &[job("first", "q1"), second, third]).await;
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["first", "second", "third"]);
    assert_eq!(rows[0].state, JobState::Available);
    assert_eq!(rows[0].attempt, 0);
    assert_eq!(rows[1].priority, 3);
    assert_eq!(rows[1].max_attempts, 7);
    assert_eq!(rows[1].tags, ["abc", "de_f"]);
    assert_eq!(rows[1].metadata["m"], true);
    assert_eq!(rows[1].args["text"], "tab\there \\ \"quoted\" ünï");
    assert_eq!(rows[2].state, JobState::Scheduled);
    assert!(rows[2].scheduled_at > Timestamp::now());
    // The rows returned are the rows stored, to the microsecond.
    for row in &rows {
        assert_eq!(*row, get(&d, row.id).await, "job {}", row.kind);
    }
    // Numbers and keys the way serde_json and the database each write them.
    let mut numbers = job("numbers", "q1");
    numbers.args =
        r#"{"b":1.50,"a":1e3,"big":123456789012345678901234567890,"d":1,"d":2}"#.to_owned();
    let mut zero = job("zero", "q1");
    zero.args = r#"{"z":-0,"f":-0.0,"date":"2024-01-05","hex":"3e4f","e":"1e3"}"#.to_owned();
    zero.metadata = r#"{"m":2E2}"#.to_owned();
    let mut plain = job("plain", "q1");
    plain.args = r#"{"n":-12,"x":0.25,"s":"\u00e9\"e1"}"#.to_owned();
    let inserted = insert(&d, &[numbers, zero, plain]).await;
    for row in &inserted {
        assert_eq!(*row, get(&d, row.id).await, "job {}", row.kind);
    }
}

/// A unique job whose key is live returns the live row unchanged, flagged as a duplicate;
/// once the live row leaves the unique states, the key is free again.
pub async fn unique_insert_reports_duplicates<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut unique = job("unique", "default");
    unique.unique_key = Some(vec![7; 32]);
    unique.unique_states = Some(UniqueStates::DEFAULT);
    let first = d
        .executor()
        .job_insert_many(&[unique.clone()])
        .await
        .unwrap();
    assert!(!first[0].unique_skipped_as_duplicate);
    let mut other_kind = unique.clone();
    other_kind.kind = "other_kind".to_owned();
    let dup = d.executor().job_insert_many(&[other_kind]).await.unwrap();
    assert!(dup[0].unique_skipped_as_duplicate);
    assert_eq!(dup[0].job.id, first[0].job.id);
    assert_eq!(
        dup[0].job.kind, "unique",
        "the live row is returned unchanged"
    );
    assert_eq!(dup[0].job.unique_key.as_deref(), Some(&[7u8; 32][..]));
    assert_eq!(dup[0].job.unique_states, Some(UniqueStates::DEFAULT));

    // Cancelled is outside the default states: the key is free again.
    d.executor()
        .job_cancel(&JobCancelParams {
            id: first[0].job.id,
            now: None,
        })
        .await
        .unwrap();
    let again = d.executor().job_insert_many(&[unique]).await.unwrap();
    assert!(!again[0].unique_skipped_as_duplicate);
    assert_ne!(again[0].job.id, first[0].job.id);
}

/// The fast path inserts and counts; its rows read back like any other.
pub async fn insert_fast_counts_rows<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut jobs: Vec<JobInsertParams> = (0..50).map(|_| job("fast", "default")).collect();
    jobs[0].args = "{\"s\":\"line\\nbreak\\ttab \\\\ back\"}".to_owned();
    jobs[1].tags = vec!["t_1".to_owned(), "t-2".to_owned()];
    jobs[2].scheduled_at = Some(in_secs(60));
    jobs[2].state = JobState::Scheduled;
    jobs[3].metadata = "{\"source\":\"fast\"}".to_owned();
    assert_eq!(d.executor().job_insert_fast(&jobs).await.unwrap(), 50);
    // Without tags or metadata in the batch, those columns take their defaults.
    let plain: Vec<JobInsertParams> = (0..3).map(|_| job("plain", "defaults")).collect();
    assert_eq!(d.executor().job_insert_fast(&plain).await.unwrap(), 3);
    let rows = d
        .executor()
        .job_list(&JobListParams {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    assert_eq!(rows.len(), 53);
    assert_eq!(rows[0].args["s"], "line\nbreak\ttab \\ back");
    assert_eq!(rows[1].tags, ["t_1", "t-2"]);
    assert_eq!(rows[2].state, JobState::Scheduled);
    assert!(rows[2].scheduled_at > Timestamp::now());
    assert_eq!(rows[3].metadata["source"], "fast");
    assert_eq!(rows[4].metadata, serde_json::json!({}));
    for row in &rows[50..] {
        assert_eq!(row.kind, "plain");
        assert!(row.tags.is_empty());
        assert_eq!(row.metadata, serde_json::json!({}));
        assert_eq!(row.state, JobState::Available);
    }
}
