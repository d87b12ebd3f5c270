//! Conformance checks of the queue verbs: `river_queue` rows, their pages, pause state and
//! metadata, each metadata change told on `river_control`.

use std::time::Duration;

use millrace_driver::{Driver, Executor, Listener, Topic};

use super::DriverFixture;

/// Queues list by name, paged after a name.
pub async fn queue_list_pages_by_name<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    for name in ["delta", "alpha", "charlie", "bravo"] {
        d.executor().queue_create_or_touch(name).await.unwrap();
    }
    let names = |after: Option<&'static str>, limit: i64| {
        let d = d.clone();
        async move {
            d.executor()
                .queue_list(after, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|q| q.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        names(None, 10).await,
        ["alpha", "bravo", "charlie", "delta"]
    );
    assert_eq!(names(None, 2).await, ["alpha", "bravo"]);
    assert_eq!(names(Some("bravo"), 2).await, ["charlie", "delta"]);
    assert!(names(Some("delta"), 2).await.is_empty());
}

/// Setting one metadata key keeps the others (creating the row if needed), removing one
/// leaves the rest, and each change is told through `river_control`.
pub async fn queue_set_metadata_key_keeps_the_other_keys<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut listener = if d.supports_listen_notify() {
        let mut listener = d.listener().await.unwrap();
        listener.listen(Topic::Control).await.unwrap();
        Some(listener)
    } else {
        None
    };
    let set = |name: &'static str, key: &'static str, value: Option<&'static str>| {
        let d = d.clone();
        async move {
            d.executor()
                .queue_set_metadata_key(name, key, value)
                .await
                .unwrap()
                .metadata
        }
    };
    assert_eq!(
        set("fresh", "concurrency", Some(r#"{"global_limit":2}"#)).await,
        serde_json::json!({"concurrency": {"global_limit": 2}}),
        "a missing row is created with the key"
    );
    assert_eq!(
        set("gone", "concurrency", None).await,
        serde_json::json!({}),
        "removing from a missing row creates it empty"
    );
    d.executor()
        .queue_update_metadata("kept", r#"{"owner":"a","concurrency":{"global_limit":1}}"#)
        .await
        .unwrap();
    assert_eq!(
        set(
            "kept",
            "concurrency",
            Some(r#"{"global_limit":3,"partition":{"by_args":["c"]}}"#)
        )
        .await,
        serde_json::json!({"owner": "a", "concurrency": {"global_limit": 3, "partition": {"by_args": ["c"]}}}),
        "the key is replaced whole and the other keys kept"
    );
    assert_eq!(
        set("kept", "concurrency", None).await,
        serde_json::json!({"owner": "a"})
    );
    assert_eq!(
        d.executor()
            .queue_get("kept")
            .await
            .unwrap()
            .unwrap()
            .metadata,
        serde_json::json!({"owner": "a"})
    );
    let Some(listener) = listener.as_mut() else {
        return;
    };
    let mut changes = Vec::new();
    while changes.len() < 5 {
        let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("a control notification in time")
            .unwrap()
            .unwrap();
        let payload: serde_json::Value = serde_json::from_str(&n.payload).unwrap();
        if payload["action"] == "metadata_changed" {
            changes.push((payload["queue"].clone(), payload["metadata"].clone()));
        }
    }
    assert_eq!(
        changes.last().unwrap(),
        &(serde_json::json!("kept"), serde_json::json!({"owner": "a"}))
    );
}

/// A queue metadata update replaces the metadata (creating the row if needed) and tells
/// every client through `river_control`.
pub async fn queue_update_metadata_notifies_control<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let mut listener = if d.supports_listen_notify() {
        let mut listener = d.listener().await.unwrap();
        listener.listen(Topic::Control).await.unwrap();
        Some(listener)
    } else {
        None
    };
    let created = d
        .executor()
        .queue_update_metadata("fresh", r#"{"owner":"a","n":1}"#)
        .await
        .unwrap();
    assert_eq!(created.name, "fresh");
    assert_eq!(
        created.metadata,
        serde_json::json!({ "owner": "a", "n": 1 })
    );
    assert!(created.paused_at.is_none());
    d.executor().queue_set_paused("fresh", true).await.unwrap();
    let replaced = d
        .executor()
        .queue_update_metadata("fresh", r#"{"owner":"b"}"#)
        .await
        .unwrap();
    assert_eq!(
        replaced.metadata,
        serde_json::json!({ "owner": "b" }),
        "the metadata is replaced, not merged"
    );
    assert!(replaced.paused_at.is_some(), "a pause survives the update");
    assert_eq!(replaced.created_at, created.created_at);
    assert_eq!(
        d.executor()
            .queue_get("fresh")
            .await
            .unwrap()
            .unwrap()
            .metadata,
        replaced.metadata
    );
    let Some(listener) = listener.as_mut() else {
        return;
    };
    let mut changes = Vec::new();
    while changes.len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("a control notification in time")
            .unwrap()
            .unwrap();
        assert_eq!(n.topic, Topic::Control);
        let payload: serde_json::Value = serde_json::from_str(&n.payload).unwrap();
        if payload["action"] == "metadata_changed" {
            changes.push(payload);
        }
    }
    assert_eq!(
        changes,
        [
            serde_json::json!({
                "action": "metadata_changed",
                "metadata": { "owner": "a", "n": 1 },
                "queue": "fresh",
            }),
            serde_json::json!({
                "action": "metadata_changed",
                "metadata": { "owner": "b" },
                "queue": "fresh",
            }),
        ]
    );
}

/// Queues are created, refreshed, paused and resumed.
pub async fn queues_pause_and_resume<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    let created = d.executor().queue_create_or_touch("alpha").await.unwrap();
    assert!(created.paused_at.is_none());
    let touched = d.executor().queue_create_or_touch("alpha").await.unwrap();
    assert!(touched.updated_at >= created.updated_at);
    assert_eq!(
        d.executor().queue_set_paused("alpha", true).await.unwrap(),
        1
    );
    assert!(
        d.executor()
            .queue_get("alpha")
            .await
            .unwrap()
            .unwrap()
            .paused_at
            .is_some()
    );
    assert_eq!(
        d.executor().queue_set_paused("beta", true).await.unwrap(),
        1,
        "a pause creates the row"
    );
    assert_eq!(d.executor().queue_set_paused("*", false).await.unwrap(), 2);
    assert!(
        d.executor()
            .queue_get("alpha")
            .await
            .unwrap()
            .unwrap()
            .paused_at
            .is_none()
    );
    assert!(d.executor().queue_get("missing").await.unwrap().is_none());
}
