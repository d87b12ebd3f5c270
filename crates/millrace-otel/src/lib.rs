//! OpenTelemetry for Millrace, under the names River's `otelriver` uses, so River's
//! dashboards read a Millrace fleet unchanged; and a Prometheus `/metrics` endpoint.
//!
//! The core crate has no OpenTelemetry dependency: this crate hooks into it through its
//! insert and work middleware and its metric hook.
//!
//! # Quick start
//!
//! ```no_run
//! # fn example(driver: millrace_postgres::PgDriver) -> millrace::Result<()> {
//! use millrace_otel::{ClientBuilderExt, OtelMiddleware};
//!
//! // Set up the global meter and tracer providers (an OTLP exporter, say) first; see
//! // examples/opentelemetry.rs.
//! let client = millrace::Client::builder(driver)
//!     .opentelemetry(OtelMiddleware::new())
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! # What is recorded
//!
//! | Metric | Kind | Unit | Attributes |
//! |---|---|---|---|
//! | `river.insert_count` | counter | `{job}` | `status`, `unique_skipped_as_duplicate` |
//! | `river.insert_many_count` | counter | `{job_batch}` | `status` |
//! | `river.insert_many_duration` | gauge | `s` | `status` |
//! | `river.insert_many_duration_histogram` | histogram | `s` | `status` |
//! | `river.job_get_available_duration` | histogram | `s` | `queue` |
//! | `river.job_get_available_count` | histogram | `{job}` | `queue` |
//! | `river.work_count` | counter | `{job}` | `attempt`, `kind`, `priority`, `queue`, `status`, `tag`, and `cancel` or `snooze` when true |
//! | `river.work_duration` | gauge | `s` | as `river.work_count` |
//! | `river.work_duration_histogram` | histogram | `s` | as `river.work_count` |
//!
//! Batches inserted by COPY (`Client::insert_many_fast`) count under the insert metrics like
//! any other batch, through the client's metric hook (no insert middleware runs there).
//! `status` is `ok`, `error` or `panic`; a snooze is `ok` with `snooze=true`. Spans:
//! `river.insert_many` (producer) and `river.work/KIND` (consumer), linked to the span that
//! inserted the job through `traceparent` in the job's metadata. The queue gauges
//! ([`QueueGauges`]) add what River lacks, and [`ExportCounter`] counts the telemetry an
//! exporter loses (spans dropped at a full queue or in a failed export, failed metric
//! exports). See `docs/observability.md`.
//!
//! # Features
//!
//! | Feature | Default | What |
//! |---|---|---|
//! | `prometheus` | yes | [`prometheus`]: an OTel meter provider scraped as Prometheus text, and a `/metrics` server |

mod gauges;
mod loss;
mod middleware;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod propagation;

pub use gauges::{GAUGES_INTERVAL_DEFAULT, QueueGauges, QueueGaugesBuilder};
pub use loss::{
    CountingMetricExporter, CountingSpanExporter, CountingSpanProcessor, ExportCounter,
    ExportCounterInstruments, ExportCounts,
};
pub use middleware::{
    ClientBuilderExt, DurationUnit, OtelMiddleware, OtelMiddlewareBuilder, SCOPE_NAME,
};
pub use propagation::{
    METADATA_TRACEPARENT, METADATA_TRACESTATE, extract_trace_context, inject_trace_context,
};
