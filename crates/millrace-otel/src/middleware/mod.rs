//! The insert and work middleware and the metric hook that emit River's `otelriver` metrics
//! and spans.

use std::sync::Arc;
use std::time::Duration;

use millrace::{Metric, MetricHook};
use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, MeterProvider};
use opentelemetry::trace::TracerProvider;
use opentelemetry::{InstrumentationScope, KeyValue};

mod insert;
mod work;

/// The instrumentation scope's name, as otelriver names its own after its Go package.
pub const SCOPE_NAME: &str = "millrace-otel";

/// The unit duration metrics are recorded in.
///
/// ```
/// use millrace_otel::DurationUnit;
/// assert_eq!(DurationUnit::default(), DurationUnit::Seconds);
/// assert_eq!(DurationUnit::Milliseconds.as_str(), "ms");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DurationUnit {
    /// Seconds (`s`), otelriver's default.
    #[default]
    Seconds,
    /// Milliseconds (`ms`).
    Milliseconds,
}

impl DurationUnit {
    /// The unit's UCUM code, as written on the metric: `s` or `ms`.
    pub fn as_str(self) -> &'static str {
        match self {
            DurationUnit::Seconds => "s",
            DurationUnit::Milliseconds => "ms",
        }
    }

    fn value(self, duration: Duration) -> f64 {
        match self {
            DurationUnit::Seconds => duration.as_secs_f64(),
            // Whole milliseconds, as otelriver records them.
            DurationUnit::Milliseconds => duration.as_millis() as f64,
        }
    }
}

/// Builds an [`OtelMiddleware`].
///
/// ```
/// use millrace_otel::{DurationUnit, OtelMiddleware};
///
/// let middleware = OtelMiddleware::builder()
///     .duration_unit(DurationUnit::Milliseconds)
///     .trace_propagation(true)
///     .build();
/// # drop(middleware);
/// ```
#[must_use]
pub struct OtelMiddlewareBuilder {
    duration_unit: DurationUnit,
    trace_propagation: bool,
    work_span_kind_suffix: bool,
    meter: Option<Meter>,
    tracer: Option<BoxedTracer>,
}

impl std::fmt::Debug for OtelMiddlewareBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelMiddlewareBuilder")
            .field("duration_unit", &self.duration_unit)
            .field("trace_propagation", &self.trace_propagation)
            .field("work_span_kind_suffix", &self.work_span_kind_suffix)
            .finish_non_exhaustive()
    }
}

impl OtelMiddlewareBuilder {
    /// The unit of the duration metrics. Defaults to seconds, as otelriver.
    pub fn duration_unit(mut self, unit: DurationUnit) -> Self {
        self.duration_unit = unit;
        self
    }

    /// Whether inserts write the W3C trace context into each job's metadata (`traceparent`,
    /// `tracestate`) and work spans link to it. Defaults to true (otelriver's
    /// `EnableTracePropagation`, off there by default, is on here: a trace that stops at the
    /// insert is what this crate exists to fix).
    pub fn trace_propagation(mut self, enabled: bool) -> Self {
        self.trace_propagation = enabled;
        self
    }

    /// Whether work spans are named `river.work/KIND` rather than `river.work`. Defaults to
    /// true (otelriver's `EnableWorkSpanJobKindSuffix`).
    pub fn work_span_kind_suffix(mut self, enabled: bool) -> Self {
        self.work_span_kind_suffix = enabled;
        self
    }

    /// The meter provider metrics are recorded on. Defaults to the global one
    /// (`opentelemetry::global::meter_provider()`), read when [`build`](Self::build) runs.
    pub fn meter_provider(mut self, provider: &impl MeterProvider) -> Self {
        self.meter = Some(provider.meter_with_scope(scope()));
        self
    }

