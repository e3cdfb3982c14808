//! Head sampling, decided before a request builds its spans.
//!
//! The SDK samples when a span starts, and `tracing-opentelemetry` starts a span only at
//! its end or when its context is first read: by then an unsampled request has already
//! paid for an OpenTelemetry span builder, its attributes, and a lock and a clock read at
//! every poll. So the service takes the decision first ([`sample`], the SDK's parent-based
//! ratio sampler) and makes an unsampled request's root span through [`root_span`], which
//! hides it from the trace layer ([`Exported`]): logs still see it, the trace layer never
//! does, and [`crate::sampled`] is false under it, so no child span is made either. The
//! provider itself then samples every root it is shown (parent-based `AlwaysOn`).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry::trace::{SpanKind, TraceContextExt as _};
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample as _};
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter};
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

/// The trace layer's filter: spans at `info` or above, except the root of an unsampled
/// trace; a span from another crate (a library's) only inside a span the layer sees, so
/// that nothing under an unsampled request becomes a root of its own.
pub(crate) struct Exported;

impl<S> Filter<S> for Exported
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        meta.is_span()
            && *meta.level() <= Level::INFO
            && !UNSAMPLED_ROOT.get()
            && (meta.target().starts_with("covenant") || cx.lookup_current().is_some())
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_span() && *meta.level() <= Level::INFO { Interest::sometimes() } else { Interest::never() }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
    use tracing_subscriber::Layer as _;
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
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test")).with_filter(Exported);
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
