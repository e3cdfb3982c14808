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

/// A span a task works inside without entering it at every poll, and whether its trace is
/// sampled (decided once, when the scope begins).
struct Scoped {
    span: tracing::Span,
    sampled: bool,
}

tokio::task_local! {
    /// The request this task serves (see [`in_request`]).
    static REQUEST: Scoped;
    /// The innermost of Covenant's spans this task is inside (see [`in_span`]).
    static CURRENT: Scoped;
}

/// Runs `fut`, a request's handling, with `span` as its request span and innermost span
/// (see [`in_span`]); log lines read the request's fields through [`request_span`].
pub async fn in_request<F: std::future::Future>(span: tracing::Span, fut: F) -> F::Output {
    let sampled = sampled(&span);
    let current = Scoped { span: span.clone(), sampled };
    REQUEST.scope(Scoped { span, sampled }, CURRENT.scope(current, fut)).await
}

/// Runs `fut` inside `span` without entering it at every poll. Entering a span costs every
/// layer an enter and an exit (the trace layer reads the clock at each exit) each time the
/// future is woken; a request's futures are woken at every round trip to PostgreSQL or NATS.
/// Instead the span is the task's innermost span while `fut` runs: spans made inside name
/// it as their parent through [`parent`], and log lines written inside carry its fields
/// (the JSON log layer reads [`current_span_id`] when no span is entered).
pub async fn in_span<F: std::future::Future>(span: tracing::Span, fut: F) -> F::Output {
    let sampled = sampled(&span);
    CURRENT.scope(Scoped { span, sampled }, fut).await
}

/// The span of the request this task serves (see [`in_request`]), if any.
pub fn request_span() -> Option<tracing::Span> {
    REQUEST.try_with(|r| r.span.clone()).ok()
}

/// The id of the task's innermost span (see [`in_span`]), if it is inside one.
pub fn current_span_id() -> Option<tracing::Id> {
    CURRENT.try_with(|c| c.span.id()).ok().flatten()
}

/// The parent for a span made here: the task's innermost span (see [`in_span`]), else the
/// entered one (`Span::current`). Pass it as `parent:` to the span macros.
pub fn parent() -> Option<tracing::Id> {
    current_span_id().or_else(|| tracing::Span::current().id())
}

/// Whether the current work belongs to a sampled trace: inside [`in_span`] or
/// [`in_request`], the innermost span's decision (taken once); elsewhere, the entered
/// span's. Covenant's inner spans (command, send, GraphQL, SQL, process) are made only
/// then: requests start traces, and work outside a sampled request (the CLI, unsampled
/// requests) makes no spans at all, so it pays nothing.
pub fn in_sampled_trace() -> bool {
    match CURRENT.try_with(|c| c.sampled) {
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