    /// The tracer provider spans are started on. Defaults to the global one, read when
    /// [`build`](Self::build) runs.
    pub fn tracer_provider<P>(mut self, provider: &P) -> Self
    where
        P: TracerProvider,
        P::Tracer: Send + Sync + 'static,
        <P::Tracer as opentelemetry::trace::Tracer>::Span: Send + Sync + 'static,
    {
        self.tracer = Some(BoxedTracer::new(Box::new(
            provider.tracer_with_scope(scope()),
        )));
        self
    }

    /// Creates the instruments and the middleware.
    pub fn build(self) -> OtelMiddleware {
        let meter = self
            .meter
            .unwrap_or_else(|| global::meter_provider().meter_with_scope(scope()));
        let tracer = self
            .tracer
            .unwrap_or_else(|| global::tracer_provider().tracer_with_scope(scope()));
        let unit = self.duration_unit.as_str();
        // Names, descriptions and units are otelriver's, so River's dashboards read them.
        let metrics = Metrics {
            insert_count: meter
                .u64_counter("river.insert_count")
                .with_description("Number of jobs inserted")
                .with_unit("{job}")
                .build(),
            insert_many_count: meter
                .u64_counter("river.insert_many_count")
                .with_description(
                    "Number of job batches inserted (all jobs are inserted in a batch, but \
                     batches may be one job)",
                )
                .with_unit("{job_batch}")
                .build(),
            insert_many_duration: meter
                .f64_gauge("river.insert_many_duration")
                .with_description("Duration of job batch insertion")
                .with_unit(unit)
                .build(),
            insert_many_duration_histogram: meter
                .f64_histogram("river.insert_many_duration_histogram")
                .with_description("Duration of job batch insertion (histogram)")
                .with_unit(unit)
                .build(),
            job_get_available_duration: meter
                .f64_histogram("river.job_get_available_duration")
                .with_description("Duration of successful JobGetAvailable calls")
                .with_unit(unit)
                .build(),
            job_get_available_count: meter
                .u64_histogram("river.job_get_available_count")
                .with_description("Number of jobs locked by successful JobGetAvailable calls")
                .with_unit("{job}")
                .build(),
            work_count: meter
                .u64_counter("river.work_count")
                .with_description("Number of jobs worked")
                .with_unit("{job}")
                .build(),
            work_duration: meter
                .f64_gauge("river.work_duration")
                .with_description("Duration of job being worked")
                .with_unit(unit)
                .build(),
            work_duration_histogram: meter
                .f64_histogram("river.work_duration_histogram")
                .with_description("Duration of job being worked (histogram)")
                .with_unit(unit)
                .build(),
        };
        OtelMiddleware {
            inner: Arc::new(Inner {
                unit: self.duration_unit,
                trace_propagation: self.trace_propagation,
                work_span_kind_suffix: self.work_span_kind_suffix,
                metrics,
                tracer,
            }),
        }
    }
}

pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

struct Metrics {
    insert_count: Counter<u64>,
    insert_many_count: Counter<u64>,
    insert_many_duration: Gauge<f64>,
    insert_many_duration_histogram: Histogram<f64>,
    job_get_available_duration: Histogram<f64>,
    job_get_available_count: Histogram<u64>,
    work_count: Counter<u64>,
    work_duration: Gauge<f64>,
    work_duration_histogram: Histogram<f64>,
}

pub(super) struct Inner {
    unit: DurationUnit,
    trace_propagation: bool,
    work_span_kind_suffix: bool,
    metrics: Metrics,
    tracer: BoxedTracer,
}

/// River's `otelriver` for Millrace: insert and work middleware and a metric hook that record
/// otelriver's metrics (same names, units and attribute keys) and spans (`river.insert_many`
/// as a producer span, `river.work/KIND` as a consumer span), and carry the trace context from
/// an insert to the job's work through the job's metadata.
///
/// Register the one value three times (it is a cheap clone), or all at once with
/// [`ClientBuilderExt::opentelemetry`](crate::ClientBuilderExt::opentelemetry). Recording is
/// in memory; exporting is the SDK's, on its own threads with bounded queues, so an exporter
/// that is down never slows a job.
///
/// ```no_run
/// # fn example(driver: millrace_postgres::PgDriver) -> millrace::Result<()> {
/// use millrace_otel::{ClientBuilderExt, OtelMiddleware};
///
/// // Records on the global meter and tracer providers, which the application sets up.
/// let client = millrace::Client::builder(driver)
///     .opentelemetry(OtelMiddleware::new())
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OtelMiddleware {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OtelMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelMiddleware")
            .field("duration_unit", &self.inner.unit)
            .field("trace_propagation", &self.inner.trace_propagation)
            .finish_non_exhaustive()
    }
}

