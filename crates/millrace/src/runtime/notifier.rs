//! The notifier: one LISTEN connection for the client, dispatching what arrives.

use std::sync::Arc;
use std::time::Duration;

use millrace_driver::{Backoff, Driver, Listener, Notification, Topic};
use millrace_types::JobId;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::runtime::shared::Shared;

pub(crate) struct Notifier<D: Driver> {
    shared: Arc<Shared<D>>,
    /// Told once the first LISTEN is in place, so `Client::start` returns only when remote
    /// cancels and pauses can reach this client.
    ready: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

/// A `river_control` payload. River's clients order keys and space them differently, so it
/// is parsed as JSON, never matched as text.
#[derive(Debug, Deserialize)]
struct Control {
    action: String,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
    #[serde(default)]
    job_id: Option<i64>,
    #[serde(default)]
    queue: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Insert {
    queue: String,
}

/// The bounds of the reconnect backoff.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl<D: Driver> Notifier<D> {
    pub(crate) fn new(shared: Arc<Shared<D>>, ready: tokio::sync::oneshot::Sender<()>) -> Self {
        Notifier {
            shared,
            ready: std::sync::Mutex::new(Some(ready)),
        }
    }

    pub(crate) async fn run(self, stop: CancellationToken) {
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        loop {
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                result = self.listen(&mut backoff) => result,
            };
            if let Err(err) = result {
                if backoff.failures() == 0 {
                    tracing::warn!(%err, "notification listener failed; polling until it reconnects");
                }
                // Anything sent meanwhile is lost: producers poll now rather than wait.
                self.shared.wake_all();
                let backoff = backoff.next_delay();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }

    async fn listen(&self, backoff: &mut Backoff) -> millrace_driver::Result<()> {
        let mut listener = self.shared.driver.listener().await?;
        listener.listen(Topic::Insert).await?;
        listener.listen(Topic::Control).await?;
        listener.listen(Topic::Leadership).await?;
        if let Some(ready) = self.ready.lock().expect("lock poisoned").take() {
            let _ = ready.send(());
        }
        if backoff.failures() > 0 {
            tracing::info!("notification listener reconnected");
            backoff.reset();
            self.shared.wake_all();
        }
        loop {
            match listener.recv().await? {
                Some(notification) => self.dispatch(notification),
                None => {
                    tracing::warn!(
                        "notification connection lost; reconnecting and polling meanwhile"
                    );
                    self.shared.wake_all();
                }
            }
        }
    }

    fn dispatch(&self, notification: Notification) {
        match notification.topic {
            Topic::Insert => match serde_json::from_str::<Insert>(&notification.payload) {
                Ok(insert) => self.shared.wake_queue(&insert.queue),
                Err(err) => {
                    tracing::debug!(%err, payload = notification.payload, "ignoring bad insert notification")
                }
            },
            Topic::Control => match serde_json::from_str::<Control>(&notification.payload) {
                Ok(control) => self.control(control),
                Err(err) => {
                    tracing::debug!(%err, payload = notification.payload, "ignoring bad control notification")
                }
            },
            Topic::Leadership => match serde_json::from_str::<Control>(&notification.payload) {
                Ok(leadership) => match leadership.action.as_str() {
                    "resigned" => self.shared.river_leader_signals.resigned.notify_one(),
                    "request_resign" => self.shared.river_leader_signals.request_resign(),
                    _ => {}
                },
                Err(err) => {
                    tracing::debug!(%err, payload = notification.payload, "ignoring bad leadership notification")
                }
            },
        }
    }

    fn control(&self, control: Control) {
        if control.action == "metadata_changed" {
            if let Some(queue) = control.queue {
                if let Some(metadata) = &control.metadata {
                    self.shared.metadata_changed(&queue, metadata);
                }
                let _ = self
                    .shared
                    .events
                    .send(crate::event::Event::QueueMetadataChanged {
                        queue,
                        metadata: control.metadata.unwrap_or_default(),
                    });
            }
            return;
        }
        match (control.action.as_str(), control.job_id, control.queue) {
            ("cancel", Some(id), _) => self.shared.cancel_job(JobId(id)),
            ("pause", _, Some(queue)) => self.shared.told_paused(&queue, true),
            ("resume", _, Some(queue)) => self.shared.told_paused(&queue, false),
            _ => {}
        }
    }
}
