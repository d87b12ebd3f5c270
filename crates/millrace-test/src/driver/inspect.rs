//! Conformance checks of the inspection and bulk-action verbs (the operator CLI's, issue 17).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use millrace_driver::{
    Driver, Executor, JobBatchAction, JobBatchParams, JobBatchRow, JobCancelParams, JobListParams,
};
use millrace_types::{JobId, JobState};

use super::{CLIENT, DriverFixture, fetch, get, insert, job};

async fn act<D: Driver>(d: &D, action: JobBatchAction, filter: JobListParams) -> Vec<JobBatchRow> {
    d.executor()
        .job_act_many(&JobBatchParams {
            action,
            filter,
            now: None,
        })
        .await
        .expect("act many")
}

fn kind(kind: &str, limit: i64) -> JobListParams {
    JobListParams {
        kinds: vec![kind.to_owned()],
        limit,
        ..Default::default()
    }
}

/// Counts by queue and state cover every job; the oldest available job of each queue is
/// found across priorities.
pub async fn counts_and_lag_follow_the_jobs<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let long_ago = Timestamp::now() - SignedDuration::from_secs(3600);
    let mut old_low_priority = job("k", "b");
    old_low_priority.priority = 3;
    old_low_priority.scheduled_at = Some(long_ago);
    let mut later = job("k", "b");
    later.scheduled_at = Some(long_ago + SignedDuration::from_secs(60));
    let mut scheduled = job("k", "a");
    scheduled.state = JobState::Scheduled;
    scheduled.scheduled_at = Some(Timestamp::now() + SignedDuration::from_secs(3600));
    insert(
        &d,
        &[
            job("k", "a"),
            job("k", "a"),
            job("k", "a"),
            scheduled,
            old_low_priority,
            later,
        ],
    )
    .await;
    fetch(&d, "a", 1).await;

    let running_only = d
        .executor()
        .job_count_by_queue_and_state(&[JobState::Running])
        .await
        .unwrap();
    assert_eq!(running_only.len(), 1);
    assert_eq!(
        (running_only[0].queue.as_str(), running_only[0].count),
        ("a", 1)
    );
    let counts = d
        .executor()
        .job_count_by_queue_and_state(&[])
        .await
        .unwrap();
    let pairs: Vec<(&str, JobState, i64)> = counts
        .iter()
        .map(|c| (c.queue.as_str(), c.state, c.count))
        .collect();
    assert_eq!(
        pairs,
        [
            ("a", JobState::Available, 2),
            ("a", JobState::Running, 1),
            ("a", JobState::Scheduled, 1),
            ("b", JobState::Available, 2),
        ]
    );

    let oldest = d.executor().queue_oldest_available().await.unwrap();
    assert_eq!(oldest.queues.len(), 2, "{oldest:?}");
    assert_eq!(oldest.queues[0].0, "a");
    assert!(oldest.queues[0].1 <= oldest.now);
    assert_eq!(oldest.queues[1].0, "b");
    let off = (oldest.queues[1].1 - long_ago).get_seconds().abs();
    assert!(
        off <= 1,
        "the older job of a lower priority is the oldest: {oldest:?}"
    );
    let lag = oldest.now.duration_since(oldest.queues[1].1);
    assert!(lag >= SignedDuration::from_secs(3590), "{lag:?}");
}

/// The finalized-jobs histogram counts each final state per bucket from `since` on, and
/// leaves out jobs finalized before it and jobs not finalized (issue 18's overview chart).
pub async fn finalized_histogram_buckets_by_state<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let rows = insert(&d, &(0..4).map(|_| job("h", "q")).collect::<Vec<_>>()).await;
    let now = Timestamp::now();
    // Two cancelled 90 s ago, one 30 s ago, one long before the window; one job stays live.
    for (row, ago) in rows.iter().zip([90, 90, 30, 7200]) {
        d.executor()
            .job_cancel(&JobCancelParams {
                id: row.id,
                now: Some(now - SignedDuration::from_secs(ago)),
            })
            .await
            .unwrap()
            .expect("cancelled");
    }
    insert(&d, &[job("h", "q")]).await;
    let since = now - SignedDuration::from_secs(120);
    let buckets = d
        .executor()
        .job_finalized_histogram(since, 60)
        .await
        .unwrap();
    let got: Vec<(i64, JobState, i64)> = buckets
        .iter()
        .map(|b| (b.bucket, b.state, b.count))
        .collect();
    assert_eq!(
        got,
        [(0, JobState::Cancelled, 2), (1, JobState::Cancelled, 1)]
    );
    let later = d
        .executor()
        .job_finalized_histogram(now + SignedDuration::from_secs(60), 60)
        .await
        .unwrap();
    assert!(later.is_empty(), "{later:?}");
}

