//! The projections' spans: a batch's consumer span linked to the producer spans its events
//! name in their `traceparent`, and the transaction's client span under it.

use crate::event::ProjectedEvent;

/// Most producer spans a batch's process span links to.
const MAX_LINKS: usize = 128;

/// The consumer span of a batch (`process <prefix>.<aggregate>`, or `process <prefix>` for
/// a batch of several aggregate types), linked to the producer spans whose W3C context
/// the events carry: the context that holds it. Made only for a batch that carries a
/// sampled trace context (requests start traces), with the OpenTelemetry API directly (a
/// no-op until a tracer provider is installed).
pub(crate) fn process_span(projection: &'static str, events: &[ProjectedEvent]) -> Option<opentelemetry::Context> {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{Link, SpanBuilder, SpanKind};
    if !events.iter().any(|e| e.traceparent.as_deref().is_some_and(|t| t.ends_with("-01"))) {
        return None;
    }
    let first = events.first().map_or("", |e| e.subject.as_str());
    let prefix = first.rsplitn(3, '.').nth(2).unwrap_or_default();
    let aggregate = events.first().map_or("", |e| e.aggregate.as_str());
    let destination = if events.iter().all(|e| e.aggregate == aggregate) {
        format!("{prefix}.{aggregate}")
    } else {
        prefix.to_owned()
    };
    let links: Vec<Link> = events
        .iter()
        .filter_map(|e| e.traceparent.as_deref().and_then(link_context))
        .take(MAX_LINKS)
        .map(Link::with_context)
        .collect();
    let builder = SpanBuilder::from_name(format!("process {destination}"))
        .with_kind(SpanKind::Consumer)
        .with_attributes([
            KeyValue::new("messaging.system", "nats"),
            KeyValue::new("messaging.destination.name", destination),
            KeyValue::new("messaging.batch.message_count", events.len() as i64),
            KeyValue::new("projection", projection),
        ])
        .with_links(links);
    Some(start(&opentelemetry::Context::new(), builder))
}

/// Starts the span `builder` describes under `parent` (an empty context: a root): the
/// context that holds it (it ends when that context is dropped). The commands crate's
/// `trace::start`, which this crate may not depend on, does the same.
pub(crate) fn start(
    parent: &opentelemetry::Context,
    builder: opentelemetry::trace::SpanBuilder,
) -> opentelemetry::Context {
    use opentelemetry::trace::TraceContextExt as _;
    let tracer = opentelemetry::global::tracer("covenant");
    parent.with_span(builder.start_with_context(&tracer, parent))
}

/// The span context a W3C `traceparent` names, if it is well formed and valid, as the
/// SDK's `TraceContextPropagator` reads it (the same propagator writes it on the command
/// side).
fn link_context(traceparent: &str) -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
    use opentelemetry::trace::TraceContextExt as _;
    /// The one header a stored event's trace context travels in.
    struct Traceparent<'a>(&'a str);
    impl Extractor for Traceparent<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            (key == "traceparent").then_some(self.0)
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent"]
        }
    }
    static PROPAGATOR: std::sync::LazyLock<opentelemetry_sdk::propagation::TraceContextPropagator> =
        std::sync::LazyLock::new(opentelemetry_sdk::propagation::TraceContextPropagator::new);
    let cx = PROPAGATOR.extract(&Traceparent(traceparent));
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

#[cfg(test)]
mod tests {
    use super::link_context;

    #[test]
    fn a_traceparent_names_its_span_context() {
        let sc = link_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid");
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        let unsampled = link_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").expect("valid");
        assert!(!unsampled.is_sampled());
        // A later version may carry more fields.
        assert!(link_context("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
    }

    #[test]
    fn malformed_or_invalid_traceparents_name_nothing() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(link_context(bad).is_none(), "{bad:?}");
        }
        // The SDK's propagator is lenient about one thing the W3C grammar forbids: a flags
        // field of one hex digit. It still names the context the other fields give.
        let lenient = link_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1").expect("accepted");
        assert!(lenient.is_sampled());
    }
}
