//! W3C trace context in NATS headers: injected by the appender (producer side), read by
//! consumers. With no propagator installed (tracing off) nothing is written.

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct VecInjector<'a>(&'a mut Vec<(String, String)>);

impl Injector for VecInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// The request a task serves: its span, and whether its trace is sampled (decided once).
struct Request {
    span: tracing::Span,
    sampled: bool,
}

tokio::task_local! {
    static REQUEST: Request;
}

/// Runs `fut`, a request's handling, with `span` as its request span. The span is not
/// entered at every poll (which costs every layer an enter and an exit each time the
/// request's future is woken): log lines read the request's fields through
/// [`request_span`], and the GraphQL span names it as its parent.
pub async fn in_request<F: std::future::Future>(span: tracing::Span, fut: F) -> F::Output {
    let sampled = sampled(&span);
    REQUEST.scope(Request { span, sampled }, fut).await
}

/// The span of the request this task serves (see [`in_request`]), if any.
pub fn request_span() -> Option<tracing::Span> {
    REQUEST.try_with(|r| r.span.clone()).ok()
}

/// The id of the request span (see [`request_span`]), if any.
pub fn request_span_id() -> Option<tracing::Id> {
    REQUEST.try_with(|r| r.span.id()).ok().flatten()
}

/// Whether the current work belongs to a sampled trace: inside a request, the request's
/// decision (taken once, see [`in_request`]); elsewhere, the current span's. Covenant's
/// inner spans (command, send, GraphQL, SQL, process) are made only then: requests start
/// traces, and work outside a sampled request (the CLI, unsampled requests) makes no spans
/// at all, so it pays nothing.
pub fn in_sampled_trace() -> bool {
    match REQUEST.try_with(|r| r.sampled) {
        Ok(sampled) => sampled,
        Err(_) => sampled(&tracing::Span::current()),
    }
}

/// Whether `span` is enabled and belongs to a sampled trace.
fn sampled(span: &tracing::Span) -> bool {
    use opentelemetry::trace::TraceContextExt as _;
    !span.is_disabled() && span.context().span().span_context().is_sampled()
}

/// Adds the `traceparent` (and `tracestate`) of `span` to `headers`.
pub fn inject(span: &tracing::Span, headers: &mut Vec<(String, String)>) {
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut VecInjector(headers)));
}

/// Reads trace context from NATS headers.
pub struct NatsExtractor<'a>(pub &'a async_nats::HeaderMap);

impl Extractor for NatsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// The trace context carried by `headers` (empty when there is none).
pub fn extract(headers: &async_nats::HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&NatsExtractor(headers)))
}
