//! The fleet's verbs on SQLite: leader election and resignation, heartbeats and stuck jobs,
//! the cleaners, periodic next runs, and the notification outbox's cleaning.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::TestFile;
use jiff::{SignedDuration, Timestamp};
use millrace_driver::{
    Driver, Executor, JobCompleteParams, JobDeleteFinalizedParams, JobOutcome, LeaderParams,
    LeaderTable, Listener, Topic,
};
use millrace_types::JobId;

use super::{fetch, insert, job};

#[tokio::test]
async fn leader_election_follows_river() {
    let file = TestFile::new().await;
    let d = &file.driver;
    for table in [LeaderTable::River, LeaderTable::Millrace] {
        let params = |id: &str, ttl_ms: u64| LeaderParams {
            table,
            leader_id: id.to_owned(),
            ttl: Duration::from_millis(ttl_ms),
        };
        let won = d
            .executor()
            .leader_attempt_elect(&params("a", 300))
            .await
            .unwrap()
            .expect("the first client wins");
        assert_eq!(won.leader_id, "a");
        assert!(won.expires_at > won.elected_at);
        assert!(
            d.executor()
                .leader_attempt_elect(&params("b", 300))
                .await
                .unwrap()
                .is_none()
        );
        let kept = d
            .executor()
            .leader_attempt_reelect(&params("a", 5_000), won.elected_at)
            .await
            .unwrap()
            .expect("the leader extends its lease");
        assert!(kept.expires_at > won.expires_at);
        assert!(
            d.executor()
                .leader_attempt_reelect(&params("b", 5_000), won.elected_at)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            d.executor().leader_get(table).await.unwrap(),
            Some(kept.clone())
        );
        assert!(d.executor().leader_resign(table, "a").await.unwrap());
        assert!(!d.executor().leader_resign(table, "a").await.unwrap());
        // An expired lease goes to the next client.
        let short = d
            .executor()
            .leader_attempt_elect(&params("a", 1))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let next = d
            .executor()
            .leader_attempt_elect(&params("b", 5_000))
            .await
            .unwrap()
            .expect("an expired leader is replaced");
        assert_eq!(next.leader_id, "b");
        assert!(
            d.executor()
                .leader_attempt_reelect(&params("a", 5_000), short.elected_at)
                .await
                .unwrap()
                .is_none()
        );
        d.executor().leader_resign(table, "b").await.unwrap();
    }
}

#[tokio::test]
async fn resigning_river_leadership_is_announced() {
    let file = TestFile::new().await;
    let d = &file.driver;
    let mut listener = d.listener().await.unwrap();
    listener.listen(Topic::Leadership).await.unwrap();
    let params = LeaderParams {
        table: LeaderTable::River,
        leader_id: "a".to_owned(),
        ttl: Duration::from_secs(5),
    };
    d.executor().leader_attempt_elect(&params).await.unwrap();
    d.executor()
        .leader_resign(LeaderTable::River, "a")
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(n.topic, Topic::Leadership);
    let payload: serde_json::Value = serde_json::from_str(&n.payload).unwrap();
    assert_eq!(payload["action"], "resigned");
    assert_eq!(payload["leader_id"], "a");
}

