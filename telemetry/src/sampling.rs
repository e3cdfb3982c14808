//! Head sampling, decided before a request builds its spans.
//!
//! The SDK samples when a span starts, and `tracing-opentelemetry` starts a span only at
//! its end or when its context is first read: by then an unsampled request has already
//! paid for an OpenTelemetry span builder, its attributes, and a lock and a clock read at
//! every poll. So the service takes the decision first ([`sample`], the SDK's parent-based
//! ratio sampler) and makes an unsampled request's root span through [`root_span`], which
//! hides it from the trace layer ([`Exported`]): logs still see it, the trace layer never
//! does, and [`crate::sampled`] is false under it, so no child span is made either. The
//! provider itself then samples every root it is shown (parent-based `AlwaysOn`), so a
//! span the trace layer is shown belongs to a sampled trace.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry::trace::{SpanKind, TraceContextExt as _};
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample as _};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The ratio of new traces [`sample`] keeps (an `f64`'s bits; 0 until a provider is made).
static RATIO: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set while [`root_span`] makes the root of an unsampled trace.
    static UNSAMPLED_ROOT: Cell<bool> = const { Cell::new(false) };
}

/// Whether a tracer provider was made: until then nothing is sampled (not even under a
/// sampled caller), and [`crate::sampled`] answers without looking up the current span.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Sets the ratio [`sample`] applies to new traces (when a tracer provider is made).
pub(crate) fn set_ratio(ratio: f64) {
    RATIO.store(ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    EXPORTING.store(true, Ordering::Relaxed);
}

/// Whether traces are exported (a tracer provider was made).
pub(crate) fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Whether a new request's trace is sampled: the flag of `parent` (an incoming W3C
/// context) when it is valid, else the SDK's `TraceIdRatioBased` sampler at
/// `COVENANT_TRACE_SAMPLE_RATIO` over a fresh trace id. False when traces are not exported.
pub fn sample(parent: &opentelemetry::Context) -> bool {
    exporting() && sample_at(parent, f64::from_bits(RATIO.load(Ordering::Relaxed)))
}

/// [`sample`] at `ratio`.
fn sample_at(parent: &opentelemetry::Context, ratio: f64) -> bool {
    let remote = parent.span().span_context().clone();
    if remote.is_valid() {
        return remote.is_sampled();
    }
    if ratio <= 0.0 {
        return false;
    }
    let trace_id = RandomIdGenerator::default().new_trace_id();
    let result = Sampler::TraceIdRatioBased(ratio).should_sample(None, trace_id, "", &SpanKind::Server, &[], &[]);
    result.decision == SamplingDecision::RecordAndSample
}

/// The root span of a trace made by `make`; when `sampled` is false the trace layer does
/// not see it (see the module's documentation), the logs still do.
pub fn root_span(sampled: bool, make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if sampled {
        return make();
    }
    UNSAMPLED_ROOT.set(true);
    let span = make();
    UNSAMPLED_ROOT.set(false);
    span
}

/// The trace layer, shown the spans of sampled traces only: spans at `info` or above,
/// except the root of an unsampled trace; a span from another crate (a library's) only
/// under a span it was shown, so that nothing under an unsampled request becomes a root of
/// its own. The spans it is shown carry [`Traced`].
///
/// A wrapper, not a per-layer filter (`with_filter`): a per-layer filter looks the span up
/// at every enter and exit, and sqlx enters the caller's span at every poll of its query
/// streams (`in_current_span`), about 22 times per GraphQL request, each time for each
/// filtered layer. Under callgrind those lookups were a third of telemetry's instructions
/// per request. The wrapper takes its decision once, when a span is made; it does not pass
/// on enters and exits at all: the trace layer, without context activation and inactivity
/// tracking, uses them only to take a span's end time at its last exit, so an exported
/// span ends when it is closed (its last handle dropped) instead.
pub(crate) struct Exported<L>(pub(crate) L);

/// The trace layer over `provider`'s tracer, shown the spans of sampled traces only
/// ([`Exported`]): spans only, whatever the logs show (events are log lines, not span
/// events), without the attributes nobody asked for.
pub(crate) fn trace_layer<S>(
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
) -> Exported<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider as _;
    Exported(
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("covenant"))
            .with_location(false)
            .with_threads(false)
            .with_level(false)
            .with_target(false)
            // Without inactivity tracking and context activation (nothing here reads
            // OpenTelemetry's current context), the layer has no use for enters and exits
            // but the end time, which [`Exported`] relies on.
            .with_tracked_inactivity(false)
            .with_context_activation(false),
    )
}

/// Marks a span the trace layer was shown (see [`Exported`]).
struct Traced;

impl<S, L> Layer<S> for Exported<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.0.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.0.on_layer(subscriber);
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let meta = attrs.metadata();
        if *meta.level() > Level::INFO || UNSAMPLED_ROOT.get() {
            return;
        }
        let parent = || match attrs.parent() {
            Some(parent) => ctx.span(parent),
            None if attrs.is_contextual() => ctx.lookup_current(),
            None => None,
        };
        if !(meta.target().starts_with("covenant") || parent().is_some_and(|p| is_traced(&p))) {
            return;
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Traced);
        }
        self.0.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if traced(id, &ctx) {
            self.0.on_record(id, values, ctx);
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        if traced(id, &ctx) {
            self.0.on_follows_from(id, follows, ctx);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if traced(&id, &ctx) {
            self.0.on_close(id, ctx);
        }
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.0.on_id_change(old, new, ctx);
    }

    // Events are log lines, not span events: the trace layer is not shown them.

    // The one `unsafe` of the crate (see its Cargo.toml): a layer that wraps another must pass
    // `downcast_raw` on, or the wrapped layer's types cannot be found through the dispatch.
    #[allow(unsafe_code)]
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            return Some(std::ptr::from_ref(self).cast());
        }
        // SAFETY: passed on as received; the trace layer answers for its own types (the
        // `WithContext` through which `OpenTelemetrySpanExt` reads a span's context).
        unsafe { self.0.downcast_raw(id) }
    }
}

