//! Counting the telemetry that never reaches its endpoint.
//!
//! The SDK's batch span processor drops spans when its bounded queue is full and reports the
//! count only in its own log at shutdown; a failed export loses its batch without a trace. An
//! operator needs both as numbers while the process runs. [`ExportCounter`] wraps the span
//! processor, the span exporter and the metric exporter, counts what goes in and what comes
//! out, and exposes the counts as metrics and as a [`ExportCounts`] snapshot.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::metrics::{MeterProvider, ObservableCounter, ObservableGauge};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

use crate::middleware::scope;

#[derive(Debug, Default)]
struct Counts {
    spans_ended: AtomicU64,
    spans_exported: AtomicU64,
    spans_failed: AtomicU64,
    metric_exports: AtomicU64,
    metric_exports_failed: AtomicU64,
}

/// Counts the spans and metric exports that reach the exporter's endpoint, and those that do
/// not: spans dropped because the batch processor's queue was full, spans in an export that
/// failed (endpoint down, timeout, refused), and metric exports that failed.
///
/// Wrap the exporters and the span processor with one counter, then
/// [`register`](Self::register) it on a meter provider to export the counts themselves (a
/// failing metric endpoint cannot report its own failures, so read
/// [`counts`](Self::counts) too, for a health check or a log line):
///
/// | Metric | Kind | Unit | Meaning |
/// |---|---|---|---|
/// | `millrace.telemetry.spans.ended` | counter | `{span}` | spans ended and handed to the processor |
/// | `millrace.telemetry.spans.exported` | counter | `{span}` | spans the endpoint accepted |
/// | `millrace.telemetry.spans.failed` | counter | `{span}` | spans in exports that failed |
/// | `millrace.telemetry.spans.unexported` | gauge | `{span}` | ended − exported: queued, dropped or failed |
/// | `millrace.telemetry.metric_exports` | counter | `{export}` | metric exports, by `status` (`ok`, `error`) |
///
/// Spans dropped at the full queue are `unexported − failed − queued`, and the queue holds at
/// most its configured size (2,048 by default), so an `unexported` that keeps growing past it
/// means spans are being lost. After a flush nothing is queued: `unexported − failed` is then
/// exactly the count the queue dropped.
///
/// # Examples
///
/// ```
/// use millrace_otel::ExportCounter;
/// use opentelemetry_sdk::testing::trace::NoopSpanExporter;
/// use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
///
/// let counter = ExportCounter::new();
/// let processor = BatchSpanProcessor::builder(counter.span_exporter(NoopSpanExporter::new())).build();
/// let provider = SdkTracerProvider::builder()
///     .with_span_processor(counter.span_processor(processor))
///     .build();
/// # drop(provider);
/// assert_eq!(counter.counts().spans_unexported(), 0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ExportCounter {
    counts: Arc<Counts>,
}

/// A snapshot of an [`ExportCounter`].
///
/// # Examples
///
/// ```
/// let counts = millrace_otel::ExportCounter::new().counts();
/// assert_eq!((counts.spans_ended, counts.spans_unexported()), (0, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportCounts {
    /// Spans ended and handed to the span processor.
    pub spans_ended: u64,
    /// Spans in exports the endpoint accepted.
    pub spans_exported: u64,
    /// Spans in exports that failed.
    pub spans_failed: u64,
    /// Metric exports the endpoint accepted.
    pub metric_exports: u64,
    /// Metric exports that failed.
    pub metric_exports_failed: u64,
}

impl ExportCounts {
    /// Spans ended but not (yet) accepted by the endpoint: still queued, dropped at the full
    /// queue, or in an export that failed.
    ///
    /// # Examples
    ///
    /// ```
    /// let counts = millrace_otel::ExportCounter::new().counts();
    /// assert_eq!(counts.spans_unexported(), 0);
    /// ```
    pub fn spans_unexported(&self) -> u64 {
        self.spans_ended.saturating_sub(self.spans_exported)
    }
}

