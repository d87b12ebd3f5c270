//! The core's `tracing` spans, as a subscriber sees them: one `job` span per execution with
//! the worker's own events inside and its outcome and duration recorded as it ends, and spans
//! for inserts and fetch batches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace::{EventKind, InsertManyParams, InsertOpts};
use millrace_test::TestDb;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use crate::common::{Mode, Task, outcomes, worker_client};

#[derive(Debug, Default, Clone)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

#[derive(Default)]
struct Captured {
    /// (span name, its fields when it closed)
    closed: Vec<(String, Fields)>,
    /// (event's fields, the name and fields of the span it happened in)
    events: Vec<(Fields, Option<(String, Fields)>)>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Captured>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        ctx.span(id).unwrap().extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut extensions = span.extensions_mut();
        values.record(extensions.get_mut::<Fields>().unwrap());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let span = ctx.event_span(event).map(|span| {
            let extensions = span.extensions();
            (
                span.name().to_owned(),
                extensions.get::<Fields>().cloned().unwrap_or_default(),
            )
        });
        self.0.lock().unwrap().events.push((fields, span));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let fields = span
            .extensions()
            .get::<Fields>()
            .cloned()
            .unwrap_or_default();
        self.0
            .lock()
            .unwrap()
            .closed
            .push((span.name().to_owned(), fields));
    }
}

// A current-thread runtime, so the subscriber set for this thread sees every task's spans.
#[tokio::test]
async fn each_job_runs_in_a_span_that_records_its_outcome() {
    let capture = Capture::default();
    let _guard = tracing_subscriber::registry()
        .with(capture.clone())
        .set_default();
    let db = TestDb::new().await;
    let client = worker_client(&db, |b| b);
    let mut events = client.subscribe();
    let ok = client
        .insert(
            Task {
                mode: Mode::Succeed,
            },
            None,
        )
        .await
        .unwrap()
        .job;
    let batch = client
        .insert_many([
            InsertManyParams::new(Task { mode: Mode::Fail }),
            InsertManyParams::new(Task { mode: Mode::Fail })
                .opts(InsertOpts::new().max_attempts(1)),
            InsertManyParams::new(Task { mode: Mode::Cancel }),
            InsertManyParams::new(Task { mode: Mode::Snooze }),
        ])
        .await
        .unwrap();
    let ids: Vec<_> = std::iter::once(ok.id)
        .chain(batch.iter().map(|r| r.job.id))
        .collect();
    client.start().await.unwrap();
    let seen = outcomes(&mut events, &ids, Duration::from_secs(15)).await;
    client.stop().await.unwrap();
    assert_eq!(seen[&ok.id], EventKind::JobCompleted);

    let captured = capture.0.lock().unwrap();
    let job_span = |id: millrace::JobId| {
        captured
            .closed
            .iter()
            .find(|(name, f)| name == "job" && f.0.get("job_id") == Some(&id.0.to_string()))
            .map(|(_, f)| f.0.clone())
            .unwrap_or_else(|| panic!("no closed job span for {id:?}"))
    };
    let expected = [
        (ok.id, "completed"),
        (batch[0].job.id, "retryable"),
        (batch[1].job.id, "discarded"),
        (batch[2].job.id, "cancelled"),
        (batch[3].job.id, "snoozed"),
    ];
    for (id, outcome) in expected {
        let fields = job_span(id);
        assert_eq!(
            fields.get("outcome").map(String::as_str),
            Some(outcome),
            "{fields:?}"
        );
        assert_eq!(fields.get("kind").map(String::as_str), Some("otel_task"));
        assert_eq!(fields.get("queue").map(String::as_str), Some("default"));
        assert_eq!(fields.get("attempt").map(String::as_str), Some("1"));
        let ms: f64 = fields["duration_ms"].parse().unwrap();
        assert!((0.0..15_000.0).contains(&ms), "{ms}");
    }
    // The worker's own event is inside its job's span.
    let (_, span) = captured
        .events
        .iter()
        .find(|(f, _)| f.0.get("message").is_some_and(|m| m == "working the task"))
        .expect("the worker's event");
    let (name, fields) = span.as_ref().expect("the event is inside a span");
    assert_eq!(name, "job");
    assert!(fields.0.contains_key("job_id"));

    let insert = captured
        .closed
        .iter()
        .find(|(n, _)| n == "insert")
        .expect("an insert span");
    assert_eq!(
        insert.1.0.get("kind").map(String::as_str),
        Some("otel_task")
    );
    assert!(
        captured
            .closed
            .iter()
            .any(|(n, f)| n == "insert_many" && f.0.get("count").map(String::as_str) == Some("4")),
        "an insert_many span counting its batch"
    );
    assert!(
        captured
            .closed
            .iter()
            .any(|(n, f)| n == "fetch" && f.0.get("fetched").is_some_and(|c| c != "0")),
        "a fetch span for each batch, recording what it fetched"
    );
}
