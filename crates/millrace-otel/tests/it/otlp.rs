//! Spans and metrics exported over OTLP/HTTP to a receiver the test runs, and trace context
//! carried from an insert on one client to the work on another.

use std::time::{Duration, Instant};

use millrace::{Client, EventKind, InsertManyParams, InsertOpts};
use millrace_otel::{ClientBuilderExt, ExportCounter, ExportCounterInstruments, OtelMiddleware};
use millrace_test::TestDb;
use opentelemetry::Context;
use opentelemetry::trace::{
    FutureExt as _, SpanKind, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig as _};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use serde_json::json;

use crate::common::{Mode, Task, outcomes, worker_client};
use crate::receiver::Receiver;

/// Providers exporting to `base` over OTLP/HTTP with protobuf bodies: spans through the SDK's
/// batch processor with a queue of `queue` spans, metrics every 200 ms; `counter` counts what
/// reaches the endpoint and publishes its counts on the meter provider (keep the instruments).
fn providers(
    base: &str,
    queue: usize,
    timeout: Duration,
    counter: &ExportCounter,
) -> (
    SdkTracerProvider,
    SdkMeterProvider,
    ExportCounterInstruments,
) {
    let spans = SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{base}/v1/traces"))
        .with_timeout(timeout)
        .build()
        .unwrap();
    let processor = BatchSpanProcessor::builder(counter.span_exporter(spans))
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(queue)
                .with_scheduled_delay(Duration::from_millis(100))
                .build(),
        )
        .build();
    let tracer_provider = SdkTracerProvider::builder()
        .with_span_processor(counter.span_processor(processor))
        .build();
    let metrics = MetricExporter::builder()
        .with_http()
        .with_endpoint(format!("{base}/v1/metrics"))
        .with_timeout(timeout)
        .build()
        .unwrap();
    let reader = PeriodicReader::builder(counter.metric_exporter(metrics))
        .with_interval(Duration::from_millis(200))
        .build();
    let meter_provider = SdkMeterProvider::builder().with_reader(reader).build();
    let instruments = counter.register(&meter_provider);
    (tracer_provider, meter_provider, instruments)
}

/// Flushes and shuts both providers down off the runtime: their exporters block.
async fn shutdown(tracer_provider: SdkTracerProvider, meter_provider: SdkMeterProvider) {
    tokio::task::spawn_blocking(move || {
        let _ = tracer_provider.force_flush();
        let _ = meter_provider.force_flush();
        let _ = tracer_provider.shutdown();
        let _ = meter_provider.shutdown();
    })
    .await
    .unwrap();
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn attr_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key) {
        Some(any_value::Value::IntValue(n)) => Some(*n),
        _ => None,
    }
}

fn attr_bool(attrs: &[KeyValue], key: &str) -> Option<bool> {
    match attr(attrs, key) {
        Some(any_value::Value::BoolValue(b)) => Some(*b),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The newest export of the metric named `name` (exports are cumulative).
fn latest<'a>(metrics: &'a [Metric], name: &str) -> Option<&'a Metric> {
    metrics.iter().rev().find(|m| m.name == name)
}

/// The sum of a counter's data points whose attributes pass `filter`.
fn counter_sum(metric: &Metric, filter: impl Fn(&[KeyValue]) -> bool) -> i64 {
    let Some(metric::Data::Sum(sum)) = &metric.data else {
        panic!("{} is not a sum: {:?}", metric.name, metric.data);
    };
    assert!(sum.is_monotonic, "{} is a monotonic counter", metric.name);
    sum.data_points
        .iter()
        .filter(|p| filter(&p.attributes))
        .map(|p| match p.value {
            Some(number_data_point::Value::AsInt(n)) => n,
            Some(number_data_point::Value::AsDouble(x)) => x as i64,
            None => 0,
        })
        .sum()
}

fn histogram_count(metric: &Metric, filter: impl Fn(&[KeyValue]) -> bool) -> u64 {
    let Some(metric::Data::Histogram(histogram)) = &metric.data else {
        panic!("{} is not a histogram: {:?}", metric.name, metric.data);
    };
    histogram
        .data_points
        .iter()
        .filter(|p| filter(&p.attributes))
        .map(|p| p.count)
        .sum()
}

