//! Conformance checks of the maintenance verbs: the scheduler, a producer's orphan sweep and
//! the rescuer's removal of dead clients.

use std::time::Duration;

use millrace_driver::{
    Driver, Executor, JobGetAvailableParams, JobOutcome, JobReturnOrphansParams, JobScheduleParams,
};
use millrace_types::{JobState, UniqueStates};

use super::{CLIENT, DriverFixture, complete, fetch, get, in_secs, insert, job};

/// The scheduler makes due retryable and scheduled jobs available and leaves later ones.
pub async fn schedule_moves_due_jobs<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut due = job("due", "default");
    due.state = JobState::Scheduled;
    due.scheduled_at = Some(in_secs(-1));
    let mut later = job("later", "default");
    later.state = JobState::Scheduled;
    later.scheduled_at = Some(in_secs(3600));
    let rows = insert(&d, &[due, later]).await;
    let moved = d
        .executor()
        .job_schedule(&JobScheduleParams {
            horizon: None,
            max: 100,
        })
        .await
        .unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].id, rows[0].id);
    assert_eq!(moved[0].state, JobState::Available);
    assert_eq!(moved[0].queue, "default");
    assert_eq!(get(&d, rows[1].id).await.state, JobState::Scheduled);
}

/// A scheduled job whose unique key another live job took is discarded, as River's
/// scheduler does.
pub async fn schedule_discards_unique_conflicts<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    // Scheduled is outside this job's unique states, so a second job took the key.
    let states =
        UniqueStates::from_states([JobState::Available, JobState::Pending, JobState::Running]);
    let mut waiting = job("u", "default");
    waiting.state = JobState::Scheduled;
    waiting.scheduled_at = Some(in_secs(-1));
    waiting.unique_key = Some(vec![9; 32]);
    waiting.unique_states = Some(states);
    let mut live = waiting.clone();
    live.state = JobState::Available;
    live.scheduled_at = None;
    let rows = insert(&d, &[waiting]).await;
    insert(&d, &[live]).await;
    let moved = d
        .executor()
        .job_schedule(&JobScheduleParams {
            horizon: None,
            max: 100,
        })
        .await
        .unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].state, JobState::Discarded);
    let row = get(&d, rows[0].id).await;
    assert_eq!(row.state, JobState::Discarded);
    assert_eq!(row.metadata["unique_key_conflict"], "scheduler_discarded");
}

/// Orphans (running under the client, not held) go back to available; held jobs stay.
pub async fn return_orphans_spares_held_jobs<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    insert(&d, &[job("a", "default"), job("b", "default")]).await;
    let rows = fetch(&d, "default", 2).await;
    let returned = d
        .executor()
        .job_return_orphans(&JobReturnOrphansParams {
            client_id: CLIENT.to_owned(),
            queue: "default".to_owned(),
            held: vec![rows[0].id],
        })
        .await
        .unwrap();
    assert_eq!(returned, 1);
    assert_eq!(get(&d, rows[0].id).await.state, JobState::Running);
    let orphan = get(&d, rows[1].id).await;
    assert_eq!(orphan.state, JobState::Available);
    assert_eq!(orphan.attempt, 0);
    let other_client = d
        .executor()
        .job_return_orphans(&JobReturnOrphansParams {
            client_id: "someone-else".to_owned(),
            queue: "default".to_owned(),
            held: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(other_client, 0, "another client's jobs are never touched");
}

/// A dead client's heartbeat row goes only once it is still expired and holds no running job
/// (persistent instances aside): a client that renewed, or took a job after the rescuer read
/// its rows, keeps its lease.
pub async fn dead_clients_rows_go_only_once_their_jobs_are_rescued<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut e = d.executor();
    for id in ["dying", "back"] {
        e.client_heartbeat(id, Duration::ZERO).await.unwrap();
    }
    // Both leases have run out once the database's clock has moved past them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let expired = e.client_get_expired(10).await.unwrap();
        if expired.len() == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "leases not expired: {expired:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    insert(&d, &[job("conformance", "default")]).await;
    let taken = e
        .job_get_available(&JobGetAvailableParams {
            queue: "default".to_owned(),
            max: 1,
            client_id: "dying".to_owned(),
            now: None,
            limit: None,
            rate: None,
        })
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    let ids = ["dying".to_owned(), "back".to_owned()];
    assert_eq!(
        e.client_delete_expired(&ids[..1]).await.unwrap(),
        0,
        "a client holding a running job keeps its row"
    );
    // "back" renews before the rescuer deletes.
    e.client_heartbeat("back", Duration::from_secs(30))
        .await
        .unwrap();
    complete(&d, &taken, JobOutcome::Completed).await;
    assert_eq!(e.client_delete_expired(&ids).await.unwrap(), 1);
    let left: Vec<String> = e
        .client_list()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, ["back"], "the renewed client keeps its row");
}
