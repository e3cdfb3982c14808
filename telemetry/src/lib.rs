//! Covenant's telemetry, shared by the commands, projections, API and CLI crates.
//!
//! - **Logs** ([`install`]): `RUST_LOG` filters (default [`DEFAULT_FILTER`]);
//!   `COVENANT_LOG_FORMAT=json` writes one JSON object per line through `json-subscriber`:
//!   `timestamp`, `level`, `message`, `target`, the fields of the enclosing spans (such as
//!   `request_id`, `user_id`, `role`) and of the event (`status`, `duration_ms`), and
//!   `trace_id`/`span_id` when traces are exported. `text` is for terminals; the default is
//!   `text` on a terminal and `json` otherwise. Lines reach stderr through a queue and a
//!   thread of their own, never from the request itself ([`dropped_log_lines`]).
//! - **Traces**: `tracing` spans, exported through `tracing-opentelemetry` over OTLP gRPC
//!   when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`OTEL_SERVICE_NAME`, default `covenant`;
//!   `COVENANT_TRACE_SAMPLE_RATIO`, default [`DEFAULT_SAMPLE_RATIO`], parent-based: a
//!   request that arrives with a sampled `traceparent` is always traced). Requests start traces,
//!   and the decision is taken before the request builds any span ([`sample`],
//!   [`root_span`]): an unsampled request's span is seen by the logs only, and the spans
//!   inside one (GraphQL operation, command, send, SQL) are made only when its trace is
//!   sampled ([`sampled`]).
//! - **Context** ([`propagation`]): W3C `traceparent`/`tracestate` through the SDK's
//!   `TraceContextPropagator`, into and out of NATS and HTTP headers.

mod logs;
pub mod metrics;
pub mod propagation;
mod sampling;

pub use logs::{DEFAULT_FILTER, LogFormat, install, set_user};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
pub use sampling::{root_span, sample};
pub use tracing_opentelemetry::OpenTelemetrySpanExt;

/// What to shut down at exit (flushes the trace exporter).
#[must_use]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// Flushes the log lines still queued when dropped (waiting at most about a second).
    logs: tracing_appender::non_blocking::WorkerGuard,
}

impl Telemetry {
    /// Flushes and stops the trace exporter (blocking work, run off the runtime).
    pub async fn shutdown(self) {
        if let Some(p) = self.provider {
            let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
        }
        let logs = self.logs;
        let _ = tokio::task::spawn_blocking(move || drop(logs)).await;
    }
}

/// The share of new traces the service samples unless `COVENANT_TRACE_SAMPLE_RATIO` says
/// otherwise: one request in ten. Set 1 to trace every request.
///
/// What telemetry costs a GraphQL request at this ratio, against a 10% target (2026-12-08;
/// earlier figures are in the commits that changed them): the server does 38.5k more
/// instructions per request (callgrind, the observability benchmark's mix: 276.3k against
/// 237.8k), and paired medians of 11.6% to 13.0% more CPU time in three runs of
/// `covenant-bench observability --paired --rounds 9`; 28.1% at ratio 1 (this VM's paired
/// runs spread by several points). What is left is spread thin: the request's log line
/// (about 13.7k instructions, most of it the JSON layer's field handling), the request's
/// span (made, entered at each poll of a query stream, closed: about 17k), the sampled
/// tenth's OpenTelemetry spans (about 4k on average) and the metrics (about 2k, through
/// kept handles: [`metrics::Histograms`]).
pub const DEFAULT_SAMPLE_RATIO: f64 = 0.1;

/// Installs logging and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the OTLP trace exporter
/// (sampling [`DEFAULT_SAMPLE_RATIO`] of new traces unless `COVENANT_TRACE_SAMPLE_RATIO` is
/// set). Call inside the tokio runtime.
pub fn init() -> Telemetry {
    let provider = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|e| !e.is_empty()).and_then(|endpoint| {
        match otlp_provider(&endpoint) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("tracing disabled: cannot set up the OTLP exporter to {endpoint}: {e}");
                None
            }
        }
    });
    let (writer, logs) = log_writer(std::io::stderr());
    install(LogFormat::from_env(), provider.clone(), writer);
    Telemetry { provider, logs }
}

