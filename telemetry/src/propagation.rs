//! W3C trace context (`traceparent`, `tracestate`) into and out of message and request
//! headers, through the SDK's `TraceContextPropagator`. The propagator is used directly
//! rather than through the global one, so the headers do not depend on how the process
//! set up its telemetry.

use std::sync::LazyLock;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

static PROPAGATOR: LazyLock<TraceContextPropagator> = LazyLock::new(TraceContextPropagator::new);

/// The header a span's context travels in.
pub const TRACEPARENT: &str = "traceparent";
/// Vendor trace state, beside [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

/// Adds the `traceparent` (and `tracestate`) of `span` to `headers`; nothing when the span
/// is not exported (traces off).
pub fn inject(span: &tracing::Span, headers: &mut Vec<(String, String)>) {
    struct Pairs<'a>(&'a mut Vec<(String, String)>);
    impl Injector for Pairs<'_> {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_owned(), value));
        }
    }
    PROPAGATOR.inject_context(&span.context(), &mut Pairs(headers));
}

/// The remote parent that `traceparent` and `tracestate` header values name (an empty
/// context when they name none): `get` looks a header up by name.
pub fn extract<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Context {
    struct Two<'a>([Option<&'a str>; 2]);
    impl Extractor for Two<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            match key {
                TRACEPARENT => self.0[0],
                TRACESTATE => self.0[1],
                _ => None,
            }
        }
        fn keys(&self) -> Vec<&str> {
            vec![TRACEPARENT, TRACESTATE]
        }
    }
    PROPAGATOR.extract(&Two([get(TRACEPARENT), get(TRACESTATE)]))
}

/// The span context a stored `traceparent` names, if it is well formed and valid (a link
/// target).
pub fn span_context(traceparent: &str) -> Option<SpanContext> {
    let cx = extract(|name| (name == TRACEPARENT).then_some(traceparent));
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

#[cfg(test)]
mod tests {
    use super::span_context;

    #[test]
    fn a_traceparent_names_its_span_context() {
        let sc = span_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid");
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        let unsampled = span_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").expect("valid");
        assert!(!unsampled.is_sampled());
        // A later version may carry more fields.
        assert!(span_context("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
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
            assert!(span_context(bad).is_none(), "{bad:?}");
        }
        // The SDK's propagator is lenient about one thing the W3C grammar forbids: a flags
        // field of one hex digit. It still names the context the other fields give.
        let lenient = span_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1").expect("accepted");
        assert!(lenient.is_sampled());
    }
}
