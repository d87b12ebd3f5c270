//! OpenTelemetry under River's `otelriver` names: spans and metrics exported over OTLP/HTTP to
//! the collector `OTEL_EXPORTER_OTLP_ENDPOINT` names (`http://localhost:4318` when unset), and
//! a trace that runs from the request that inserted a job to the worker that ran it.
//!
//! ```text
//! docker run -p 4318:4318 otel/opentelemetry-collector   # or Jaeger, or any OTLP receiver
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 cargo run -p millrace-otel --example opentelemetry
//! ```
//!
//! The collector receives a `checkout` span with a `river.insert_many` producer span inside,
//! a `river.work/send_receipt` consumer span linked to that insert, and the metrics
//! `river.insert_count`, `river.work_count`, `river.work_duration_histogram` and
//! `river.job_get_available_duration`, among others.

use std::error::Error;
use std::time::Duration;

use millrace::{
    Client, Event, EventKind, Job, JobArgs, MigrateOpts, Migrator, QUEUE_DEFAULT, QueueConfig,
    Schema, WorkError, Worker, Workers,
};
use millrace_otel::{ClientBuilderExt, OtelMiddleware};
use millrace_postgres::PgDriver;
use opentelemetry::Context;
use opentelemetry::trace::{
    FutureExt as _, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgPool};

/// The database used when `DATABASE_URL` is unset.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The OTLP/HTTP endpoint used when `OTEL_EXPORTER_OTLP_ENDPOINT` is unset (the standard
/// default).
const DEFAULT_OTLP_ENDPOINT: &str = "http://localhost:4318";

/// The longest the example waits for the job's outcome.
const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize, Deserialize)]
struct SendReceipt {
    order_id: i64,
}

impl JobArgs for SendReceipt {
    const KIND: &'static str = "send_receipt";
}

struct SendReceiptWorker;

impl Worker for SendReceiptWorker {
    type Args = SendReceipt;

    async fn work(&self, job: Job<SendReceipt>) -> Result<(), WorkError> {
        // Runs inside the job's `river.work/send_receipt` span: a span started here (by an
        // HTTP client's instrumentation, say) is its child.
        let cx = Context::current();
        println!(
            "  worker: receipt for order {} in span {}",
            job.args.order_id,
            cx.span().span_context().span_id()
        );
        Ok(())
    }
}

/// Tracer and meter providers exporting to the OTLP/HTTP endpoint `base` (protobuf bodies,
/// `/v1/traces` and `/v1/metrics`), each in batches on its own thread: an endpoint that is
/// down costs dropped telemetry, never a slower job.
pub fn providers(base: &str) -> Result<(SdkTracerProvider, SdkMeterProvider), Box<dyn Error>> {
    let base = base.trim_end_matches('/');
    let spans = SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{base}/v1/traces"))
        .build()?;
    let tracer_provider = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .build();
    let metrics = MetricExporter::builder()
        .with_http()
        .with_endpoint(format!("{base}/v1/metrics"))
        .build()?;
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(metrics)
                .with_interval(Duration::from_secs(5))
                .build(),
        )
        .build();
    Ok((tracer_provider, meter_provider))
}

/// The scenario: a checkout inserts a job inside its span; the job is worked in a span linked
/// to that insert. Returns the checkout's trace id.
pub async fn run(
    pool: PgPool,
    schema: Schema,
    tracer_provider: &SdkTracerProvider,
    meter_provider: &SdkMeterProvider,
) -> Result<String, Box<dyn Error>> {
    let otel = OtelMiddleware::builder()
        .tracer_provider(tracer_provider)
        .meter_provider(meter_provider)
        .build();
    let mut workers = Workers::new();
    workers.register(SendReceiptWorker)?;
    let client = Client::builder(PgDriver::new(pool).with_schema(schema))
        .workers(workers)
        .queue(QUEUE_DEFAULT, QueueConfig::new())
        .fetch_cooldown(Duration::from_millis(10))
        .opentelemetry(otel)
        .build()?;
    let mut events = client.subscribe();
    client.start().await?;

    // A request's span, as a web framework's instrumentation would start it.
    let tracer = tracer_provider.tracer("shop");
    let checkout = Context::current_with_span(tracer.start("checkout"));
    let trace_id = checkout.span().span_context().trace_id().to_string();
    let job = client
        .insert(SendReceipt { order_id: 42 }, None)
        .with_context(checkout.clone())
        .await?
        .job;
    checkout.span().end();
    println!("checkout trace {trace_id}: inserted job {}", job.id);
    println!(
        "  traceparent in the job's metadata: {}",
        job.metadata["traceparent"]
    );
    let carried = job.metadata["traceparent"].as_str().unwrap_or_default();
    if !carried.contains(&trace_id) {
        return Err(format!("the job does not carry the checkout's trace: {carried:?}").into());
    }

    let outcome = tokio::time::timeout(DEADLINE, async {
        loop {
            match events.recv().await {
                Ok(Event::Job { kind, job: row, .. }) if row.id == job.id => return Ok(kind),
                Ok(_) => {}
                Err(err) => return Err(err),
            }
        }
    })
    .await
    .map_err(|_| "the job did not finish in time")??;
    client.stop().await?;
    if outcome != EventKind::JobCompleted {
        return Err(format!("the job ended {outcome:?}").into());
    }
    println!("worked job {}: completed", job.id);
    Ok(trace_id)
}

/// Flushes what is buffered and stops the exporters. They block on their HTTP calls, so this
/// runs off the async runtime's threads.
pub async fn shutdown(
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
) -> Result<(), Box<dyn Error>> {
    tokio::task::spawn_blocking(move || {
        let traces = tracer_provider.shutdown();
        let metrics = meter_provider.shutdown();
        if let Err(err) = traces.and(metrics) {
            // Telemetry that could not be delivered is dropped, never retried forever.
            eprintln!("telemetry not delivered: {err}");
        }
    })
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .unwrap_or_else(|_| DEFAULT_OTLP_ENDPOINT.to_owned());
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let pool = PgPool::connect(&url).await?;
    let schema = Schema::new("millrace_example_opentelemetry")?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{}\"",
        schema.name()
    )))
    .execute(&pool)
    .await?;
    Migrator::new(PgDriver::new(pool.clone()).with_schema(schema.clone()))
        .migrate_up(MigrateOpts::default())
        .await?;
    sqlx::query(AssertSqlSafe(format!(
        "TRUNCATE {}",
        schema.qualify("river_job")
    )))
    .execute(&pool)
    .await?;
    println!("exporting to {endpoint}");
    let (tracer_provider, meter_provider) = providers(&endpoint)?;
    let result = run(pool, schema, &tracer_provider, &meter_provider).await;
    shutdown(tracer_provider, meter_provider).await?;
    result?;
    println!("ok");
    Ok(())
}
