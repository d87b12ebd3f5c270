//! Runs `examples/opentelemetry.rs` against a test schema and a receiver the test runs.

use std::time::Duration;

use millrace_test::TestDb;

use crate::receiver::Receiver;

#[path = "../../../../examples/opentelemetry.rs"]
#[allow(dead_code, unreachable_pub)]
mod opentelemetry_example;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opentelemetry_example_exports_its_trace() {
    let receiver = Receiver::start().await;
    let db = TestDb::new().await;
    let (tracer_provider, meter_provider) =
        opentelemetry_example::providers(&receiver.endpoint("/")).unwrap();
    let trace_id = opentelemetry_example::run(
        db.pool().clone(),
        db.schema().clone(),
        &tracer_provider,
        &meter_provider,
    )
    .await
    .unwrap_or_else(|err| panic!("the example's scenario failed: {err}"));
    opentelemetry_example::shutdown(tracer_provider, meter_provider)
        .await
        .unwrap();
    let spans = receiver
        .wait_spans(Duration::from_secs(10), |spans| {
            ["checkout", "river.insert_many", "river.work/send_receipt"]
                .iter()
                .all(|name| spans.iter().any(|s| s.name == *name))
        })
        .await;
    let work = spans
        .iter()
        .find(|s| s.name == "river.work/send_receipt")
        .unwrap();
    let linked: String = work.links[0]
        .trace_id
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(linked, trace_id, "the work links to the checkout's trace");
    receiver
        .wait_metrics(Duration::from_secs(10), |metrics| {
            metrics.iter().any(|m| m.name == "river.work_count")
        })
        .await;
}
