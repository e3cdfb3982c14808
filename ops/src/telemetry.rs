//! Logs, traces and metrics, set up once in `main`.
//!
//! - **Logs**: `RUST_LOG` filters (default `info`); `COVENANT_LOG_FORMAT=json` writes one
//!   JSON object per line (`timestamp`, `level`, `message`, `target`, the fields of the
//!   enclosing spans such as `request_id`, `user_id`, `role`, `status`, `duration_ms`, and
//!   `trace_id`/`span_id` when tracing is on); `text` is for terminals. The default is
//!   `text` on a terminal and `json` otherwise.
//! - **Traces**: exported over OTLP gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set
//!   (`OTEL_SERVICE_NAME`, default `covenant`; `COVENANT_TRACE_SAMPLE_RATIO`, default 1,
//!   parent-based). W3C trace context travels in HTTP and NATS headers. Spans are made with
//!   the OpenTelemetry API (`covenant_commands::trace`), not bridged from `tracing`, which
//!   keeps the logs. Requests start traces: Covenant's inner spans (GraphQL operation,
//!   command, send, process, SQL) are made only inside a sampled trace, and only when traces
//!   are exported, so unsampled work and work outside requests (the CLI) cost nothing.
//! - **Metrics**: the Prometheus recorder ([`install_metrics`]).

use std::io::Write as _;

use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The default log filter.
pub const DEFAULT_FILTER: &str = "info,async_nats=warn,sqlx::postgres::notice=warn";

/// What to shut down at exit (flushes the trace exporter).
#[must_use]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the trace exporter (blocking work, run off the runtime).
    pub async fn shutdown(self) {
        if let Some(p) = self.provider {
            let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Text,
}

impl LogFormat {
    /// From `COVENANT_LOG_FORMAT`, else JSON unless stderr is a terminal.
    pub fn from_env() -> Self {
        match std::env::var("COVENANT_LOG_FORMAT").as_deref() {
            Ok("json") => Self::Json,
            Ok("text") => Self::Text,
            _ if std::io::IsTerminal::is_terminal(&std::io::stderr()) => Self::Text,
            _ => Self::Json,
        }
    }
}

/// Installs logging and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the OTLP trace exporter.
/// Call inside the tokio runtime.
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
    install(LogFormat::from_env(), provider.clone(), std::io::stderr);
    Telemetry { provider }
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
    if endpoint == "discard" {
        return Ok(provider_with(DiscardExporter, true));
    }
    let exporter =
        opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint.to_owned()).build()?;
    Ok(provider_with(exporter, true))
}

/// A tracer provider over `exporter` (batched, or each span at its end for tests), with
/// the service name and the sampler the environment asks for.
pub fn provider_with<E: opentelemetry_sdk::trace::SpanExporter + 'static>(
    exporter: E,
    batch: bool,
) -> SdkTracerProvider {
    let ratio = std::env::var("COVENANT_TRACE_SAMPLE_RATIO").ok().and_then(|r| r.parse::<f64>().ok()).unwrap_or(1.0);
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "covenant".into());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
    let builder = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio.clamp(0.0, 1.0)))))
        .with_resource(resource);
    let builder = if batch { builder.with_batch_exporter(exporter) } else { builder.with_simple_exporter(exporter) };
    builder.build()
}

/// Installs the global subscriber (logs in `format` to `writer`) and, with `provider`, the
/// global tracer provider that Covenant's spans go to and the W3C trace-context
/// propagator. Later calls do nothing.
pub fn install<W>(format: LogFormat, provider: Option<SdkTracerProvider>, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::filter::Targets;
    // What the logs show: `RUST_LOG` as targets and levels.
    let logs_filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| DEFAULT_FILTER.parse().expect("the default filter parses"));
    let logs_max = Layer::<tracing_subscriber::Registry>::max_level_hint(&logs_filter);
    let logs: Box<dyn Layer<_> + Send + Sync> = match format {
        LogFormat::Json => JsonLogs { writer }.boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
    };
    if tracing_subscriber::registry().with(logs_filter).with(logs).try_init().is_ok() {
        if let Some(p) = provider {
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            opentelemetry::global::set_tracer_provider(p);
            covenant_commands::trace::enable();
        }
        // `log` records (sqlx writes one per statement) pass only where the logs show them.
        log::set_max_level(as_log(logs_max.unwrap_or(tracing::level_filters::LevelFilter::TRACE)));
    }
}