impl Default for OtelMiddleware {
    fn default() -> Self {
        OtelMiddleware::new()
    }
}

impl OtelMiddleware {
    /// Middleware on the global meter and tracer providers, with the defaults of
    /// [`OtelMiddlewareBuilder`].
    ///
    /// ```
    /// let middleware = millrace_otel::OtelMiddleware::new();
    /// # drop(middleware);
    /// ```
    pub fn new() -> Self {
        OtelMiddleware::builder().build()
    }

    /// Starts building middleware.
    pub fn builder() -> OtelMiddlewareBuilder {
        OtelMiddlewareBuilder {
            duration_unit: DurationUnit::default(),
            trace_propagation: true,
            work_span_kind_suffix: true,
            meter: None,
            tracer: None,
        }
    }
}

/// `status` as otelriver sets it: `ok`, `error` or `panic`.
pub(super) fn status_attr(status: &'static str) -> KeyValue {
    KeyValue::new("status", status)
}

impl MetricHook for OtelMiddleware {
    fn emit(&self, metric: &Metric<'_>) {
        // A `match` over a non-exhaustive enum: metrics added to the core later are ignored
        // until this crate records them.
        match metric {
            Metric::JobGetAvailable {
                queue,
                duration,
                count,
            } => {
                let attrs = [KeyValue::new("queue", queue.to_string())];
                let m = &self.inner.metrics;
                m.job_get_available_duration
                    .record(self.inner.unit.value(*duration), &attrs);
                m.job_get_available_count.record(*count as u64, &attrs);
            }
            // The COPY path runs no insert middleware; its batches count as any other's,
            // with no unique skips (COPY takes no unique options).
            Metric::InsertManyFast {
                count,
                duration,
                ok,
            } => {
                let status = if *ok { "ok" } else { "error" };
                let m = &self.inner.metrics;
                let attrs = [status_attr(status)];
                let duration = self.inner.unit.value(*duration);
                if *count > 0 {
                    m.insert_count.add(
                        *count as u64,
                        &[
                            status_attr(status),
                            KeyValue::new("unique_skipped_as_duplicate", false),
                        ],
                    );
                }
                m.insert_many_count.add(1, &attrs);
                m.insert_many_duration.record(duration, &attrs);
                m.insert_many_duration_histogram.record(duration, &attrs);
            }
            _ => {}
        }
    }
}

/// Registers an [`OtelMiddleware`] on a client builder as insert middleware, work middleware
/// and metric hook at once.
///
/// ```no_run
/// # fn example(driver: millrace_postgres::PgDriver) -> millrace::Result<()> {
/// use millrace_otel::{ClientBuilderExt, OtelMiddleware};
/// let client = millrace::Client::builder(driver)
///     .opentelemetry(OtelMiddleware::new())
///     .build()?;
/// # Ok(()) }
/// ```
pub trait ClientBuilderExt: Sized {
    /// Adds `middleware` as insert middleware, work middleware (outermost of those added so
    /// far's successors: it times everything added after it) and metric hook.
    fn opentelemetry(self, middleware: OtelMiddleware) -> Self;
}

impl<D: millrace::Driver> ClientBuilderExt for millrace::ClientBuilder<D> {
    fn opentelemetry(self, middleware: OtelMiddleware) -> Self {
        self.insert_middleware(middleware.clone())
            .work_middleware(middleware.clone())
            .metric_hook(middleware)
    }
}