/// Bulk retry, cancel and delete treat each job as the single-job verbs do, report what they
/// skipped, page by id, and never overwrite a running job.
pub async fn act_many_follows_the_single_job_verbs<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let rows = insert(&d, &(0..4).map(|_| job("bulk", "q")).collect::<Vec<_>>()).await;
    insert(&d, &[job("other", "q")]).await;
    let running = fetch(&d, "q", 1).await.remove(0);
    assert_eq!(running.id, rows[0].id);
    d.executor()
        .job_cancel(&JobCancelParams {
            id: rows[1].id,
            now: None,
        })
        .await
        .unwrap();

    assert_eq!(d.executor().job_count(&kind("bulk", 100)).await.unwrap(), 4);
    assert_eq!(
        d.executor().job_count(&kind("bulk", 2)).await.unwrap(),
        2,
        "a count stops at the limit"
    );

    // Retry in pages of two: the running job is skipped, the rest become available.
    let first = act(&d, JobBatchAction::Retry, kind("bulk", 2)).await;
    assert_eq!(first.len(), 2);
    assert_eq!((first[0].id, first[0].applied), (running.id, false));
    assert_eq!(first[0].state, JobState::Running);
    assert_eq!(
        (first[1].state_before, first[1].state, first[1].applied),
        (JobState::Cancelled, JobState::Available, true)
    );
    let rest = act(
        &d,
        JobBatchAction::Retry,
        JobListParams {
            after_id: Some(first[1].id),
            ..kind("bulk", 2)
        },
    )
    .await;
    assert_eq!(
        rest.iter().map(|r| (r.id, r.applied)).collect::<Vec<_>>(),
        [(rows[2].id, true), (rows[3].id, true)]
    );
    assert_eq!(get(&d, rows[1].id).await.finalized_at, None);

    // Cancel: waiting jobs at once, the running one by request; then nothing is left but the
    // running job to ask again.
    let cancelled = act(&d, JobBatchAction::Cancel, kind("bulk", 100)).await;
    assert!(cancelled.iter().all(|r| r.applied), "{cancelled:?}");
    assert_eq!(cancelled[0].state, JobState::Running);
    assert!(
        cancelled[1..]
            .iter()
            .all(|r| r.state == JobState::Cancelled)
    );
    let asked = get(&d, running.id).await;
    assert_eq!(asked.state, JobState::Running);
    assert!(asked.metadata.get("cancel_attempted_at").is_some());
    let again = act(&d, JobBatchAction::Cancel, kind("bulk", 100)).await;
    assert_eq!(
        again.iter().filter(|r| !r.applied).count(),
        3,
        "finalized jobs are skipped"
    );

    // Delete newest first: everything but the running job.
    let deleted = act(
        &d,
        JobBatchAction::Delete,
        JobListParams {
            descending: true,
            ..kind("bulk", 100)
        },
    )
    .await;
    assert_eq!(deleted.first().map(|r| r.id), Some(rows[3].id));
    assert_eq!(
        deleted.iter().filter(|r| r.applied).count(),
        3,
        "{deleted:?}"
    );
    let kept = deleted.iter().find(|r| !r.applied).unwrap();
    assert_eq!((kept.id, kept.state), (running.id, JobState::Running));
    assert_eq!(get(&d, running.id).await.state, JobState::Running);
    assert_eq!(
        d.executor().job_count(&kind("other", 100)).await.unwrap(),
        1
    );
}