/// The `log` crate's spelling of a level filter.
fn as_log(level: tracing::level_filters::LevelFilter) -> log::LevelFilter {
    match level.into_level() {
        None => log::LevelFilter::Off,
        Some(tracing::Level::ERROR) => log::LevelFilter::Error,
        Some(tracing::Level::WARN) => log::LevelFilter::Warn,
        Some(tracing::Level::INFO) => log::LevelFilter::Info,
        Some(tracing::Level::DEBUG) => log::LevelFilter::Debug,
        Some(tracing::Level::TRACE) => log::LevelFilter::Trace,
    }
}

/// Field values of a span, kept in its extensions for the JSON log lines (names are the
/// callsite's static strings; `otel.*` fields, meant for the trace exporter, are left out).
#[derive(Default)]
struct SpanFields(Vec<(&'static str, serde_json::Value)>);

impl SpanFields {
    fn set(&mut self, name: &'static str, value: serde_json::Value) {
        if name.starts_with("otel.") {
            return;
        }
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name, value)),
        }
    }
}

impl Visit for SpanFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field.name(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), value.into());
    }
}

/// The JSON log layer: one object per event, with the fields of its spans (root first,
/// inner ones win) and the trace and span ids of the request's innermost span.
struct JsonLogs<W> {
    writer: W,
}

impl<S, W> Layer<S> for JsonLogs<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let mut fields = SpanFields(Vec::with_capacity(attrs.metadata().fields().len()));
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        // The spans' fields, root first, then the event's own; borrowed, and on a repeated
        // name the innermost (last) wins when the line is written.
        // Outside any entered span, a request's events belong to its request span (which is
        // not entered at every poll, see `trace::in_request`).
        let scope: Vec<_> = match ctx.event_scope(event) {
            Some(s) => s.from_root().collect(),
            None => covenant_commands::trace::request_span()
                .and_then(|span| span.id())
                .and_then(|id| ctx.span_scope(&id))
                .map(|s| s.from_root().collect())
                .unwrap_or_default(),
        };
        let extensions: Vec<_> = scope.iter().map(|span| span.extensions()).collect();
        let mut own = SpanFields(Vec::with_capacity(4));
        event.record(&mut own);
        let mut fields: Vec<(&str, &serde_json::Value)> = Vec::with_capacity(16);
        for f in extensions.iter().filter_map(|e| e.get::<SpanFields>()) {
            fields.extend(f.0.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (*k, v)));
        }
        let mut message = &serde_json::Value::Null;
        for (k, v) in &own.0 {
            if *k == "message" {
                message = v;
            } else {
                fields.push((k, v));
            }
        }
        let line = LogLine { event, message, fields: &fields, ids: covenant_commands::trace::current_ids() };
        let mut bytes = Vec::with_capacity(512);
        line.write(std::time::SystemTime::now(), &mut bytes);
        let _ = self.writer.make_writer().write_all(&bytes);
    }
}

/// One JSON log line, written straight from its parts.
struct LogLine<'a> {
    event: &'a tracing::Event<'a>,
    message: &'a serde_json::Value,
    /// Fields in order; of a repeated name the last is written.
    fields: &'a [(&'a str, &'a serde_json::Value)],
    /// Trace and span id.
    ids: Option<([u8; 16], [u8; 8])>,
}

impl LogLine<'_> {
    /// Appends the line, newline included, stamped `now`: the reserved keys first, then the
    /// fields (none may overwrite a reserved key), then the ids.
    fn write(&self, now: std::time::SystemTime, out: &mut Vec<u8>) {
        const RESERVED: [&str; 6] = ["timestamp", "level", "message", "target", "trace_id", "span_id"];
        out.extend_from_slice(b"{\"timestamp\":\"");
        rfc3339_micros(now, out);
        out.extend_from_slice(b"\",\"level\":");
        json_str(self.event.metadata().level().as_str(), out);
        out.extend_from_slice(b",\"message\":");
        json_value(self.message, out);
        out.extend_from_slice(b",\"target\":");
        json_str(self.event.metadata().target(), out);
        for (i, (k, v)) in self.fields.iter().enumerate() {
            let overridden = self.fields[i + 1..].iter().any(|(later, _)| later == k);
            if !overridden && !RESERVED.contains(k) {
                out.push(b',');
                json_str(k, out);
                out.push(b':');
                json_value(v, out);
            }
        }
        if let Some((trace, span)) = &self.ids {
            out.extend_from_slice(b",\"trace_id\":\"");
            hex(trace, out);
            out.extend_from_slice(b"\",\"span_id\":\"");
            hex(span, out);
            out.push(b'"');
        }
        out.extend_from_slice(b"}\n");
    }
}

