//! An OTLP/HTTP receiver on 127.0.0.1: accepts protobuf bodies at `/v1/traces` and
//! `/v1/metrics`, decodes them with the protocol's own generated types, and keeps them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tokio::sync::Notify;

#[derive(Default)]
struct Received {
    spans: Mutex<Vec<Span>>,
    metrics: Mutex<Vec<Metric>>,
    arrived: Notify,
}

/// A running receiver; it stops when dropped.
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    received: Arc<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn traces(State(received): State<Arc<Received>>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("a valid OTLP trace payload");
    let mut spans = received.spans.lock().unwrap();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            spans.extend(scope.spans);
        }
    }
    received.arrived.notify_waiters();
    ExportTraceServiceResponse::default().encode_to_vec()
}

async fn metrics(State(received): State<Arc<Received>>, body: Bytes) -> Vec<u8> {
    let request = ExportMetricsServiceRequest::decode(body).expect("a valid OTLP metrics payload");
    let mut metrics = received.metrics.lock().unwrap();
    for resource in request.resource_metrics {
        for scope in resource.scope_metrics {
            metrics.extend(scope.metrics);
        }
    }
    received.arrived.notify_waiters();
    ExportMetricsServiceResponse::default().encode_to_vec()
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let received = Arc::new(Received::default());
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/metrics", post(metrics))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            addr,
            received,
            task,
        }
    }

    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits until `done` holds for the spans received so far, or panics after `deadline`.
    pub(crate) async fn wait_spans(
        &self,
        deadline: Duration,
        done: impl Fn(&[Span]) -> bool,
    ) -> Vec<Span> {
        self.wait(deadline, || {
            let spans = self.received.spans.lock().unwrap();
            done(&spans).then(|| spans.clone())
        })
        .await
        .unwrap_or_else(|| {
            let names: Vec<String> = self
                .received
                .spans
                .lock()
                .unwrap()
                .iter()
                .map(|s| s.name.clone())
                .collect();
            panic!("spans did not arrive within {deadline:?}; got {names:?}")
        })
    }

    /// Waits until `done` holds for the metrics received so far, or panics after `deadline`.
    pub(crate) async fn wait_metrics(
        &self,
        deadline: Duration,
        done: impl Fn(&[Metric]) -> bool,
    ) -> Vec<Metric> {
        self.wait(deadline, || {
            let metrics = self.received.metrics.lock().unwrap();
            done(&metrics).then(|| metrics.clone())
        })
        .await
        .unwrap_or_else(|| {
            let names: Vec<String> = self
                .received
                .metrics
                .lock()
                .unwrap()
                .iter()
                .map(|m| m.name.clone())
                .collect();
            panic!("metrics did not arrive within {deadline:?}; got {names:?}")
        })
    }

    async fn wait<T>(&self, deadline: Duration, check: impl Fn() -> Option<T>) -> Option<T> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let arrived = self.received.arrived.notified();
            if let Some(found) = check() {
                return Some(found);
            }
            // Re-checked on every payload, and at least every 100 ms in case a payload landed
            // between the check and the wait.
            let wake = (tokio::time::Instant::now() + Duration::from_millis(100)).min(until);
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
            if tokio::time::Instant::now() >= until {
                return check();
            }
        }
    }
}
