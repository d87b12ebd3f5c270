//! The work middleware: a consumer span linked to the inserter's trace, and otelriver's
//! work metrics for each job.

use std::borrow::Cow;
use std::time::Instant;

use millrace::{BoxFuture, JobRow, WorkError, WorkMiddleware, WorkNext};
use opentelemetry::trace::{
    FutureExt as _, Link, SpanKind, Status, TraceContextExt as _, Tracer as _,
};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};

use super::{Inner, OtelMiddleware, status_attr};
use crate::propagation::extract_trace_context;

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
