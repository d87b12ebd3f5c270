//! Rescue and cleaning: a dead client's jobs, stuck jobs by River's rule, and the cleaners'
//! retention.

use std::time::Duration;

use millrace::{EventKind, InsertOpts, JobId, JobState};

use crate::fixture::{TestDb, sql_attempted_by, sql_now, sql_now_plus};

use super::{Tick, builder, eventually, exec, scalar, wait_for_outcome};

#[tokio::test]
async fn dead_clients_jobs_are_rescued_when_its_lease_runs_out() {
    let db = TestDb::new().await;
    let client = builder(&db, "survivor").build().unwrap();
    let id = client.insert(Tick {}, None).await.unwrap().job.id;
    // A Millrace client took the job, then died: its lease ran out a moment ago.
    exec(&db, &format!(
        "UPDATE {{job}} SET state = 'running', attempt = 1, attempted_at = {}, attempted_by = {} WHERE id = {id}",
        sql_now(),
        sql_attempted_by("ghost")
    )).await;
    exec(
        &db,
        &format!(
            "INSERT INTO {{client}} (id, lease_expires_at) VALUES ('ghost', {})",
            sql_now_plus(-1)
        ),
    )
    .await;
    let mut events = client.subscribe();
    let started = std::time::Instant::now();
    client.start().await.unwrap();
    let (kind, job) = wait_for_outcome(&mut events, id).await;
    assert_eq!(kind, EventKind::JobCompleted);
    assert!(
        // Promised within the lease plus 2 s (4 s here); three times that under load.
        started.elapsed() < Duration::from_secs(12),
        "rescue took {:?}",
        started.elapsed()
    );
    assert_eq!(job.attempt, 2);
    let row = client.job_get(id).await.unwrap();
    assert!(
        row.errors[0].error.contains("ghost stopped heartbeating"),
        "{:?}",
        row.errors
    );
    assert_eq!(row.metadata["river:rescue_count"], 1);
    // The rescuer deletes the row after its pass, which may end after the rescued job's
    // outcome is stored: wait for it, within the pass's bound.
    millrace_test::eventually(
        "a rescued client's row is removed",
        Duration::from_secs(10),
        || async {
            scalar::<i64>(&db, "SELECT count(*) FROM {client} WHERE id = 'ghost'").await == 0
        },
    )
    .await;
    client.stop().await.unwrap();
}

// Issue 15: the dead-client rescue left persistent instances out in Rust, after its statement's
// limit of 1,000, so a dead client holding 1,000 instances had the same batch fetched for ever
// and its other jobs were never rescued.
#[tokio::test]
async fn dead_clients_jobs_are_rescued_past_a_full_batch_of_persistent_instances() {
    let db = TestDb::new().await;
    let client = builder(&db, "survivor").build().unwrap();
    let instances = client
        .insert_many((0..1_000).map(|_| millrace::InsertManyParams::new(Tick {})))
        .await
        .unwrap();
    let last_instance = instances.last().unwrap().job.id;
    // The ghost held 1,000 persistent instances (the first rows by id), then this job.
    exec(&db, &format!(
        "UPDATE {{job}} SET kind = 'millrace_persistent:ghostly', queue = 'millrace_persistent', state = 'running', attempt = 1, attempted_at = {}, attempted_by = {} WHERE id <= {last_instance}",
        sql_now(),
        sql_attempted_by("ghost")
    )).await;
    let id = client.insert(Tick {}, None).await.unwrap().job.id;
    exec(&db, &format!(
        "UPDATE {{job}} SET state = 'running', attempt = 1, attempted_at = {}, attempted_by = {} WHERE id = {id}",
        sql_now(),
        sql_attempted_by("ghost")
    )).await;
    exec(
        &db,
        &format!(
            "INSERT INTO {{client}} (id, lease_expires_at) VALUES ('ghost', {})",
            sql_now_plus(-1)
        ),
    )
    .await;
    let mut events = client.subscribe();
    client.start().await.unwrap();
    let (kind, job) = wait_for_outcome(&mut events, id).await;
    assert_eq!(kind, EventKind::JobCompleted);
    assert_eq!(job.attempt, 2);
    let held: i64 = scalar(
        &db,
        "SELECT count(*) FROM {job} WHERE kind = 'millrace_persistent:ghostly' AND state = 'running'",
    )
    .await;
    assert_eq!(
        held, 1_000,
        "persistent instances move by their own lease only"
    );
    client.stop().await.unwrap();
}