/// Log lines the writer holds while its output is not taken (about 5 MB of JSON lines).
pub const LOG_QUEUE_LINES: usize = 16_384;

/// The count of lines the log writer dropped, once [`init`] made it.
static DROPPED_LINES: std::sync::OnceLock<tracing_appender::non_blocking::ErrorCounter> = std::sync::OnceLock::new();

/// Log lines dropped since start because the log output was not being read (see
/// [`init`]): exported as `covenant_log_lines_dropped_total`.
pub fn dropped_log_lines() -> u64 {
    DROPPED_LINES.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// The service's log writer: lines go through a queue of [`LOG_QUEUE_LINES`] to a thread
/// of their own, which writes them to `out` in batches. Written from the request, a line
/// blocks its runtime thread whenever `out` is a pipe its reader stopped draining (a stuck
/// log shipper, `covenant serve | less` left alone): with every worker thread blocked so,
/// the service stopped answering, health checks included. A full queue drops the
/// line and counts it in [`dropped_log_lines`] instead.
fn log_writer<W: std::io::Write + Send + 'static>(
    out: W,
) -> (tracing_appender::non_blocking::NonBlocking, tracing_appender::non_blocking::WorkerGuard) {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("covenant-logs")
        .finish(std::io::BufWriter::with_capacity(64 * 1024, out));
    let _ = DROPPED_LINES.set(writer.error_counter());
    (writer, guard)
}

/// Spans made, batched and dropped (`OTEL_EXPORTER_OTLP_ENDPOINT=discard`): the
/// observability benchmark measures the instrumentation without a collector.
#[derive(Debug)]
pub struct DiscardExporter;

impl opentelemetry_sdk::trace::SpanExporter for DiscardExporter {
    async fn export(&self, batch: Vec<opentelemetry_sdk::trace::SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        std::hint::black_box(batch);
        Ok(())
    }
}

fn otlp_provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig as _;
    let ratio = sample_ratio(DEFAULT_SAMPLE_RATIO);
    if endpoint == "discard" {
        return Ok(provider_sampling(DiscardExporter, true, ratio));
    }
    let exporter =
        opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint.to_owned()).build()?;
    Ok(provider_sampling(exporter, true, ratio))
}

/// `COVENANT_TRACE_SAMPLE_RATIO`, else `default`.
fn sample_ratio(default: f64) -> f64 {
    std::env::var("COVENANT_TRACE_SAMPLE_RATIO").ok().and_then(|r| r.trim().parse::<f64>().ok()).unwrap_or(default)
}

/// A tracer provider over `exporter` (batched, or each span at its end) for tests and
/// tools: it samples every new trace unless `COVENANT_TRACE_SAMPLE_RATIO` says otherwise.
pub fn provider_with<E: opentelemetry_sdk::trace::SpanExporter + 'static>(
    exporter: E,
    batch: bool,
) -> SdkTracerProvider {
    provider_sampling(exporter, batch, sample_ratio(1.0))
}

/// A tracer provider over `exporter` with the service name; [`sample`] keeps `ratio` of
/// new traces (the provider samples every root the trace layer is shown, see `sampling`).
fn provider_sampling<E: opentelemetry_sdk::trace::SpanExporter + 'static>(
    exporter: E,
    batch: bool,
    ratio: f64,
) -> SdkTracerProvider {
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "covenant".into());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
    let builder = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(resource);
    sampling::set_ratio(ratio);
    let builder = if batch { builder.with_batch_exporter(exporter) } else { builder.with_simple_exporter(exporter) };
    builder.build()
}

/// Whether the current span belongs to a sampled trace: the test before making a span
/// inside a request, so that unsampled requests (and everything when traces are not
/// exported) build none.
pub fn sampled() -> bool {
    sampling::exporting() && sampling::current_is_traced()
}