fn work_span_of(spans: &[Span], id: millrace::JobId) -> &Span {
    spans
        .iter()
        .find(|s| s.name.starts_with("river.work") && attr_int(&s.attributes, "id") == Some(id.0))
        .unwrap_or_else(|| panic!("no work span for job {id:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_metrics_and_trace_context_reach_an_otlp_receiver() {
    let receiver = Receiver::start().await;
    let base = receiver.endpoint("");
    let counter = ExportCounter::new();
    let (tracer_provider, meter_provider, _instruments) =
        providers(&base, 2048, Duration::from_secs(5), &counter);
    let db = TestDb::new().await;
    let otel = OtelMiddleware::builder()
        .meter_provider(&meter_provider)
        .tracer_provider(&tracer_provider)
        .build();
    // An insert-only client (a web process) and a worker client: the trace crosses clients
    // only through the job's row.
    let producer = Client::builder(db.driver())
        .opentelemetry(otel.clone())
        .build()
        .unwrap();
    let consumer = worker_client(&db, |b| b.opentelemetry(otel.clone()));
    // A producer without the middleware, as a River client without otelriver, writing a
    // traceparent that does not parse.
    let plain = Client::builder(db.driver()).build().unwrap();

    let tracer = tracer_provider.tracer("test");
    let request = tracer
        .span_builder("http.request")
        .with_kind(SpanKind::Server)
        .start(&tracer);
    let request_cx = Context::current_with_span(request);
    let traced = producer
        .insert(
            Task {
                mode: Mode::Succeed,
            },
            None,
        )
        .with_context(request_cx.clone())
        .await
        .unwrap()
        .job;
    request_cx.span().end();
    let request_trace = request_cx.span().span_context().trace_id().to_string();
    let batch = producer
        .insert_many([
            InsertManyParams::new(Task { mode: Mode::Fail })
                .opts(InsertOpts::new().max_attempts(1)),
            InsertManyParams::new(Task { mode: Mode::Cancel }),
            InsertManyParams::new(Task { mode: Mode::Snooze }),
        ])
        .await
        .unwrap();
    let malformed = plain
        .insert(
            Task {
                mode: Mode::Succeed,
            },
            Some(InsertOpts::new().metadata(json!({
                "traceparent": "00-this-is-not-a-trace-01",
                "tracestate": "vendor=1",
            }))),
        )
        .await
        .unwrap()
        .job;

    let traceparent = traced.metadata["traceparent"]
        .as_str()
        .expect("traceparent stored");
    assert!(
        traceparent.starts_with(&format!("00-{request_trace}-")),
        "the job carries the request's trace: {traceparent}"
    );
    let (failed, cancelled, snoozed) = (batch[0].job.id, batch[1].job.id, batch[2].job.id);

    let mut events = consumer.subscribe();
    consumer.start().await.unwrap();
    let ids = [traced.id, failed, cancelled, snoozed, malformed.id];
    let seen = outcomes(&mut events, &ids, Duration::from_secs(15)).await;
    consumer.stop().await.unwrap();
    assert_eq!(seen[&traced.id], EventKind::JobCompleted);
    assert_eq!(
        seen[&malformed.id],
        EventKind::JobCompleted,
        "a malformed traceparent is worked normally"
    );
    assert_eq!(seen[&failed], EventKind::JobFailed);
    assert_eq!(seen[&cancelled], EventKind::JobCancelled);
    assert_eq!(seen[&snoozed], EventKind::JobSnoozed);

    let spans = receiver
        .wait_spans(Duration::from_secs(15), |spans| {
            spans
                .iter()
                .filter(|s| s.name == "river.work/otel_task")
                .count()
                >= 5
                && spans
                    .iter()
                    .filter(|s| s.name == "river.insert_many")
                    .count()
                    >= 2
        })
        .await;

    // The insert: a producer span, child of the request that made it.
    let request_span = spans
        .iter()
        .find(|s| s.name == "http.request")
        .expect("request span");
    let insert = spans
        .iter()
        .find(|s| s.name == "river.insert_many" && s.parent_span_id == request_span.span_id)
        .expect("the insert's span is a child of the request's");
    assert_eq!(insert.kind, span::SpanKind::Producer as i32);
    assert_eq!(hex(&insert.trace_id), request_trace);
    assert_eq!(attr_str(&insert.attributes, "status"), Some("ok"));
    assert_eq!(
        traceparent,
        format!("00-{request_trace}-{}-01", hex(&insert.span_id)),
        "the metadata names the insert's span"
    );

    // The work: a consumer span in a trace of its own, linked to the insert (otelriver's
    // choice: a link, not a parent).
    let work = work_span_of(&spans, traced.id);
    assert_eq!(work.kind, span::SpanKind::Consumer as i32);
    assert!(
        work.parent_span_id.is_empty(),
        "a root span, not a child of the insert"
    );
    assert_ne!(hex(&work.trace_id), request_trace);
    assert_eq!(work.links.len(), 1, "{:?}", work.links);
    assert_eq!(work.links[0].trace_id, insert.trace_id);
    assert_eq!(work.links[0].span_id, insert.span_id);
    assert_eq!(
        work.status.as_ref().unwrap().code,
        status::StatusCode::Ok as i32
    );
    assert_eq!(attr_str(&work.attributes, "kind"), Some("otel_task"));
    assert_eq!(attr_str(&work.attributes, "queue"), Some("default"));
    assert_eq!(attr_int(&work.attributes, "attempt"), Some(1));
    assert_eq!(attr_int(&work.attributes, "priority"), Some(1));
    assert!(attr_str(&work.attributes, "created_at").is_some());

    let fresh = work_span_of(&spans, malformed.id);
    assert!(
        fresh.links.is_empty(),
        "no link from a malformed traceparent"
    );
    assert!(fresh.parent_span_id.is_empty());
    assert_eq!(fresh.trace_id.len(), 16);

    let fail = work_span_of(&spans, failed);
    assert_eq!(
        fail.status.as_ref().unwrap().code,
        status::StatusCode::Error as i32
    );
    assert_eq!(attr_str(&fail.attributes, "status"), Some("error"));
    let cancel = work_span_of(&spans, cancelled);
    assert_eq!(attr_bool(&cancel.attributes, "cancel"), Some(true));
    assert_eq!(attr_str(&cancel.attributes, "status"), Some("error"));
    let snooze = work_span_of(&spans, snoozed);
    assert_eq!(attr_bool(&snooze.attributes, "snooze"), Some(true));
    assert_eq!(
        attr_str(&snooze.attributes, "status"),
        Some("ok"),
        "a snooze is not a failure"
    );

    let metrics = receiver
        .wait_metrics(Duration::from_secs(15), |metrics| {
            latest(metrics, "river.work_count").is_some_and(|m| counter_sum(m, |_| true) >= 5)
                && latest(metrics, "river.job_get_available_duration").is_some()
                && latest(metrics, "river.insert_many_count")
                    .is_some_and(|m| counter_sum(m, |_| true) >= 2)
                && latest(metrics, "millrace.telemetry.spans.exported")
                    .is_some_and(|m| counter_sum(m, |_| true) > 0)
                // An export counts only once it has ended, so the first export that carries
                // everything above can still say none succeeded: wait for a later one.
                && latest(metrics, "millrace.telemetry.metric_exports")
                    .is_some_and(|m| counter_sum(m, |a| attr_str(a, "status") == Some("ok")) > 0)
        })
        .await;
    let exported = latest(&metrics, "millrace.telemetry.spans.exported").unwrap();
    assert_eq!(exported.unit, "{span}");
    let exports = latest(&metrics, "millrace.telemetry.metric_exports").unwrap();
    assert!(counter_sum(exports, |a| attr_str(a, "status") == Some("ok")) > 0);
    let work_count = latest(&metrics, "river.work_count").unwrap();
    assert_eq!(work_count.unit, "{job}");
    assert_eq!(counter_sum(work_count, |_| true), 5);
    assert_eq!(
        counter_sum(work_count, |a| {
            attr_str(a, "kind") == Some("otel_task")
                && attr_str(a, "queue") == Some("default")
                && attr_str(a, "status") == Some("ok")
                && attr_int(a, "attempt") == Some(1)
                && attr_int(a, "priority") == Some(1)
                && attr(a, "tag").is_some()
                && attr_bool(a, "snooze").is_none()
        }),
        2,
        "the two completed jobs"
    );
    assert_eq!(
        counter_sum(work_count, |a| attr_str(a, "status") == Some("error")),
        2
    );
    let histogram = latest(&metrics, "river.work_duration_histogram").unwrap();
    assert_eq!(histogram.unit, "s");
    assert_eq!(histogram_count(histogram, |_| true), 5);
    let inserted = latest(&metrics, "river.insert_count").unwrap();
    assert_eq!(inserted.unit, "{job}");
    assert_eq!(
        counter_sum(inserted, |a| attr_bool(a, "unique_skipped_as_duplicate")
            == Some(false)
            && attr_str(a, "status") == Some("ok")),
        4
    );
    let batches = latest(&metrics, "river.insert_many_count").unwrap();
    assert_eq!(batches.unit, "{job_batch}");
    assert_eq!(counter_sum(batches, |_| true), 2);
    let insert_duration = latest(&metrics, "river.insert_many_duration_histogram").unwrap();
    assert_eq!(insert_duration.unit, "s");
    assert_eq!(histogram_count(insert_duration, |_| true), 2);
    let fetch = latest(&metrics, "river.job_get_available_duration").unwrap();
    assert_eq!(fetch.unit, "s");
    assert!(histogram_count(fetch, |a| attr_str(a, "queue") == Some("default")) >= 1);
    let fetched = latest(&metrics, "river.job_get_available_count").expect("fetch counts");
    assert_eq!(fetched.unit, "{job}");

    shutdown(tracer_provider, meter_provider).await;
    // A receiver that answers loses nothing: once flushed, every span ended was delivered.
    let counts = counter.counts();
    assert!(counts.spans_ended >= 5, "{counts:?}");
    assert_eq!(counts.spans_exported, counts.spans_ended, "{counts:?}");
    assert_eq!(
        (counts.spans_failed, counts.spans_unexported()),
        (0, 0),
        "{counts:?}"
    );
    assert_eq!(counts.metric_exports_failed, 0, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exporter_that_hangs_never_slows_work() {
    // Accepts connections and never answers: the worst an exporter's endpoint can do.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", black_hole.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        // Bounded: the test ends long before this many connections.
        for _ in 0..1_000 {
            match black_hole.accept().await {
                Ok((socket, _)) => sockets.push(socket),
                Err(_) => break,
            }
        }
    });
    // A small span queue, so most spans are dropped rather than buffered.
    let counter = ExportCounter::new();
    let (tracer_provider, meter_provider, _instruments) =
        providers(&base, 32, Duration::from_secs(1), &counter);
    let db = TestDb::new().await;
    let otel = OtelMiddleware::builder()
        .meter_provider(&meter_provider)
        .tracer_provider(&tracer_provider)
        .build();
    let client = worker_client(&db, |b| b.opentelemetry(otel));
    const JOBS: usize = 500;
    let inserted = client
        .insert_many((0..JOBS).map(|_| {
            InsertManyParams::new(Task {
                mode: Mode::Succeed,
            })
        }))
        .await
        .unwrap();
    let ids: Vec<_> = inserted.iter().map(|r| r.job.id).collect();
    let mut events = client.subscribe();
    let started = Instant::now();
    client.start().await.unwrap();
    // 500 trivial jobs take well under a second here; the exporter's 1 s timeout per attempt
    // would show many times over if any export were on the jobs' path.
    let seen = outcomes(&mut events, &ids, Duration::from_secs(10)).await;
    let took = started.elapsed();
    client.stop().await.unwrap();
    assert!(seen.values().all(|k| *k == EventKind::JobCompleted));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    held.abort();
    shutdown(tracer_provider, meter_provider).await;
    // Nothing reached the endpoint, and the loss is counted: one work span per job ended,
    // none delivered, and more than a 32-span queue holds was dropped at the queue rather
    // than in a failed export.
    let counts = counter.counts();
    assert!(counts.spans_ended >= JOBS as u64, "{counts:?}");
    assert_eq!(counts.spans_exported, 0, "{counts:?}");
    assert_eq!(counts.spans_unexported(), counts.spans_ended, "{counts:?}");
    assert!(
        counts.spans_unexported() - counts.spans_failed > 32,
        "spans dropped at the full queue are counted: {counts:?}"
    );
    assert_eq!(counts.metric_exports, 0, "{counts:?}");
}

/// Inserts by the COPY path (`insert_many_fast`), which runs no insert middleware, are
/// counted under the same metrics as any other batch (issue 16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_inserts_are_counted_like_other_batches() {
    let receiver = Receiver::start().await;
    let base = receiver.endpoint("");
    let counter = ExportCounter::new();
    let (tracer_provider, meter_provider, _instruments) =
        providers(&base, 2048, Duration::from_secs(5), &counter);
    let db = TestDb::new().await;
    let otel = OtelMiddleware::builder()
        .meter_provider(&meter_provider)
        .tracer_provider(&tracer_provider)
        .build();
    let client = Client::builder(db.driver())
        .opentelemetry(otel)
        .build()
        .unwrap();
    const JOBS: i64 = 300;
    let stored = client
        .insert_many_fast((0..JOBS).map(|_| {
            InsertManyParams::new(Task {
                mode: Mode::Succeed,
            })
        }))
        .await
        .unwrap();
    assert_eq!(stored, JOBS as u64);
    let metrics = receiver
        .wait_metrics(Duration::from_secs(15), |metrics| {
            latest(metrics, "river.insert_many_count").is_some()
                && latest(metrics, "river.insert_count").is_some()
        })
        .await;
    let inserted = latest(&metrics, "river.insert_count").unwrap();
    assert_eq!(
        counter_sum(inserted, |a| attr_bool(a, "unique_skipped_as_duplicate")
            == Some(false)
            && attr_str(a, "status") == Some("ok")),
        JOBS
    );
    let batches = latest(&metrics, "river.insert_many_count").unwrap();
    assert_eq!(
        counter_sum(batches, |a| attr_str(a, "status") == Some("ok")),
        1
    );
    let duration = latest(&metrics, "river.insert_many_duration_histogram").unwrap();
    assert_eq!(histogram_count(duration, |_| true), 1);
    shutdown(tracer_provider, meter_provider).await;
}
