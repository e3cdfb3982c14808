//! Without a tracer provider (no `OTEL_EXPORTER_OTLP_ENDPOINT`, the service's default)
//! nothing is sampled, not even a request whose caller sampled its trace, and no span is
//! made for an exporter that does not exist. A test binary of its own: the unit tests make
//! providers, and whether one was made is process-wide.

#[test]
fn nothing_is_sampled_without_an_exporter() {
    let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let caller = covenant_telemetry::propagation::extract(|name| (name == "traceparent").then_some(header));
    assert!(!covenant_telemetry::sample(&caller), "a sampled caller, but nothing to export to");
    assert!(!covenant_telemetry::sample(&opentelemetry::Context::new()), "a new trace");
    tracing::subscriber::with_default(tracing_subscriber::registry(), || {
        let root = covenant_telemetry::root_span(true, || tracing::info_span!("request"));
        root.in_scope(|| assert!(!covenant_telemetry::sampled(), "inside a request"));
    });
}
