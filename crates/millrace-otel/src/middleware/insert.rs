//! The insert middleware: a producer span and otelriver's insert metrics for each batch,
//! and the trace context carried into each job's metadata.

use std::time::Instant;

use millrace::{BoxFuture, InsertMiddleware, InsertNext, InsertParams, InsertResult};
use opentelemetry::trace::{FutureExt as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};

use super::{Inner, OtelMiddleware, status_attr};
use crate::propagation::inject_trace_context;

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
