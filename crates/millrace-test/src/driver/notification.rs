//! Conformance checks of notifications: `notify_many` reaching a listener on the schema's
//! channels.

use std::time::Duration;

use millrace_driver::{Driver, Executor, Listener, Topic};

use super::DriverFixture;

/// Notifications reach a listener, on the schema's channels.
pub async fn notifications_reach_listeners<F: DriverFixture>() {
    let fx = F::create().await;
    let d = fx.driver();
    if !d.supports_listen_notify() {
        return;
    }
    let mut listener = d.listener().await.unwrap();
    listener.listen(Topic::Insert).await.unwrap();
    listener.listen(Topic::Control).await.unwrap();
    d.executor()
        .notify_many(&[
            (Topic::Insert, r#"{"queue":"a"}"#.to_owned()),
            (
                Topic::Control,
                r#"{"action":"pause","queue":"a"}"#.to_owned(),
            ),
        ])
        .await
        .unwrap();
    let deadline = Duration::from_secs(10);
    let first = tokio::time::timeout(deadline, listener.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.topic, Topic::Insert);
    assert_eq!(first.payload, r#"{"queue":"a"}"#);
    let second = tokio::time::timeout(deadline, listener.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.topic, Topic::Control);
}