/// The list filters the CLI adds: id range, created and finalized since, args containment.
pub async fn list_filters_by_id_range_times_and_args<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut old = job("f", "default");
    old.created_at = Some(Timestamp::now() - SignedDuration::from_secs(7200));
    old.args = r#"{"customer":{"id":7},"n":1}"#.to_owned();
    let rows = insert(&d, &[old, job("f", "default"), job("f", "default")]).await;
    d.executor()
        .job_cancel(&JobCancelParams {
            id: rows[2].id,
            now: None,
        })
        .await
        .unwrap();
    let ids = |params: JobListParams| {
        let d = d.clone();
        async move {
            d.executor()
                .job_list(&JobListParams {
                    limit: 100,
                    ..params
                })
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.unwrap().id)
                .collect::<Vec<JobId>>()
        }
    };
    let hour_ago = Timestamp::now() - SignedDuration::from_secs(3600);
    assert_eq!(
        ids(JobListParams {
            id_min: Some(rows[1].id),
            id_max: Some(rows[1].id),
            ..Default::default()
        })
        .await,
        [rows[1].id]
    );
    assert_eq!(
        ids(JobListParams {
            created_since: Some(hour_ago),
            ..Default::default()
        })
        .await,
        [rows[1].id, rows[2].id]
    );
    assert_eq!(
        ids(JobListParams {
            finalized_since: Some(hour_ago),
            ..Default::default()
        })
        .await,
        [rows[2].id]
    );
    assert_eq!(
        ids(JobListParams {
            args_contains: Some(r#"{"customer":{"id":7}}"#.to_owned()),
            ..Default::default()
        })
        .await,
        [rows[0].id]
    );
}

/// A connection of the driver's own ([`Driver::connect`], which the client's heartbeat renews
/// on) reaches the pool's database: a heartbeat renewed on it reads back through the pool.
/// Drivers without one (the default) have nothing to check.
pub async fn own_connection_reaches_the_pools_database<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let Some(mut conn) = d.connect().await.unwrap() else {
        return;
    };
    d.conn_executor(&mut conn)
        .client_heartbeat("own-connection", Duration::from_secs(30))
        .await
        .unwrap();
    <F::Driver as Driver>::disconnect(conn).await;
    let clients = d.executor().client_list().await.unwrap();
    assert_eq!(
        clients.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["own-connection"]
    );
}

/// Millrace's own tables read back: clients, periodic schedules with their last job,
/// persistent instances, running jobs by client, and the database's clock.
pub async fn fleet_tables_read_back<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut e = d.executor();
    e.client_heartbeat("client-b", Duration::from_secs(30))
        .await
        .unwrap();
    e.client_heartbeat("client-a", Duration::from_secs(30))
        .await
        .unwrap();
    let clients = e.client_list().await.unwrap();
    assert_eq!(
        clients.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["client-a", "client-b"]
    );
    assert!(clients[0].lease_expires_at > clients[0].heartbeat_at);

    let next = Timestamp::now() + SignedDuration::from_secs(600);
    assert!(
        e.periodic_job_set_next("nightly", None, next)
            .await
            .unwrap()
    );
    assert!(e.periodic_job_set_next("hourly", None, next).await.unwrap());
    let mut run = job("report", "default");
    run.metadata = r#"{"periodic":true,"river:periodic_job_id":"nightly"}"#.to_owned();
    let inserted = insert(&d, &[run]).await.remove(0);
    let schedules = d.executor().periodic_job_list().await.unwrap();
    assert_eq!(
        schedules.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["hourly", "nightly"]
    );
    assert_eq!(schedules[0].last_job, None);
    let (last_id, _, last_state) = schedules[1].last_job.unwrap();
    assert_eq!((last_id, last_state), (inserted.id, JobState::Available));
    assert!((schedules[1].next_run_at - next).get_seconds().abs() <= 1);

    insert(
        &d,
        &[
            job("millrace_persistent:poller", "millrace_persistent"),
            job("not_persistent", "millrace_persistent"),
        ],
    )
    .await;
    let held = fetch(&d, "millrace_persistent", 1).await.remove(0);
    let instances = d
        .executor()
        .persistent_list("millrace_persistent:")
        .await
        .unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].as_ref().unwrap().id, held.id);

    let running = d.executor().job_count_running_by_client().await.unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(
        (running[0].client_id.as_str(), running[0].count),
        (CLIENT, 1)
    );
    assert_eq!(running[0].kind, "millrace_persistent:poller");

    let now = d.executor().now().await.unwrap();
    assert!((now - Timestamp::now()).get_seconds().abs() <= 5);
}
