//! A Prometheus `/metrics` endpoint over the OpenTelemetry metrics: an SDK meter provider whose
//! reader is the official Prometheus bridge, rendered as Prometheus text on each scrape.
//!
//! OTel names become Prometheus names by the specification's rules, as Go's exporter writes
//! them for otelriver: dots become underscores, the unit is appended and counters end in
//! `_total` (`river.work_count` with unit `{job}` is `river_work_count_total`;
//! `river.work_duration_histogram` in seconds is `river_work_duration_histogram_seconds`).
//!
//! ```no_run
//! # async fn example(driver: millrace_postgres::PgDriver) -> Result<(), Box<dyn std::error::Error>> {
//! use millrace_otel::prometheus::PrometheusMetrics;
//! use millrace_otel::{ClientBuilderExt, OtelMiddleware};
//!
//! let metrics = PrometheusMetrics::new()?;
//! let middleware = OtelMiddleware::builder()
//!     .meter_provider(metrics.meter_provider())
//!     .build();
//! let client = millrace::Client::builder(driver).opentelemetry(middleware).build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9464").await?;
//! tokio::spawn(metrics.serve(listener, std::future::pending()));
//! # Ok(()) }
//! ```

use std::future::Future;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::metrics::{MeterProviderBuilder, SdkMeterProvider};

/// The content type of Prometheus's text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A meter provider read by Prometheus scrapes, and the page they read.
#[derive(Clone)]
pub struct PrometheusMetrics {
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
}

impl std::fmt::Debug for PrometheusMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusMetrics").finish_non_exhaustive()
    }
}

impl PrometheusMetrics {
    /// A new meter provider with only the Prometheus reader.
    ///
    /// # Errors
    ///
    /// When the Prometheus bridge cannot be built.
    ///
    /// ```
    /// let metrics = millrace_otel::prometheus::PrometheusMetrics::new().unwrap();
    /// assert!(metrics.encode().is_empty() || metrics.encode().contains("target_info"));
    /// ```
    pub fn new() -> Result<Self, OTelSdkError> {
        Self::from_builder(SdkMeterProvider::builder())
    }

    /// Adds the Prometheus reader to a meter provider builder that may carry other readers
    /// (an OTLP exporter, say) and a resource, and builds it.
    ///
    /// # Errors
    ///
    /// When the Prometheus bridge cannot be built.
    ///
    /// ```
    /// use opentelemetry_sdk::metrics::SdkMeterProvider;
    /// let metrics = millrace_otel::prometheus::PrometheusMetrics::from_builder(
    ///     SdkMeterProvider::builder(),
    /// )
    /// .unwrap();
    /// # drop(metrics);
    /// ```
    pub fn from_builder(builder: MeterProviderBuilder) -> Result<Self, OTelSdkError> {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()?;
        let provider = builder.with_reader(exporter).build();
        Ok(PrometheusMetrics { registry, provider })
    }

    /// The meter provider to record on: give it to
    /// [`OtelMiddlewareBuilder::meter_provider`](crate::OtelMiddlewareBuilder::meter_provider)
    /// and [`QueueGauges`](crate::QueueGauges).
    pub fn meter_provider(&self) -> &SdkMeterProvider {
        &self.provider
    }

    /// The current page, in Prometheus's text format.
    ///
    /// ```
    /// use opentelemetry::metrics::MeterProvider as _;
    /// let metrics = millrace_otel::prometheus::PrometheusMetrics::new().unwrap();
    /// let counter = metrics.meter_provider().meter("demo").u64_counter("demo.jobs").build();
    /// counter.add(2, &[]);
    /// assert!(metrics.encode().contains("demo_jobs_total"));
    /// ```
    pub fn encode(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|err| format!("# metrics could not be encoded: {err}\n"))
    }

    /// An axum router serving the page at `GET /metrics`, to mount in an application's own
    /// server.
    pub fn router(&self) -> Router {
        let metrics = self.clone();
        Router::new().route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, CONTENT_TYPE)],
                        metrics.encode(),
                    )
                        .into_response()
                }
            }),
        )
    }

    /// Serves `GET /metrics` on `listener` until `shutdown` completes.
    ///
    /// # Errors
    ///
    /// When the listener fails.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}