impl ExportCounter {
    /// A counter with every count at zero.
    ///
    /// # Examples
    ///
    /// ```
    /// let counter = millrace_otel::ExportCounter::new();
    /// assert_eq!(counter.counts().spans_ended, 0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The counts so far.
    ///
    /// # Examples
    ///
    /// ```
    /// let counter = millrace_otel::ExportCounter::new();
    /// let counts = counter.counts();
    /// assert_eq!(counts.metric_exports_failed, 0);
    /// ```
    pub fn counts(&self) -> ExportCounts {
        let c = &self.counts;
        ExportCounts {
            spans_ended: c.spans_ended.load(Ordering::Relaxed),
            spans_exported: c.spans_exported.load(Ordering::Relaxed),
            spans_failed: c.spans_failed.load(Ordering::Relaxed),
            metric_exports: c.metric_exports.load(Ordering::Relaxed),
            metric_exports_failed: c.metric_exports_failed.load(Ordering::Relaxed),
        }
    }

    /// Wraps a span exporter (the one given to the batch span processor) to count the spans
    /// it delivers and those in exports that fail.
    ///
    /// # Examples
    ///
    /// ```
    /// use opentelemetry_sdk::testing::trace::NoopSpanExporter;
    ///
    /// let counter = millrace_otel::ExportCounter::new();
    /// let exporter = counter.span_exporter(NoopSpanExporter::new());
    /// # drop(exporter);
    /// ```
    pub fn span_exporter<E: SpanExporter>(&self, inner: E) -> CountingSpanExporter<E> {
        CountingSpanExporter {
            inner,
            counts: self.counts.clone(),
        }
    }

    /// Wraps the span processor (the batch processor) to count the spans ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use opentelemetry_sdk::testing::trace::NoopSpanExporter;
    /// use opentelemetry_sdk::trace::SimpleSpanProcessor;
    ///
    /// let counter = millrace_otel::ExportCounter::new();
    /// let processor = counter.span_processor(SimpleSpanProcessor::new(NoopSpanExporter::new()));
    /// # drop(processor);
    /// ```
    pub fn span_processor<P: SpanProcessor>(&self, inner: P) -> CountingSpanProcessor<P> {
        CountingSpanProcessor {
            inner,
            counts: self.counts.clone(),
        }
    }

    /// Wraps a push metric exporter (the one given to the periodic reader) to count its
    /// exports by outcome.
    ///
    /// # Examples
    ///
    /// ```
    /// use opentelemetry_sdk::metrics::InMemoryMetricExporter;
    ///
    /// let counter = millrace_otel::ExportCounter::new();
    /// let exporter = counter.metric_exporter(InMemoryMetricExporter::default());
    /// # drop(exporter);
    /// ```
    pub fn metric_exporter<E: PushMetricExporter>(&self, inner: E) -> CountingMetricExporter<E> {
        CountingMetricExporter {
            inner,
            counts: self.counts.clone(),
        }
    }

    /// Publishes the counts as the metrics in the table above on `provider`'s meter. Keep
    /// the returned value for as long as they should be reported.
    ///
    /// # Examples
    ///
    /// ```
    /// use opentelemetry_sdk::metrics::SdkMeterProvider;
    ///
    /// let provider = SdkMeterProvider::builder().build();
    /// let counter = millrace_otel::ExportCounter::new();
    /// let instruments = counter.register(&provider);
    /// # drop(instruments);
    /// ```
    pub fn register(&self, provider: &impl MeterProvider) -> ExportCounterInstruments {
        let meter = provider.meter_with_scope(scope());
        let span_counter =
            |name: &'static str, description: &'static str, pick: fn(&Counts) -> &AtomicU64| {
                let counts = self.counts.clone();
                meter
                    .u64_observable_counter(name)
                    .with_description(description)
                    .with_unit("{span}")
                    .with_callback(move |o| o.observe(pick(&counts).load(Ordering::Relaxed), &[]))
                    .build()
            };
        let counters = vec![
            span_counter(
                "millrace.telemetry.spans.ended",
                "Spans ended and handed to the span processor",
                |c| &c.spans_ended,
            ),
            span_counter(
                "millrace.telemetry.spans.exported",
                "Spans the exporter's endpoint accepted",
                |c| &c.spans_exported,
            ),
            span_counter(
                "millrace.telemetry.spans.failed",
                "Spans in exports that failed",
                |c| &c.spans_failed,
            ),
            {
                let counts = self.counts.clone();
                meter
                    .u64_observable_counter("millrace.telemetry.metric_exports")
                    .with_description("Metric exports, by outcome")
                    .with_unit("{export}")
                    .with_callback(move |o| {
                        o.observe(
                            counts.metric_exports.load(Ordering::Relaxed),
                            &[KeyValue::new("status", "ok")],
                        );
                        o.observe(
                            counts.metric_exports_failed.load(Ordering::Relaxed),
                            &[KeyValue::new("status", "error")],
                        );
                    })
                    .build()
            },
        ];
        let counts = self.counts.clone();
        let unexported = meter
            .u64_observable_gauge("millrace.telemetry.spans.unexported")
            .with_description(
                "Spans ended but not accepted by the endpoint: queued, dropped or failed",
            )
            .with_unit("{span}")
            .with_callback(move |o| {
                let ended = counts.spans_ended.load(Ordering::Relaxed);
                let exported = counts.spans_exported.load(Ordering::Relaxed);
                o.observe(ended.saturating_sub(exported), &[]);
            })
            .build();
        ExportCounterInstruments {
            _counters: counters,
            _unexported: unexported,
        }
    }
}