/// Whether `span` was shown to the trace layer.
pub(crate) fn is_traced<R: for<'a> LookupSpan<'a>>(span: &tracing_subscriber::registry::SpanRef<'_, R>) -> bool {
    span.extensions().get::<Traced>().is_some()
}

/// Whether span `id` was shown to the trace layer.
fn traced<S>(id: &Id, ctx: &Context<'_, S>) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    ctx.span(id).is_some_and(|span| is_traced(&span))
}

/// Whether the current span was shown to the trace layer: a span of a sampled trace (the
/// roots of unsampled traces are hidden from it, and so is everything under them).
pub(crate) fn current_is_traced() -> bool {
    tracing::dispatcher::get_default(|dispatch| {
        let current = dispatch.current_span();
        let Some(id) = current.id() else { return false };
        dispatch
            .downcast_ref::<tracing_subscriber::Registry>()
            .and_then(|registry| registry.span(id))
            .is_some_and(|span| is_traced(&span))
    })
}

/// The global filter when traces are exported: what the logs show (`RUST_LOG`), and every
/// span at `info` or above whatever the logs show, for the trace layer.
pub(crate) struct LogsAndSpans(pub(crate) Targets);

impl LogsAndSpans {
    fn span(meta: &Metadata<'_>) -> bool {
        meta.is_span() && *meta.level() <= Level::INFO
    }
}

impl<S: Subscriber> Layer<S> for LogsAndSpans {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if Self::span(meta) { Interest::always() } else { Layer::<S>::register_callsite(&self.0, meta) }
    }

    fn enabled(&self, meta: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        Self::span(meta) || Layer::<S>::enabled(&self.0, meta, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Layer::<S>::max_level_hint(&self.0).map(|level| level.max(LevelFilter::INFO))
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;
    use crate::OpenTelemetrySpanExt as _;

    fn remote(sampled: bool) -> opentelemetry::Context {
        let flag = if sampled { "01" } else { "00" };
        let header = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flag}");
        crate::propagation::extract(|name| (name == "traceparent").then_some(header.as_str()))
    }

    #[test]
    fn a_remote_flag_decides_else_the_ratio() {
        let none = opentelemetry::Context::new();
        assert!(!sample_at(&none, 0.0) && sample_at(&none, 1.0));
        let kept = (0..10_000).filter(|_| sample_at(&none, 0.1)).count();
        assert!((700..1300).contains(&kept), "{kept} of 10,000 at ratio 0.1");
        assert!(sample_at(&remote(true), 0.0), "a sampled caller is always traced");
        assert!(!sample_at(&remote(false), 1.0), "an unsampled caller is not");
    }

    /// An unsampled root is seen by the logs, not by the trace layer, and nothing under it
    /// (not even a library's span) is exported; a sampled root and its children are.
    #[test]
    fn an_unsampled_root_builds_no_opentelemetry_span() {
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let provider = crate::provider_sampling(exporter.clone(), false, 1.0);
        let layer = trace_layer(&provider);
        let logs = Roots::default();
        let subscriber = tracing_subscriber::registry().with(logs.clone()).with(layer);
        tracing::subscriber::with_default(subscriber, || {
            for sampled in [false, true] {
                let root = root_span(sampled, || tracing::info_span!(target: "covenant_api::http", "request"));
                assert_eq!(root.context().span().span_context().is_sampled(), sampled);
                root.in_scope(|| {
                    assert_eq!(crate::sampled(), sampled);
                    let _library = tracing::info_span!(target: "sqlx::query", "library").entered();
                });
            }
        });
        let spans = exporter.get_finished_spans().expect("spans");
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, ["library", "request"], "only the sampled root and its child");
        assert_eq!(spans[0].parent_span_id, spans[1].span_context.span_id());
        assert_eq!(logs.0.load(Ordering::Relaxed), 2, "the logs saw both roots");
    }

    /// With traces, the global filter lets every `info` span through whatever the logs
    /// show (`RUST_LOG=warn` here), and only the events the logs show.
    #[test]
    fn with_traces_info_spans_pass_whatever_the_logs_show() {
        let filter = LogsAndSpans("warn".parse().expect("filter"));
        let roots = Roots::default();
        let subscriber = tracing_subscriber::registry().with(filter).with(roots.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(target: "covenant_api::http", "request");
            assert!(!span.is_disabled(), "an info span is made for the traces");
            assert!(!tracing::enabled!(tracing::Level::INFO), "info events are not logged");
            assert!(tracing::enabled!(tracing::Level::WARN));
            assert!(tracing::debug_span!("debug").is_disabled());
        });
        assert_eq!(roots.0.load(Ordering::Relaxed), 1);
    }

    /// A layer standing for the logs: counts the `request` spans it is shown.
    #[derive(Clone, Default)]
    struct Roots(std::sync::Arc<AtomicU64>);

    impl<S: Subscriber> tracing_subscriber::Layer<S> for Roots {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if attrs.metadata().name() == "request" {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