/// `s` as a JSON string. Text with nothing to escape (no `"`, `\\` or control character) is
/// copied; anything else goes through serde_json.
fn json_str(s: &str, out: &mut Vec<u8>) {
    // A reduction without early exit, so the compiler vectorises it.
    let plain = s.bytes().fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

fn json_value(v: &serde_json::Value, out: &mut Vec<u8>) {
    match v {
        serde_json::Value::String(s) => json_str(s, out),
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// Lower-case hex of `bytes` (trace and span ids as W3C writes them).
fn hex(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
}

/// `t` in RFC 3339, UTC, to the microsecond (`2026-12-04T06:05:01.123456Z`).
fn rfc3339_micros(t: std::time::SystemTime, out: &mut Vec<u8>) {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    digits(out, year.max(0) as u64, 4);
    out.push(b'-');
    digits(out, month, 2);
    out.push(b'-');
    digits(out, day, 2);
    out.push(b'T');
    digits(out, sod / 3600, 2);
    out.push(b':');
    digits(out, sod / 60 % 60, 2);
    out.push(b':');
    digits(out, sod % 60, 2);
    out.push(b'.');
    digits(out, u64::from(d.subsec_micros()), 6);
    out.push(b'Z');
}

/// The Gregorian date of a day count from 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `n` in decimal, zero-padded to `width` digits.
fn digits(out: &mut Vec<u8>, n: u64, width: usize) {
    let start = out.len();
    let mut n = n;
    for _ in 0..width {
        out.push(b'0' + (n % 10) as u8);
        n /= 10;
    }
    out[start..].reverse();
}

/// HELP texts (and units) of every metric Covenant records; `promtool check metrics` wants
/// one per family.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "http_server_request_duration_seconds",
        Unit::Seconds,
        "HTTP requests by method, matched route and status."
    );
    describe_histogram!("graphql_operation_duration_seconds", Unit::Seconds, "GraphQL operations by name and type.");
    describe_histogram!(
        "db_client_operation_duration_seconds",
        Unit::Seconds,
        "PostgreSQL operations (read-model queries, projection transactions)."
    );
    describe_counter!("covenant_commands_total", "Commands by aggregate, command and outcome.");
    describe_histogram!("covenant_command_duration_seconds", Unit::Seconds, "Command handling time, load to append.");
    describe_counter!("covenant_events_appended_total", "Events appended to the event stream.");
    describe_counter!(
        "covenant_leader_retries_total",
        "Publishes and leader reads retried while the stream had no leader (a failover) or the connection came back."
    );
    describe_histogram!("covenant_append_duration_seconds", Unit::Seconds, "JetStream append time (publish to ack).");
    describe_gauge!("covenant_projection_lag_events", "Events in the stream not yet applied by a projection.");
    describe_gauge!(
        "covenant_projection_divergence",
        "Rows of a read model that differ from the fold of the log, as the last `covenant projections verify` found."
    );
    describe_gauge!(
        "covenant_projection_active",
        "1 where this instance holds the projection's lease and runs it, 0 where it stands by."
    );
    describe_counter!("covenant_projection_events_total", "Events applied by each projection.");
    describe_histogram!(
        "covenant_projection_batch_duration_seconds",
        Unit::Seconds,
        "Time to apply one projection batch."
    );
    describe_counter!(
        "covenant_projection_redeliveries_total",
        "Events delivered again and skipped by the checkpoint."
    );
    describe_counter!(
        "covenant_projection_skipped_events_total",
        "Events a projection could not apply (bad type or payload)."
    );
    describe_counter!(
        "covenant_projection_sequence_gaps_total",
        "Batches that stopped at a stream sequence that was not delivered (fetched again)."
    );
    describe_gauge!(
        "covenant_projection_gap_sequence",
        "The sequence a projection is held at because it was not delivered; 0 when none."
    );
    describe_counter!("covenant_http_panics_total", "Requests whose handler panicked (answered 500).");
    describe_counter!(
        "covenant_graphql_time_budget_exceeded_total",
        "Queries stopped at the 10 s time budget (answered UNAVAILABLE)."
    );
    describe_gauge!(
        "nats_consumer_pending_messages",
        "Messages a JetStream consumer has not acknowledged (undelivered plus awaiting ack)."
    );
    describe_gauge!("covenant_countries", "Registered countries.");
    describe_gauge!("covenant_projects", "Live (not deleted) projects.");
    describe_gauge!("covenant_users", "Registered users.");
    describe_gauge!("covenant_fund_usd", "The covenant fund: sum of every country's GDP, in USD.");
    describe_counter!("covenant_projects_created_total", "Projects created.");
}

/// Histogram buckets in seconds (explicit, so p95 can be aggregated with
/// `histogram_quantile`): 1 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0];

/// Installs the process-wide Prometheus recorder once and returns its handle (later calls
/// return the same handle). Its upkeep runs every 5 s on the current runtime when called
/// inside one. (Process, runtime and pool figures are rendered at scrape time by the API.)
pub fn install_metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .expect("static, non-empty buckets")
                .install_recorder()
                .expect("the metrics recorder is installed once per process");
            describe();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let h = handle.clone();
                rt.spawn(async move {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                        h.run_upkeep();
                    }
                });
            }
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    /// A subscriber writing JSON lines into `buf` at the default filter.
    fn json_logs_into(buf: &Buf) -> impl Subscriber + Send + Sync {
        let filter: tracing_subscriber::filter::Targets = DEFAULT_FILTER.parse().expect("filter");
        tracing_subscriber::registry().with(filter).with(JsonLogs { writer: buf.clone() })
    }

    /// The tests install subscribers (one scoped, one global); run one at a time, since
    /// tracing recomputes every callsite's interest when a subscriber appears.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn json_lines_carry_the_span_fields_and_the_event() {
        let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let buf = Buf::default();
        let subscriber = json_logs_into(&buf);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("http", request_id = "r-1", user_id = tracing::field::Empty);
            span.record("user_id", "u-9");
            span.in_scope(|| tracing::info!(status = 200u64, duration_ms = 1.5, "request finished"));
        });
        let text = String::from_utf8(buf.0.lock().expect("buffer").clone()).expect("utf-8");
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
        assert_eq!(line["message"], "request finished");
        assert_eq!((line["request_id"].as_str(), line["user_id"].as_str()), (Some("r-1"), Some("u-9")));
        assert_eq!((line["status"].as_u64(), line["duration_ms"].as_f64()), (Some(200), Some(1.5)));
        assert_eq!(line["level"], "INFO");
        assert!(line["timestamp"].is_string() && line["target"].is_string(), "{line}");
    }

    /// A field may not overwrite a reserved key, and of a repeated name the innermost is
    /// written once (a JSON reader would silently keep one of two equal keys).
    #[test]
    fn reserved_keys_win_and_repeated_fields_are_written_once() {
        let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let buf = Buf::default();
        let subscriber = json_logs_into(&buf);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("http", request_id = "r-outer", level = "spoof");
            span.in_scope(|| tracing::info!(request_id = "r-inner", target = "spoof", note = "a \"quote\"", "m"));
        });
        let text = String::from_utf8(buf.0.lock().expect("buffer").clone()).expect("utf-8");
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
        assert_eq!((line["level"].as_str(), line["request_id"].as_str()), (Some("INFO"), Some("r-inner")));
        assert_ne!(line["target"], "spoof");
        assert_eq!(line["note"], "a \"quote\"");
        for key in ["\"level\"", "\"target\"", "\"request_id\""] {
            assert_eq!(text.matches(key).count(), 1, "{key} in {text}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_in_utc_to_the_microsecond() {
        use std::time::{Duration, UNIX_EPOCH};
        // Epoch, leap days, century rules, the end of a year and today-ish.
        for secs in [0u64, 951_782_400, 951_868_799, 4_107_542_400, 1_704_067_199, 1_798_000_123, 253_402_300_799] {
            for micros in [0u32, 7, 999_999] {
                let t = UNIX_EPOCH + Duration::new(secs, micros * 1000);
                let mut out = Vec::new();
                super::rfc3339_micros(t, &mut out);
                let chrono =
                    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                assert_eq!(String::from_utf8(out).expect("ascii"), chrono);
            }
        }
    }

    #[test]
    fn strings_with_quotes_backslashes_and_control_characters_stay_json() {
        for s in ["plain", "a \"quoted\" word", "back\\slash", "tab\tand\nnewline", "\u{1}", "ünïcødé", ""] {
            let mut out = Vec::new();
            super::json_str(s, &mut out);
            let back: String = serde_json::from_slice(&out).expect("a JSON string");
            assert_eq!(back, s);
        }
    }

    /// The request span is not entered at every poll (`trace::in_request`): an event inside
    /// the request, outside any entered span, still carries the request's fields; inside an
    /// entered span, that span's too.
    #[test]
    fn events_inside_a_request_carry_its_span_fields() {
        let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let buf = Buf::default();
        let subscriber = json_logs_into(&buf);
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("http", request_id = "r-3", role = tracing::field::Empty);
            let cx = opentelemetry::Context::new();
            rt.block_on(covenant_commands::trace::in_request(span, cx, async {
                if let Some(s) = covenant_commands::trace::request_span() {
                    s.record("role", "steward");
                }
                tokio::task::yield_now().await;
                tracing::warn!(code = "X", "inside the request");
                let inner = tracing::info_span!("command", aggregate = "country");
                inner.in_scope(|| tracing::warn!("inside a command"));
            }));
            tracing::warn!("outside any request");
        });
        let text = String::from_utf8(buf.0.lock().expect("buffer").clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0]["message"], "inside the request");
        assert_eq!((lines[0]["request_id"].as_str(), lines[0]["role"].as_str()), (Some("r-3"), Some("steward")));
        assert_eq!(lines[0]["code"], "X");
        assert!(lines[0].get("aggregate").is_none() && lines[0].get("trace_id").is_none(), "{}", lines[0]);
        assert_eq!(lines[1]["message"], "inside a command");
        assert_eq!(lines[1]["aggregate"].as_str(), Some("country"));
        assert!(lines[2].get("request_id").is_none(), "{}", lines[2]);
    }

    /// With traces on, a request's lines carry the trace and span ids of its innermost span.
    #[test]
    fn install_writes_json_lines_with_the_trace_id() {
        use covenant_commands::trace;
        use opentelemetry::trace::TraceContextExt as _;
        let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let buf = Buf::default();
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        install(LogFormat::Json, Some(provider_with(exporter, false)), buf.clone());
        assert!(trace::enabled());
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let span = tracing::info_span!("http", request_id = "r-2");
        let cx = trace::start(&opentelemetry::Context::new(), "HTTP", trace::SpanKind::Server, Vec::new(), Vec::new());
        let inner_id = rt.block_on(trace::in_request(span, cx.clone(), async {
            let inner = trace::child(|| "inner", trace::SpanKind::Internal, Vec::new).expect("a sampled trace");
            trace::in_span(Some(inner.clone()), async {
                tracing::info!(target: "covenant_api::http", status = 200u64, "request finished");
            })
            .await;
            inner.span().span_context().span_id()
        }));
        let text = String::from_utf8(buf.0.lock().expect("buffer").clone()).expect("utf-8");
        let line: serde_json::Value = text
            .lines()
            .find(|l| l.contains("request finished"))
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("no request line in {text:?}"));
        assert_eq!(line["request_id"], "r-2");
        assert_eq!(line["trace_id"].as_str(), Some(cx.span().span_context().trace_id().to_string().as_str()));
        assert_eq!(line["span_id"].as_str(), Some(inner_id.to_string().as_str()));
        // `log` records pass at the logs' level, not at the debug level traces add.
        if std::env::var_os("RUST_LOG").is_none() {
            assert_eq!(log::max_level(), log::LevelFilter::Info);
            log::debug!(target: "sqlx::query", "a statement");
            log::info!(target: "covenant_ops::probe", "through log");
            let text = String::from_utf8(buf.0.lock().expect("buffer").clone()).expect("utf-8");
            assert!(text.contains("through log") && !text.contains("a statement"), "{text}");
        }
    }
}
