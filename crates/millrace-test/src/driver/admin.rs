//! Conformance checks of the job admin verbs: cancel, retry and delete outside a run, list
//! filters and pages, bulk delete and metadata updates.

use millrace_driver::{
    Driver, Executor, JobCancelParams, JobDeleteOutcome, JobInsertParams, JobListParams,
    JobOutcome, JobRetryParams,
};
use millrace_types::{JobId, JobState};

use super::{DriverFixture, complete, fetch, get, insert, job};

/// Cancel, retry and delete outside a run.
pub async fn admin_verbs_follow_river<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let rows = insert(&d, &[job("a", "default"), job("b", "default")]).await;
    let cancelled = d
        .executor()
        .job_cancel(&JobCancelParams {
            id: rows[0].id,
            now: None,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert!(cancelled.finalized_at.is_some());
    assert!(
        d.executor()
            .job_cancel(&JobCancelParams {
                id: JobId(i64::MAX),
                now: None
            })
            .await
            .unwrap()
            .is_none()
    );

    let retried = d
        .executor()
        .job_retry(&JobRetryParams {
            id: rows[0].id,
            now: None,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retried.state, JobState::Available);
    assert!(retried.finalized_at.is_none());

    let run = fetch(&d, "default", 10).await;
    assert_eq!(run.len(), 2);
    match d.executor().job_delete(rows[1].id).await.unwrap() {
        JobDeleteOutcome::Running(row) => assert_eq!(row.id, rows[1].id),
        other => panic!("deleting a running job must be refused, got {other:?}"),
    }
    complete(&d, &run[0], JobOutcome::Completed).await;
    match d.executor().job_delete(run[0].id).await.unwrap() {
        JobDeleteOutcome::Deleted(row) => assert_eq!(row.id, run[0].id),
        other => panic!("expected a delete, got {other:?}"),
    }
    assert_eq!(
        d.executor().job_delete(run[0].id).await.unwrap(),
        JobDeleteOutcome::NotFound
    );
}

/// Lists filter by state, kind and queue, and page by id both ways.
pub async fn list_filters_and_pages<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let rows = insert(
        &d,
        &[
            job("a", "q1"),
            job("b", "q1"),
            job("a", "q2"),
            job("c", "q2"),
        ],
    )
    .await;
    let list = |params: JobListParams| {
        let d = d.clone();
        async move {
            d.executor()
                .job_list(&params)
                .await
                .unwrap()
                .into_iter()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        }
    };
    let by_kind = list(JobListParams {
        kinds: vec!["a".into()],
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(
        by_kind.iter().map(|r| r.id).collect::<Vec<_>>(),
        [rows[0].id, rows[2].id]
    );
    let by_queue = list(JobListParams {
        queues: vec!["q2".into()],
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(by_queue.len(), 2);
    let by_state = list(JobListParams {
        states: vec![JobState::Running],
        limit: 10,
        ..Default::default()
    })
    .await;
    assert!(by_state.is_empty());
    let page = list(JobListParams {
        after_id: Some(rows[1].id),
        limit: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(page[0].id, rows[2].id);
    let desc = list(JobListParams {
        after_id: Some(rows[2].id),
        descending: true,
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(
        desc.iter().map(|r| r.id).collect::<Vec<_>>(),
        [rows[1].id, rows[0].id]
    );
}

/// Lists also filter by ids, priorities, tags (all of them) and metadata containment
/// (PostgreSQL's `@>`), each combined with the others.
pub async fn list_filters_by_ids_priorities_tags_and_metadata<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut a = job("a", "default");
    a.priority = 2;
    a.tags = vec!["red".into(), "big".into()];
    a.metadata = r#"{"tenant":7,"owner":{"team":"core","ids":[1,2,3]}}"#.to_owned();
    let mut b = job("b", "default");
    b.priority = 3;
    b.tags = vec!["red".into()];
    b.metadata = r#"{"tenant":7,"owner":{"team":"edge"}}"#.to_owned();
    let mut c = job("c", "default");
    c.priority = 2;
    c.metadata = r#"{"tenant":8}"#.to_owned();
    let rows = insert(&d, &[a, b, c]).await;
    let ids = |params: JobListParams| {
        let d = d.clone();
        async move {
            d.executor()
                .job_list(&JobListParams {
                    limit: if params.limit == 0 { 10 } else { params.limit },
                    ..params
                })
                .await
                .unwrap()
                .into_iter()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    let (a, b, c) = (rows[0].id, rows[1].id, rows[2].id);
    let by_ids = ids(JobListParams {
        ids: vec![c, a, JobId(i64::MAX)],
        ..Default::default()
    })
    .await;
    assert_eq!(by_ids, [a, c]);
    let by_priority = ids(JobListParams {
        priorities: vec![2],
        ..Default::default()
    })
    .await;
    assert_eq!(by_priority, [a, c]);
    let red = ids(JobListParams {
        tags: vec!["red".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(red, [a, b]);
    let red_and_big = ids(JobListParams {
        tags: vec!["big".into(), "red".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(red_and_big, [a], "every tag must be present");
    let contains = |json: &str| JobListParams {
        metadata_contains: Some(json.to_owned()),
        ..Default::default()
    };
    assert_eq!(ids(contains(r#"{"tenant":7}"#)).await, [a, b]);
    assert_eq!(ids(contains(r#"{"owner":{"team":"core"}}"#)).await, [a]);
    assert_eq!(ids(contains(r#"{"owner":{"ids":[3,1]}}"#)).await, [a]);
    assert_eq!(
        ids(contains(r#"{"owner":{"ids":[4]}}"#)).await,
        Vec::<JobId>::new()
    );
    assert_eq!(ids(contains("{}")).await, [a, b, c]);
    assert_eq!(
        ids(contains(r#"{"tenant":"7"}"#)).await,
        Vec::<JobId>::new()
    );
    let combined = ids(JobListParams {
        priorities: vec![2, 3],
        tags: vec!["red".into()],
        metadata_contains: Some(r#"{"owner":{"team":"edge"}}"#.to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(combined, [b]);
    let paged = ids(JobListParams {
        ids: vec![a, b, c],
        after_id: Some(c),
        descending: true,
        limit: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(paged, [b], "filters page by id like any list");
}

/// Bulk deletes take the list's filters, spare running jobs, stop at the limit and go in
/// the list's order, returning the deleted rows.
pub async fn delete_many_spares_running_jobs_in_list_order<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let jobs: Vec<JobInsertParams> = (0..6).map(|_| job("doomed", "default")).collect();
    let mut rows = insert(&d, &jobs).await;
    insert(&d, &[job("kept", "default")]).await;
    // The first is running: a bulk delete never takes it.
    let running = fetch(&d, "default", 1).await.remove(0);
    assert_eq!(running.id, rows[0].id);
    rows.remove(0);
    let params = |descending: bool, limit: i64| JobListParams {
        kinds: vec!["doomed".into()],
        descending,
        limit,
        ..Default::default()
    };
    let first = d
        .executor()
        .job_delete_many(&params(false, 2))
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    assert_eq!(
        first.iter().map(|r| r.id).collect::<Vec<_>>(),
        [rows[0].id, rows[1].id],
        "oldest first, at most the limit"
    );
    assert_eq!(first[0].kind, "doomed");
    let newest = d
        .executor()
        .job_delete_many(&params(true, 2))
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    assert_eq!(
        newest.iter().map(|r| r.id).collect::<Vec<_>>(),
        [rows[4].id, rows[3].id],
        "newest first when descending"
    );
    let rest = d
        .executor()
        .job_delete_many(&params(false, 100))
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    assert_eq!(rest.iter().map(|r| r.id).collect::<Vec<_>>(), [rows[2].id]);
    assert!(
        d.executor()
            .job_delete_many(&params(false, 100))
            .await
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
            .is_empty()
    );
    assert_eq!(get(&d, running.id).await.state, JobState::Running);
    let left = d
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
    let mut kinds: Vec<&str> = left.iter().map(|r| r.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["doomed", "kept"],
        "the running job and the other kind stay"
    );
}

/// A metadata update merges top-level keys, whatever the job's state, and returns the row.
pub async fn update_metadata_merges_top_level_keys<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut with_meta = job("m", "default");
    with_meta.metadata = r#"{"keep":1,"nested":{"a":1,"b":2},"gone":true}"#.to_owned();
    let row = insert(&d, &[with_meta]).await.remove(0);
    let updated = d
        .executor()
        .job_update_metadata(row.id, r#"{"nested":{"a":9},"gone":null,"new":"x"}"#)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        updated.metadata,
        serde_json::json!({ "keep": 1, "nested": { "a": 9 }, "gone": null, "new": "x" }),
        "top-level keys are replaced whole, as PostgreSQL's ||"
    );
    assert_eq!(get(&d, row.id).await.metadata, updated.metadata);
    let running = fetch(&d, "default", 1).await.remove(0);
    let while_running = d
        .executor()
        .job_update_metadata(running.id, r#"{"admin":true}"#)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(while_running.state, JobState::Running);
    assert_eq!(while_running.metadata["admin"], true);
    assert!(
        d.executor()
            .job_update_metadata(JobId(i64::MAX), "{}")
            .await
            .unwrap()
            .is_none()
    );
}
