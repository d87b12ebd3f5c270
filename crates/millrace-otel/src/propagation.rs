//! W3C trace context (`traceparent`, `tracestate`) carried as top-level keys of a job's
//! metadata, where River's `otelriver` writes and reads it.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The metadata key holding the W3C `traceparent` header's value.
pub const METADATA_TRACEPARENT: &str = "traceparent";
/// The metadata key holding the W3C `tracestate` header's value.
pub const METADATA_TRACESTATE: &str = "tracestate";

/// Writes `cx`'s span context into `metadata` (a JSON object's text) as `traceparent` and,
/// when not empty, `tracestate`. Metadata that is not a JSON object, or a context without a
/// valid span, is left as it was: propagation never fails an insert.
///
/// ```
/// use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
///
/// let span = SpanContext::new(
///     TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
///     SpanId::from_hex("00f067aa0ba902b7").unwrap(),
///     TraceFlags::SAMPLED,
///     true,
///     TraceState::default(),
/// );
/// let cx = opentelemetry::Context::new().with_remote_span_context(span);
/// let mut metadata = r#"{"origin":"billing"}"#.to_owned();
/// millrace_otel::inject_trace_context(&cx, &mut metadata);
/// let value: serde_json::Value = serde_json::from_str(&metadata).unwrap();
/// assert_eq!(value["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert_eq!(value["origin"], "billing");
/// ```
pub fn inject_trace_context(cx: &Context, metadata: &mut String) {
    if !cx.span().span_context().is_valid() {
        return;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    if carrier.is_empty() {
        return;
    }
    let Ok(serde_json::Value::Object(mut map)) =
        serde_json::from_str::<serde_json::Value>(metadata)
    else {
        return;
    };
    for (key, value) in carrier {
        map.insert(key, serde_json::Value::String(value));
    }
    *metadata = serde_json::Value::Object(map).to_string();
}

/// Reads the span context a job's metadata carries. `None` when there is none, or when
/// `traceparent` is malformed (wrong version, length, hex, all-zero ids): such a job is worked
/// normally, in a trace of its own.
///
/// ```
/// let metadata = serde_json::json!({
///     "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
/// });
/// let span = millrace_otel::extract_trace_context(&metadata).unwrap();
/// assert_eq!(span.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(span.is_remote());
///
/// let malformed = serde_json::json!({ "traceparent": "00-not-a-trace-01" });
/// assert!(millrace_otel::extract_trace_context(&malformed).is_none());
/// ```
pub fn extract_trace_context(metadata: &serde_json::Value) -> Option<SpanContext> {
    let traceparent = metadata.get(METADATA_TRACEPARENT)?.as_str()?;
    let mut carrier = HashMap::with_capacity(2);
    carrier.insert(METADATA_TRACEPARENT.to_owned(), traceparent.to_owned());
    if let Some(state) = metadata
        .get(METADATA_TRACESTATE)
        .and_then(serde_json::Value::as_str)
    {
        carrier.insert(METADATA_TRACESTATE.to_owned(), state.to_owned());
    }
    // Extracted onto an empty context, never the current one, so a job can only ever be
    // linked to the span that inserted it (as otelriver does).
    let cx = TraceContextPropagator::new().extract_with_context(&Context::new(), &carrier);
    let span = cx.span().span_context().clone();
    span.is_valid().then_some(span)
}
