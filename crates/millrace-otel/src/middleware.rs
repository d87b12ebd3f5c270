//! The insert and work middleware and the metric hook that emit River's `otelriver` metrics
//! and spans.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use millrace::{
    BoxFuture, InsertMiddleware, InsertNext, InsertParams, InsertResult, JobRow, Metric,
    MetricHook, WorkError, WorkMiddleware, WorkNext,
};
use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, MeterProvider};
use opentelemetry::trace::{
    FutureExt as _, Link, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider,
};
use opentelemetry::{Array, Context, InstrumentationScope, KeyValue, StringValue, Value};

use crate::propagation::{extract_trace_context, inject_trace_context};

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

struct Inner {
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
fn status_attr(status: &'static str) -> KeyValue {
    KeyValue::new("status", status)
}

impl InsertMiddleware for OtelMiddleware {
    fn insert_job(&self, job: &mut InsertParams) -> millrace::Result<()> {
        // The fast (COPY) insert runs no batch middleware: carry the caller's trace context
        // here, which `insert_many` then overwrites with its own span's.
        if self.inner.trace_propagation {
            inject_trace_context(&Context::current(), &mut job.metadata);
        }
        Ok(())
    }

    fn insert_many<'a>(
        &'a self,
        mut jobs: Vec<InsertParams>,
        next: InsertNext<'a>,
    ) -> BoxFuture<'a, millrace::Result<Vec<InsertResult>>> {
        Box::pin(async move {
            let inner = &self.inner;
            let span = inner
                .tracer
                .span_builder("river.insert_many")
                .with_kind(SpanKind::Producer)
                .start_with_context(&inner.tracer, &Context::current());
            let cx = Context::current_with_span(span);
            if inner.trace_propagation {
                for job in &mut jobs {
                    inject_trace_context(&cx, &mut job.metadata);
                }
            }
            let mut kinds: Vec<String> = jobs.iter().map(|j| j.kind.clone()).collect();
            kinds.sort_unstable();
            kinds.dedup();
            let submitted = jobs.len() as u64;
            let mut guard = InsertGuard {
                inner,
                cx: cx.clone(),
                kinds,
                submitted,
                begin: Instant::now(),
                done: false,
            };
            let result = next.run(jobs).with_context(cx).await;
            let skipped = match &result {
                Ok(results) => results
                    .iter()
                    .filter(|r| r.unique_skipped_as_duplicate)
                    .count() as u64,
                Err(_) => 0,
            };
            let error = result.as_ref().err().map(ToString::to_string);
            guard.finish(error.as_deref(), skipped);
            result
        })
    }
}

/// Records an insert batch once it ends, or as a panic if its future unwinds.
struct InsertGuard<'a> {
    inner: &'a Inner,
    cx: Context,
    kinds: Vec<String>,
    submitted: u64,
    begin: Instant,
    done: bool,
}

impl InsertGuard<'_> {
    fn finish(&mut self, error: Option<&str>, skipped: u64) {
        self.done = true;
        let duration = self.inner.unit.value(self.begin.elapsed());
        let span = self.cx.span();
        let status = match error {
            None => {
                span.set_status(Status::Ok);
                "ok"
            }
            Some(message) => {
                span.set_status(Status::error(message.to_owned()));
                "error"
            }
        };
        self.record(status, duration, skipped);
    }

    fn record(&self, status: &'static str, duration: f64, skipped: u64) {
        let m = &self.inner.metrics;
        let span = self.cx.span();
        let kinds: Vec<StringValue> = self.kinds.iter().cloned().map(Into::into).collect();
        span.set_attribute(status_attr(status));
        span.set_attribute(KeyValue::new("kinds", Value::Array(Array::String(kinds))));
        span.set_attribute(KeyValue::new(
            "unique_skipped_as_duplicate_count",
            skipped as i64,
        ));
        span.end();
        let attrs = [status_attr(status)];
        // Split by unique_skipped_as_duplicate, so the sum over both is every job submitted.
        let inserted = self.submitted - skipped.min(self.submitted);
        if inserted > 0 {
            m.insert_count.add(
                inserted,
                &[
                    status_attr(status),
                    KeyValue::new("unique_skipped_as_duplicate", false),
                ],
            );
        }
        if skipped > 0 {
            m.insert_count.add(
                skipped,
                &[
                    status_attr(status),
                    KeyValue::new("unique_skipped_as_duplicate", true),
                ],
            );
        }
        m.insert_many_count.add(1, &attrs);
        m.insert_many_duration.record(duration, &attrs);
        m.insert_many_duration_histogram.record(duration, &attrs);
    }
}