#[tokio::test]
async fn heartbeats_expire_and_stuck_jobs_spare_live_clients() {
    let file = TestFile::new().await;
    let d = &file.driver;
    d.executor()
        .client_heartbeat("alive", Duration::from_secs(60))
        .await
        .unwrap();
    d.executor()
        .client_heartbeat("dying", Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        d.executor().client_get_expired(10).await.unwrap(),
        ["dying"]
    );

    insert(d, &[job("a"), job("b"), job("c")]).await;
    let alive = fetch(d, "alive", 1).await.remove(0);
    let dying = fetch(d, "dying", 1).await.remove(0);
    let stranger = fetch(d, "river_client", 1).await.remove(0);
    let of_dying = d
        .executor()
        .job_get_running_of_clients(&["dying".to_owned()], 10)
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    assert_eq!(
        of_dying.iter().map(|j| j.id).collect::<Vec<_>>(),
        [dying.id]
    );

    let horizon = Timestamp::now() + SignedDuration::from_secs(1);
    let stuck: HashSet<JobId> = d
        .executor()
        .job_get_stuck(horizon, 10)
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(
        stuck,
        HashSet::from([dying.id, stranger.id]),
        "live clients' jobs are spared"
    );
    assert!(!stuck.contains(&alive.id));

    assert_eq!(
        d.executor()
            .client_delete(&["dying".to_owned()])
            .await
            .unwrap(),
        1
    );
    assert!(
        d.executor()
            .client_get_expired(10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn finalized_jobs_and_idle_queues_are_cleaned() {
    let file = TestFile::new().await;
    let d = &file.driver;
    insert(d, &[job("a"), job("b")]).await;
    let rows = fetch(d, "c", 2).await;
    for row in &rows {
        d.executor()
            .job_complete_many(&[JobCompleteParams {
                id: row.id,
                attempt: row.attempt,
                outcome: JobOutcome::Completed,
                metadata_merge: None,
            }])
            .await
            .unwrap();
    }
    let keep_all = JobDeleteFinalizedParams {
        completed_before: None,
        cancelled_before: None,
        discarded_before: None,
        max: 100,
    };
    assert_eq!(
        d.executor().job_delete_finalized(&keep_all).await.unwrap(),
        0
    );
    let soon = Timestamp::now() + SignedDuration::from_secs(1);
    let one = JobDeleteFinalizedParams {
        completed_before: Some(soon),
        max: 1,
        ..keep_all.clone()
    };
    assert_eq!(d.executor().job_delete_finalized(&one).await.unwrap(), 1);
    assert_eq!(d.executor().job_delete_finalized(&one).await.unwrap(), 1);
    assert_eq!(d.executor().job_delete_finalized(&one).await.unwrap(), 0);

    d.executor().queue_create_or_touch("old").await.unwrap();
    let gone = d
        .executor()
        .queue_delete_expired(Timestamp::now() + SignedDuration::from_secs(1), 10)
        .await
        .unwrap();
    assert_eq!(gone, ["old"]);
    assert!(d.executor().queue_get("old").await.unwrap().is_none());

    for index in ["river_job_kind", "river_job_unique_idx"] {
        d.executor().index_reindex(index).await.unwrap();
    }
    assert!(d.executor().index_reindex("bad name;").await.is_err());
}

#[tokio::test]
async fn periodic_next_runs_are_compare_and_set() {
    let file = TestFile::new().await;
    let d = &file.driver;
    let first: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    let second: Timestamp = "2030-01-01T01:00:00.5Z".parse().unwrap();
    assert!(
        d.executor()
            .periodic_job_set_next("p", None, first)
            .await
            .unwrap()
    );
    assert!(
        !d.executor()
            .periodic_job_set_next("p", None, second)
            .await
            .unwrap(),
        "exists"
    );
    assert!(
        !d.executor()
            .periodic_job_set_next("p", Some(second), second)
            .await
            .unwrap(),
        "another client moved it"
    );
    assert!(
        d.executor()
            .periodic_job_set_next("p", Some(first), second)
            .await
            .unwrap()
    );
    let stored = d
        .executor()
        .periodic_job_get(&["p".to_owned(), "missing".to_owned()])
        .await
        .unwrap();
    assert_eq!(stored, [("p".to_owned(), second)]);
}

#[tokio::test]
async fn notifications_are_cleaned_after_five_minutes() {
    let file = TestFile::new().await;
    let d = &file.driver;
    sqlx::query(
        "INSERT INTO river_notification (created_at, topic, payload) \
         VALUES (strftime('%Y-%m-%d %H:%M:%f', 'now', '-10 minutes'), 'river_insert', '{}')",
    )
    .execute(d.pool())
    .await
    .unwrap();
    d.executor()
        .notify_many(&[(Topic::Insert, r#"{"queue":"a"}"#.to_owned())])
        .await
        .unwrap();
    let left: Vec<String> = sqlx::query_scalar("SELECT payload FROM river_notification")
        .fetch_all(d.pool())
        .await
        .unwrap();
    assert_eq!(left, [r#"{"queue":"a"}"#]);
}
