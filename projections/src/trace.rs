//! The projections' span: a batch's consumer span linked to the producer spans its events
//! name in their `traceparent` (the transaction's client span goes under it, see
//! `apply`).

use covenant_telemetry::OpenTelemetrySpanExt as _;
use covenant_telemetry::propagation::span_context;

use crate::event::ProjectedEvent;

/// Most producer spans a batch's process span links to.
const MAX_LINKS: usize = 128;

/// The consumer span of a batch (`process <prefix>.<aggregate>`, or `process <prefix>` for
/// a batch of several aggregate types), a root linked to the producer spans whose W3C
/// context the events carry. Made only for a batch that carries a sampled trace context
/// (requests start traces); [`tracing::Span::none`] otherwise.
pub(crate) fn process_span(projection: &'static str, events: &[ProjectedEvent]) -> tracing::Span {
    if !events.iter().any(|e| e.traceparent.as_deref().is_some_and(|t| t.ends_with("-01"))) {
        return tracing::Span::none();
    }
    let first = events.first().map_or("", |e| e.subject.as_str());
    let prefix = first.rsplitn(3, '.').nth(2).unwrap_or_default();
    let aggregate = events.first().map_or("", |e| e.aggregate.as_str());
    let destination = if events.iter().all(|e| e.aggregate == aggregate) {
        format!("{prefix}.{aggregate}")
    } else {
        prefix.to_owned()
    };
    let span = tracing::info_span!(
        parent: None,
        "process",
        otel.name = %format_args!("process {destination}"),
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.destination.name = destination.as_str(),
        messaging.batch.message_count = events.len() as i64,
        projection,
    );
    // A root: its trace is its own; the requests it serves are links.
    let _ = span.set_parent(opentelemetry::Context::new());
    for link in events.iter().filter_map(|e| e.traceparent.as_deref().and_then(span_context)).take(MAX_LINKS) {
        span.add_link(link);
    }
    span
}
