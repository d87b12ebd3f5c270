//! Conformance checks of sequences (issue 19): one live job per key, promotion, blocking and
//! the promoter's sweep.

use jiff::Timestamp;
use millrace_driver::{
    Driver, Executor, JobCancelParams, JobCompleteParams, JobDeleteOutcome, JobInsertParams,
    JobOutcome, SequenceListParams,
};
use millrace_types::{JobId, JobState};

use super::{DriverFixture, attempt_error, complete, fetch, get, insert, job};

/// Sequences (issue 19): a key's first job goes in available and the rest pending, in one
/// batch or several; finishing the live job promotes the lowest pending one, a blocking
/// failure holds the rest, deleting it moves on, and the sweep finds a sequence whose head
/// vanished without a promotion.
pub async fn sequences_keep_one_job_live_per_key<F: DriverFixture>() {
    let fixture = F::create().await;
    let driver = fixture.driver();
    let seq = |key: &str, extra: &str| JobInsertParams {
        metadata: format!(r#"{{"millrace:seq":"{key}"{extra}}}"#),
        ..job("sequenced", "seq")
    };
    let first = insert(&driver, &[seq("a", ""), seq("a", ""), seq("b", "")]).await;
    let states: Vec<JobState> = first.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        [JobState::Available, JobState::Pending, JobState::Available]
    );
    let more = insert(&driver, &[seq("a", ""), seq("b", "")]).await;
    assert!(
        more.iter().all(|r| r.state == JobState::Pending),
        "{more:?}"
    );
    // insert_fast takes the checked path for sequence jobs.
    let fast = driver
        .executor()
        .job_insert_fast(&[seq("a", "")])
        .await
        .expect("insert fast");
    assert_eq!(fast, 1);

    // Only the heads are fetched; completing a's head promotes its next job by id.
    let heads = fetch(&driver, "seq", 10).await;
    let ids: Vec<JobId> = heads.iter().map(|r| r.id).collect();
    assert_eq!(ids, [first[0].id, first[2].id]);
    complete(&driver, &heads[0], JobOutcome::Completed).await;
    assert_eq!(get(&driver, first[1].id).await.state, JobState::Available);
    assert_eq!(get(&driver, more[0].id).await.state, JobState::Pending);

    // b's head discarded with the default policy blocks b.
    let error = attempt_error(&heads[1], "failed");
    driver
        .executor()
        .job_complete_many(&[JobCompleteParams {
            id: heads[1].id,
            attempt: heads[1].attempt,
            outcome: JobOutcome::Errored {
                error,
                retry_at: Timestamp::now(),
                discard: true,
            },
            metadata_merge: None,
        }])
        .await
        .expect("discard");
    assert_eq!(get(&driver, more[1].id).await.state, JobState::Pending);
    let listed = driver
        .executor()
        .sequence_list(&SequenceListParams {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    let summary: Vec<(&str, JobId, JobState, i64, bool)> = listed
        .iter()
        .map(|s| {
            (
                s.key.as_str(),
                s.head_id,
                s.head_state,
                s.pending,
                s.blocked,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a", first[1].id, JobState::Available, 2, false),
            ("b", first[2].id, JobState::Discarded, 1, true),
        ]
    );
    assert!(
        driver
            .executor()
            .sequence_promote_stranded(10)
            .await
            .expect("sweep")
            .is_empty(),
        "a blocked sequence stays blocked"
    );
    // Deleting the failed head moves b on at once.
    let deleted = driver
        .executor()
        .job_delete(first[2].id)
        .await
        .expect("delete");
    assert!(
        matches!(deleted, JobDeleteOutcome::Deleted(_)),
        "{deleted:?}"
    );
    assert_eq!(get(&driver, more[1].id).await.state, JobState::Available);

    // A head cancelled with the continue mark lets the next job go.
    let c = insert(
        &driver,
        &[
            seq("c", r#","millrace:seq_continue":true"#),
            seq("c", r#","millrace:seq_continue":true"#),
        ],
    )
    .await;
    driver
        .executor()
        .job_cancel(&JobCancelParams {
            id: c[0].id,
            now: None,
        })
        .await
        .expect("cancel");
    assert_eq!(get(&driver, c[1].id).await.state, JobState::Available);

    // Promoting a key whose live job still holds it changes nothing; an unknown key is no
    // error.
    let promoted = driver
        .executor()
        .sequence_promote(&["a".to_owned(), "zzz".to_owned()])
        .await
        .expect("promote");
    assert!(promoted.is_empty(), "a's live job holds it: {promoted:?}");
}
