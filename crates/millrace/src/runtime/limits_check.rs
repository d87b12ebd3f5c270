//! Clients that disagree about a queue's limits (issue 19).
//!
//! Each client enforces the limits it was built with (or the queue's metadata override), so
//! two clients built with different limits for one queue give the fleet a limit neither
//! declares: with a global limit of 2 on one client and 5 on another, five jobs run once the
//! second fetches. That happens in every rolling deploy that changes a limit, and by mistake
//! when one service's build forgets it. Each client writes its declarations to its heartbeat
//! row, at start and at every queue refresh, and compares them with those of the other live
//! clients; a difference is logged once (and again when it changes) and shown in
//! [`QueueHealth::limits_disagreement`](crate::QueueHealth::limits_disagreement).

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use millrace_driver::{ClientRow, Driver, Executor};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::runtime::shared::Shared;

/// Declares this client's limits and compares them with the fleet's, at once and then at
/// every queue refresh, until `stop`.
pub(crate) async fn run<D: Driver>(shared: Arc<Shared<D>>, stop: CancellationToken) {
    let every = shared.config.queue_touch_interval;
    let mut reported = BTreeMap::new();
    loop {
        if let Err(err) = round(&shared, &mut reported).await {
            tracing::debug!(%err, "could not compare this client's limits with the fleet's; trying at the next refresh");
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

async fn round<D: Driver>(
    shared: &Shared<D>,
    reported: &mut BTreeMap<String, String>,
) -> millrace_driver::Result<()> {
    let declared: BTreeMap<String, Value> = shared
        .producers
        .lock()
        .expect("lock poisoned")
        .iter()
        .map(|(queue, handle)| (queue.clone(), handle.declared.clone()))
        .collect();
    let mut exec = shared.driver.executor();
    let text = serde_json::to_string(&declared).expect("JSON values serialize");
    exec.client_declare_queues(&shared.config.id, &text).await?;
    let clients = exec.client_list().await?;
    let now = exec.now().await?;
    let mut found = disagreements(&shared.config.id, &declared, &clients, now);
    let mut records = shared.fetches.lock().expect("lock poisoned");
    for queue in declared.keys() {
        let now_found = found.remove(queue);
        match &now_found {
            Some(text) if reported.get(queue) != Some(text) => {
                tracing::warn!(queue = %queue, "clients disagree about the queue's limits: {text}");
                reported.insert(queue.clone(), text.clone());
            }
            Some(_) => {}
            None => {
                if reported.remove(queue).is_some() {
                    tracing::info!(queue = %queue, "clients agree about the queue's limits again");
                }
            }
        }
        records.entry(queue.clone()).or_default().disagreement = now_found;
    }
    Ok(())
}

/// For each of `declared`'s queues, how the first other live client (by id) whose
/// declaration for it differs does so. Clients that declared nothing for a queue (an older
/// Millrace, or one that does not work the queue) are not compared.
fn disagreements(
    me: &str,
    declared: &BTreeMap<String, Value>,
    clients: &[ClientRow],
    now: Timestamp,
) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for (queue, mine) in declared {
        let differing: Vec<(&str, &Value)> = clients
            .iter()
            .filter(|c| c.id != me && c.lease_expires_at > now)
            .filter_map(|c| Some((c.id.as_str(), c.queues.get(queue)?)))
            .filter(|(_, theirs)| *theirs != mine)
            .collect();
        if let Some((id, theirs)) = differing.first() {
            let more = match differing.len() - 1 {
                0 => String::new(),
                n => format!(" ({n} more clients differ too)"),
            };
            found.insert(
                queue.clone(),
                format!("client {id:?} declares {theirs}; this client declares {mine}{more}"),
            );
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(id: &str, queues: Value, live: bool) -> ClientRow {
        let now = Timestamp::from_second(1_000).unwrap();
        let lease = if live { 30 } else { -30 };
        ClientRow {
            id: id.to_owned(),
            started_at: now,
            heartbeat_at: now,
            lease_expires_at: Timestamp::from_second(1_000 + lease).unwrap(),
            queues,
        }
    }

    #[test]
    fn only_live_other_clients_that_declare_the_queue_differently_are_reported() {
        let now = Timestamp::from_second(1_000).unwrap();
        let mine = json!({"concurrency": {"global_limit": 2}, "rate_limit": null});
        let declared = BTreeMap::from([("q".to_owned(), mine.clone())]);
        let other = json!({"concurrency": {"global_limit": 5}, "rate_limit": null});
        let clients = [
            row("me", json!({"q": other.clone()}), true),
            row("same", json!({"q": mine.clone()}), true),
            row("dead", json!({"q": other.clone()}), false),
            row("elsewhere", json!({"other_queue": other.clone()}), true),
            row("older", json!({}), true),
        ];
        assert!(disagreements("me", &declared, &clients, now).is_empty());

        let mut clients = clients.to_vec();
        clients.push(row("b", json!({"q": other.clone()}), true));
        clients.push(row("c", json!({"q": other}), true));
        let found = disagreements("me", &declared, &clients, now);
        let text = &found["q"];
        assert!(text.starts_with("client \"b\" declares"), "{text}");
        assert!(text.contains("\"global_limit\":5"), "{text}");
        assert!(text.ends_with("(1 more clients differ too)"), "{text}");
    }
}
