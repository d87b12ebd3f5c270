//! `--metrics-addr`: a Prometheus `/metrics` endpoint for long-running commands, with River's
//! otelriver metrics and Millrace's queue gauges. Needs the `metrics` feature.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Args;
use millrace::{Client, ClientBuilder, Driver};
use millrace_otel::prometheus::PrometheusMetrics;
use millrace_otel::{ClientBuilderExt as _, OtelMiddleware, QueueGauges};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub(crate) struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464): River's
    /// otelriver metrics (river_work_count_total, …) and Millrace's queue gauges
    /// (millrace_jobs, millrace_queue_lag_seconds, …).
    #[arg(long, value_name = "ADDR", env = "MILLRACE_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
}

/// The endpoint's parts, while it serves.
pub(crate) struct Metrics {
    prometheus: PrometheusMetrics,
    addr: SocketAddr,
}

impl MetricsArgs {
    /// The meter provider and address, when `--metrics-addr` is given.
    pub(crate) fn setup(&self) -> anyhow::Result<Option<Metrics>> {
        let Some(addr) = self.metrics_addr else {
            return Ok(None);
        };
        let prometheus =
            PrometheusMetrics::new().context("could not set up the Prometheus metrics")?;
        Ok(Some(Metrics { prometheus, addr }))
    }
}

impl Metrics {
    /// Adds the OpenTelemetry middleware, recording on the endpoint's meter provider.
    pub(crate) fn instrument<D: Driver>(&self, builder: ClientBuilder<D>) -> ClientBuilder<D> {
        let middleware = OtelMiddleware::builder()
            .meter_provider(self.prometheus.meter_provider())
            .build();
        builder.opentelemetry(middleware)
    }

    /// Starts the queue gauges and the server; both stop when `stop` fires.
    pub(crate) async fn serve<D: Driver>(
        self,
        client: Client<D>,
        stop: CancellationToken,
    ) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .with_context(|| format!("could not listen on --metrics-addr {}", self.addr))?;
        let addr = listener.local_addr()?;
        let gauges = QueueGauges::builder(client)
            .meter_provider(self.prometheus.meter_provider())
            .start();
        tokio::spawn(async move {
            let served = self
                .prometheus
                .serve(listener, stop.clone().cancelled_owned())
                .await;
            gauges.stop().await;
            if let Err(err) = served {
                tracing::warn!(error = %err, "the metrics endpoint stopped");
            }
        });
        Ok(addr)
    }
}