impl Drop for InsertGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            let duration = self.inner.unit.value(self.begin.elapsed());
            let status = if std::thread::panicking() {
                "panic"
            } else {
                // Dropped before it finished: the caller gave up on the insert.
                "error"
            };
            self.cx.span().set_status(Status::error(status));
            self.record(status, duration, 0);
        }
    }
}

impl WorkMiddleware for OtelMiddleware {
    fn work<'a>(
        &'a self,
        job: &'a JobRow,
        next: WorkNext<'a>,
    ) -> BoxFuture<'a, Result<(), WorkError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let name: Cow<'static, str> = if inner.work_span_kind_suffix {
                Cow::Owned(format!("river.work/{}", job.kind))
            } else {
                Cow::Borrowed("river.work")
            };
            let mut builder = inner
                .tracer
                .span_builder(name)
                .with_kind(SpanKind::Consumer);
            // A link, not a parent, as otelriver: a job may run long after the request that
            // inserted it ended, and a parent would stretch that request's trace over hours.
            if inner.trace_propagation
                && let Some(inserted_by) = extract_trace_context(&job.metadata)
            {
                builder = builder.with_links(vec![Link::with_context(inserted_by)]);
            }
            let span = builder.start_with_context(&inner.tracer, &Context::current());
            let cx = Context::current_with_span(span);
            let mut guard = WorkGuard {
                inner,
                job,
                cx: cx.clone(),
                begin: Instant::now(),
                done: false,
            };
            // The worker runs with the work span as the current OpenTelemetry context, so
            // spans it starts are its children.
            let result = next.with_context(cx).await;
            guard.finish(&result);
            result
        })
    }
}

/// Records a job's work once it ends, or as a panic (or an abort) if its future is dropped.
struct WorkGuard<'a> {
    inner: &'a Inner,
    job: &'a JobRow,
    cx: Context,
    begin: Instant,
    done: bool,
}

impl WorkGuard<'_> {
    fn finish(&mut self, result: &Result<(), WorkError>) {
        self.done = true;
        let span = self.cx.span();
        let mut extra = None;
        let status = match result {
            Ok(()) => {
                span.set_status(Status::Ok);
                "ok"
            }
            // Flow control, not failure: counted as ok so snoozes stay out of error rates,
            // with `snooze` kept as a dimension (otelriver's choice).
            Err(WorkError::Snooze(after)) => {
                span.set_status(Status::Ok);
                span.set_attribute(KeyValue::new("snooze.duration", format!("{after:?}")));
                extra = Some(KeyValue::new("snooze", true));
                "ok"
            }
            Err(WorkError::Cancel(err)) => {
                extra = Some(KeyValue::new("cancel", true));
                span.set_status(Status::error(err.to_string()));
                "error"
            }
            Err(WorkError::Retry(err)) => {
                span.set_status(Status::error(err.to_string()));
                "error"
            }
            Err(other) => {
                span.set_status(Status::error(format!("{other:?}")));
                "error"
            }
        };
        self.record(status, extra);
    }

    fn record(&self, status: &'static str, extra: Option<KeyValue>) {
        let duration = self.inner.unit.value(self.begin.elapsed());
        let job = self.job;
        let tags: Vec<StringValue> = job.tags.iter().cloned().map(Into::into).collect();
        let mut attrs = vec![
            KeyValue::new("attempt", i64::from(job.attempt)),
            KeyValue::new("kind", job.kind.clone()),
            KeyValue::new("priority", i64::from(job.priority)),
            KeyValue::new("queue", job.queue.clone()),
            status_attr(status),
            KeyValue::new("tag", Value::Array(Array::String(tags))),
        ];
        attrs.extend(extra);
        let span = self.cx.span();
        // Attributes of high cardinality go on the span only, as otelriver keeps them out of
        // metrics.
        span.set_attribute(KeyValue::new("id", job.id.0));
        span.set_attribute(KeyValue::new("created_at", rfc3339(job.created_at)));
        span.set_attribute(KeyValue::new("scheduled_at", rfc3339(job.scheduled_at)));
        for attr in &attrs {
            span.set_attribute(attr.clone());
        }
        span.end();
        let m = &self.inner.metrics;
        m.work_count.add(1, &attrs);
        m.work_duration.record(duration, &attrs);
        m.work_duration_histogram.record(duration, &attrs);
    }
}

impl Drop for WorkGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Unwinding: the worker panicked (the client records the attempt). Otherwise the
            // client dropped the work after a timeout or hard stop's grace ran out.
            let status = if std::thread::panicking() {
                "panic"
            } else {
                "error"
            };
            let message = if status == "panic" {
                "panic"
            } else {
                "aborted"
            };
            self.cx.span().set_status(Status::error(message));
            self.record(status, None);
        }
    }
}

/// RFC 3339 in UTC, to the second, as otelriver formats the job's times.
fn rfc3339(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
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