#[tokio::test]
async fn stuck_jobs_of_unknown_clients_follow_rivers_rule() {
    let db = TestDb::new().await;
    let client = builder(&db, "rescuer").build().unwrap();
    let stuck = client.insert(Tick {}, None).await.unwrap().job.id;
    let recent = client.insert(Tick {}, None).await.unwrap().job.id;
    let live = client.insert(Tick {}, None).await.unwrap().job.id;
    // A River client (no heartbeat row) took `stuck` two hours ago and `recent` just now; a
    // live Millrace client took `live` two hours ago and still heartbeats.
    let running = |at: String, by: &str, id: JobId| {
        format!(
            "UPDATE {{job}} SET state = 'running', attempt = 1, attempted_at = {at}, attempted_by = {} WHERE id = {id}",
            sql_attempted_by(by)
        )
    };
    exec(&db, &running(sql_now_plus(-2 * 3600), "river-go", stuck)).await;
    exec(&db, &running(sql_now(), "river-go", recent)).await;
    exec(&db, &running(sql_now_plus(-2 * 3600), "alive", live)).await;
    exec(
        &db,
        &format!(
            "INSERT INTO {{client}} (id, lease_expires_at) VALUES ('alive', {})",
            sql_now_plus(3600)
        ),
    )
    .await;
    let mut events = client.subscribe();
    client.start().await.unwrap();
    let (kind, _) = wait_for_outcome(&mut events, stuck).await;
    assert_eq!(kind, EventKind::JobCompleted);
    let row = client.job_get(stuck).await.unwrap();
    assert_eq!(row.errors[0].error, "Stuck job rescued by JobRescuer");
    assert_eq!(row.metadata["river:rescue_count"], 1);
    assert_eq!(
        client.job_get(recent).await.unwrap().state,
        JobState::Running
    );
    assert_eq!(client.job_get(live).await.unwrap().state, JobState::Running);
    client.stop().await.unwrap();
}

#[tokio::test]
async fn cleaners_delete_jobs_and_queues_past_retention() {
    let db = TestDb::new().await;
    let client = builder(&db, "cleaner").build().unwrap();
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            client
                .insert(Tick {}, Some(InsertOpts::new().queue("elsewhere")))
                .await
                .unwrap()
                .job
                .id,
        );
    }
    const HOUR: i64 = 3600;
    let fin = |state: &str, age_secs: i64, id: JobId| {
        format!(
            "UPDATE {{job}} SET state = '{state}', finalized_at = {} WHERE id = {id}",
            sql_now_plus(-age_secs)
        )
    };
    exec(&db, &fin("completed", 25 * HOUR, ids[0])).await;
    exec(&db, &fin("cancelled", 25 * HOUR, ids[1])).await;
    exec(&db, &fin("discarded", 48 * HOUR, ids[2])).await;
    exec(&db, &fin("completed", HOUR, ids[3])).await;
    exec(
        &db,
        &format!(
            "INSERT INTO {{queue}} (name, updated_at) VALUES ('stale', {})",
            sql_now_plus(-25 * HOUR)
        ),
    )
    .await;
    client.start().await.unwrap();
    eventually("old completed and cancelled jobs are deleted", || async {
        matches!(
            client.job_get(ids[0]).await,
            Err(millrace::Error::JobNotFound(_))
        ) && matches!(
            client.job_get(ids[1]).await,
            Err(millrace::Error::JobNotFound(_))
        )
    })
    .await;
    assert!(
        client.job_get(ids[2]).await.is_ok(),
        "discarded jobs are kept 7 days"
    );
    assert!(client.job_get(ids[3]).await.is_ok(), "recent jobs are kept");
    // The queue cleaner is a service of its own: its first pass may come after the job
    // cleaner's.
    let stale_count = format!(
        "SELECT count(*) FROM {} WHERE name = 'stale'",
        db.schema().qualify("river_queue")
    );
    eventually("the stale queue is deleted", || async {
        scalar::<i64>(&db, &stale_count).await == 0
    })
    .await;
    let live: i64 = scalar(
        &db,
        &format!(
            "SELECT count(*) FROM {} WHERE name = 'default'",
            db.schema().qualify("river_queue")
        ),
    )
    .await;
    assert_eq!(live, 1, "a worked queue is kept");
    client.stop().await.unwrap();
}
