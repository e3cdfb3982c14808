//! Traces: Covenant's OpenTelemetry spans, and the W3C trace context they carry in HTTP and
//! NATS headers.
//!
//! Spans are made with the OpenTelemetry API directly, not bridged from `tracing` spans: a
//! bridged span also passes through the `tracing` registry and every layer (about 11,000
//! instructions a span here, against a few thousand), and the spans of a request are the
//! bulk of what telemetry costs it. `tracing` keeps the logs: the request's `tracing` span
//! carries the fields of its log lines ([`request_span`]).
//!
//! Parents travel in a task-local rather than in the thread's OpenTelemetry context: a
//! task moves between threads, and entering a span at every poll of a request's futures
//! costs more than the span. [`in_request`] and [`in_span`] set the task's innermost span;
//! [`child`] makes a span under it. Requests start traces: spans are made only inside a
//! sampled trace and only once [`enable`] was called (when traces are exported), so
//! unsampled requests and work outside requests (the CLI) make none and pay nothing.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::Context;
pub use opentelemetry::KeyValue;
use opentelemetry::propagation::Injector;
pub use opentelemetry::trace::Link;
pub use opentelemetry::trace::SpanKind;
use opentelemetry::trace::{TraceContextExt as _, Tracer as _};

/// Whether spans are made (set once traces are exported).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Makes spans from now on, with the global tracer provider (call once it is installed).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are made at all (see [`enable`]).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A span `name` of `kind` under `parent`, started now: the context that holds it (the
/// span ends when the last clone of that context is dropped).
pub fn start(
    parent: &Context,
    name: impl Into<Cow<'static, str>>,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
    links: Vec<Link>,
) -> Context {
    let tracer = opentelemetry::global::tracer("covenant");
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes)
        .with_links(links)
        .start_with_context(&tracer, parent);
    parent.with_span(span)
}

/// The task's innermost span and whether its trace is sampled (decided once).
struct Scope {
    cx: Context,
    sampled: bool,
}

impl Scope {
    fn new(cx: Context) -> Self {
        let sampled = cx.span().span_context().is_sampled();
        Self { cx, sampled }
    }
}

/// The request a task serves: its `tracing` span (the fields of its log lines) and the
/// context holding its server span.
struct Request {
    log_span: tracing::Span,
    cx: Context,
}

tokio::task_local! {
    /// The request this task serves.
    static REQUEST: Request;
    /// The innermost of Covenant's spans this task is inside.
    static CURRENT: Scope;
}

/// Runs `fut`, a request's handling: `log_span` carries the fields of the request's log
/// lines ([`request_span`]), and `cx` holds its server span (an empty context when traces
/// are off), the parent of the spans made inside ([`child`]).
pub async fn in_request<F: std::future::Future>(log_span: tracing::Span, cx: Context, fut: F) -> F::Output {
    let scope = Scope::new(cx.clone());
    REQUEST.scope(Request { log_span, cx }, CURRENT.scope(scope, fut)).await
}

/// Runs `fut` inside the span `cx` holds (from [`child`]): spans made inside are its
/// children. With `None` (no span: an unsampled trace, or traces off), runs `fut` as is.
pub async fn in_span<F: std::future::Future>(cx: Option<Context>, fut: F) -> F::Output {
    match cx {
        Some(cx) => CURRENT.scope(Scope::new(cx), fut).await,
        None => fut.await,
    }
}

/// Calls `f` inside the span `cx` holds (for a log line written after [`in_request`]
/// returned, which should carry its trace's ids).
pub fn within<R>(cx: &Context, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(Scope::new(cx.clone()), f)
}

/// The `tracing` span of the request this task serves (see [`in_request`]), if any.
pub fn request_span() -> Option<tracing::Span> {
    REQUEST.try_with(|r| r.log_span.clone()).ok()
}

/// Whether the current work belongs to a sampled trace (inside [`in_request`] or
/// [`in_span`] whose span is sampled).
pub fn in_sampled_trace() -> bool {
    CURRENT.try_with(|s| s.sampled).unwrap_or(false)
}

/// A span under the task's innermost one, when that one is sampled (see
/// [`in_sampled_trace`]); `None` (and nothing made) otherwise. `name` is called only then.
pub fn child<N: Into<Cow<'static, str>>>(
    name: impl FnOnce() -> N,
    kind: SpanKind,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> Option<Context> {
    CURRENT.try_with(|s| s.sampled.then(|| start(&s.cx, name(), kind, attributes(), Vec::new()))).ok().flatten()
}

/// Sets `attribute` on the server span of the request this task serves (a no-op when it
/// is not recording: traces off, or an unsampled trace).
pub fn record(attribute: KeyValue) {
    let _ = REQUEST.try_with(|r| r.cx.span().set_attribute(attribute));
}

/// The trace and span ids of the task's innermost span, for log lines (none outside a
/// request, or when traces are off).
pub fn current_ids() -> Option<([u8; 16], [u8; 8])> {
    CURRENT
        .try_with(|s| {
            let sc = s.cx.span().span_context().clone();
            sc.is_valid().then(|| (sc.trace_id().to_bytes(), sc.span_id().to_bytes()))
        })
        .ok()
        .flatten()
}

struct VecInjector<'a>(&'a mut Vec<(String, String)>);

impl Injector for VecInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// Adds the `traceparent` (and `tracestate`) of the span `cx` holds to `headers`.
pub fn inject(cx: &Context, headers: &mut Vec<(String, String)>) {
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(cx, &mut VecInjector(headers)));
}