/// The instruments [`ExportCounter::register`] publishes; they report while this is kept.
///
/// # Examples
///
/// ```
/// let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder().build();
/// let _instruments = millrace_otel::ExportCounter::new().register(&provider);
/// ```
#[derive(Debug)]
pub struct ExportCounterInstruments {
    _counters: Vec<ObservableCounter<u64>>,
    _unexported: ObservableGauge<u64>,
}

/// A span processor that counts the spans ended; made by [`ExportCounter::span_processor`].
///
/// # Examples
///
/// ```
/// use opentelemetry_sdk::testing::trace::NoopSpanExporter;
/// use opentelemetry_sdk::trace::SimpleSpanProcessor;
///
/// let counter = millrace_otel::ExportCounter::new();
/// let _processor = counter.span_processor(SimpleSpanProcessor::new(NoopSpanExporter::new()));
/// ```
#[derive(Debug)]
pub struct CountingSpanProcessor<P> {
    inner: P,
    counts: Arc<Counts>,
}

impl<P: SpanProcessor> SpanProcessor for CountingSpanProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        // Counted before the inner processor sees it: a span it drops at a full queue is
        // then counted as ended and never as exported.
        self.counts.spans_ended.fetch_add(1, Ordering::Relaxed);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A span exporter that counts the spans it delivers and those it fails to; made by
/// [`ExportCounter::span_exporter`].
///
/// # Examples
///
/// ```
/// use opentelemetry_sdk::testing::trace::NoopSpanExporter;
///
/// let counter = millrace_otel::ExportCounter::new();
/// let _exporter = counter.span_exporter(NoopSpanExporter::new());
/// ```
#[derive(Debug)]
pub struct CountingSpanExporter<E> {
    inner: E,
    counts: Arc<Counts>,
}

impl<E: SpanExporter> SpanExporter for CountingSpanExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let len = batch.len() as u64;
        let result = self.inner.export(batch).await;
        let counter = if result.is_ok() {
            &self.counts.spans_exported
        } else {
            &self.counts.spans_failed
        };
        counter.fetch_add(len, Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A push metric exporter that counts its exports by outcome; made by
/// [`ExportCounter::metric_exporter`].
///
/// # Examples
///
/// ```
/// use opentelemetry_sdk::metrics::InMemoryMetricExporter;
///
/// let counter = millrace_otel::ExportCounter::new();
/// let _exporter = counter.metric_exporter(InMemoryMetricExporter::default());
/// ```
#[derive(Debug)]
pub struct CountingMetricExporter<E> {
    inner: E,
    counts: Arc<Counts>,
}

impl<E: PushMetricExporter> PushMetricExporter for CountingMetricExporter<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        let counter = if result.is_ok() {
            &self.counts.metric_exports
        } else {
            &self.counts.metric_exports_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}
