//! The subscriber: log lines (JSON or text) and, when traces are exported, the
//! `tracing-opentelemetry` layer that turns spans into OpenTelemetry spans.

use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing::dispatcher::{Dispatch, WeakDispatch};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::{LookupSpan, SpanRef};
use tracing_subscriber::util::SubscriberInitExt as _;

mod request;

pub use request::set_user;

/// The default log filter.
pub const DEFAULT_FILTER: &str = "info,async_nats=warn,sqlx::postgres::notice=warn";

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

/// Installs the global subscriber (logs in `format` to `writer`, filtered by `RUST_LOG`)
/// and, with `provider`, the layer exporting spans to it. Later calls do nothing.
pub fn install<W>(format: LogFormat, provider: Option<SdkTracerProvider>, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| DEFAULT_FILTER.parse().expect("the default filter parses"));
    let max = Layer::<tracing_subscriber::Registry>::max_level_hint(&filter);
    let owner = Owner::default();
    let traces = provider.as_ref().map(crate::sampling::trace_layer);
    // One global filter, no per-layer filters: a per-layer filter looks the span up at
    // each enter and exit (see `sampling::Exported`). A span or event the filter refuses is
    // never built. With traces, it lets through every `info` span as well, whatever the
    // logs show, so that the traces do not depend on `RUST_LOG`.
    let dispatch = match traces {
        None => {
            let logs = logs_layer(format, writer, owner.clone());
            Dispatch::new(tracing_subscriber::registry().with(filter).with(logs))
        }
        Some(traces) => {
            let logs = logs_layer(format, writer, owner.clone());
            let filter = crate::sampling::LogsAndSpans(filter);
            Dispatch::new(tracing_subscriber::registry().with(filter).with(logs).with(traces))
        }
    };
    let _ = owner.set(dispatch.downgrade());
    if dispatch.try_init().is_ok() {
        if let Some(p) = provider {
            opentelemetry::global::set_tracer_provider(p);
        }
        // `log` records (sqlx writes one per statement) pass only where the logs show them.
        log::set_max_level(as_log(max.unwrap_or(tracing::level_filters::LevelFilter::TRACE)));
    }
}

/// The log layer in `format`, writing to `writer`.
fn logs_layer<S, W>(format: LogFormat, writer: W, owner: Owner) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Json => request::Requests.and_then(json_logs(writer, owner)).boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
    }
}

/// The dispatch a JSON log layer belongs to, set once the subscriber around the layer is
/// made. The layer reads a span's OpenTelemetry ids through it rather than through
/// `tracing::dispatcher::get_default`: called while an event is being dispatched, that
/// nested lookup yields `Dispatch::none` whenever any thread has a scoped subscriber, and
/// the line would silently lose its trace id.
type Owner = Arc<OnceLock<WeakDispatch>>;

/// The JSON log layer: DESIGN section 8's fields at the top level of each line (with
/// [`request::Requests`] before it, which keeps the request's fields for the lines of the
/// spans inside it); the trace and span ids come from the dispatch in `owner`.
fn json_logs<S, W>(writer: W, owner: Owner) -> json_subscriber::JsonLayer<S, W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    let mut layer = json_subscriber::JsonLayer::new(writer);
    layer
        .with_timer("timestamp", Rfc3339Micros)
        .with_level("level")
        .with_target("target")
        .with_flattened_event()
        .with_top_level_flattened_current_span();
    // The request's fields from above the line's own span, and the ids of that span.
    layer.add_multiple_dynamic_fields(move |event, ctx, out| {
        let Some(span) = ctx.event_span(event) else { return };
        request::write_inherited(&span, out);
        if let Some((trace, span)) = owner.get().and_then(WeakDispatch::upgrade).and_then(|d| ids(&span, &d)) {
            let _ = out.write_field("trace_id", trace);
            let _ = out.write_field("span_id", span);
        }
    });
    layer
}

/// The line's `timestamp`: UTC, RFC 3339 with microseconds (`2026-12-07T23:10:25.977972Z`),
/// as `tracing_subscriber::fmt::time::SystemTime` writes it, through `humantime`, which
/// writes the digits into a buffer. `SystemTime` formats each of its seven numbers through
/// `core::fmt` padding: the timestamp took about 2,500 of the 15,500 instructions of a
/// request's log line under callgrind, and takes about 700 this way.
struct Rfc3339Micros;

impl tracing_subscriber::fmt::time::FormatTime for Rfc3339Micros {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", humantime::format_rfc3339_micros(std::time::SystemTime::now()))
    }
}

/// The trace and span ids of `span` (a span of `dispatch`), when it is exported.
fn ids<S>(span: &SpanRef<'_, S>, dispatch: &Dispatch) -> Option<(String, String)>
where
    S: for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::get_otel_context(&span.id(), dispatch).and_then(|cx| {
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
    })
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

    impl Buf {
        fn lines(&self) -> Vec<serde_json::Value> {
            let text = String::from_utf8(self.0.lock().expect("buffer").clone()).expect("utf-8");
            text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"))).collect()
        }
    }

    /// The tests install subscribers (one scoped, one global); run one at a time, since
    /// tracing recomputes every callsite's interest when a subscriber appears.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn json_lines_carry_the_span_fields_and_the_event() {
        let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // As `install` arranges them: the logs' filter alone (no traces), or with every
        // `info` span let through for the traces.
        for traces in [false, true] {
            let buf = Buf::default();
            let filter: Targets = DEFAULT_FILTER.parse().expect("filter");
            let dispatch = if traces {
                let logs = logs_layer(LogFormat::Json, buf.clone(), Owner::default());
                let filter = crate::sampling::LogsAndSpans(filter);
                Dispatch::new(tracing_subscriber::registry().with(filter).with(logs))
            } else {
                let logs = logs_layer(LogFormat::Json, buf.clone(), Owner::default());
                Dispatch::new(tracing_subscriber::registry().with(filter).with(logs))
            };
            tracing::dispatcher::with_default(&dispatch, || {
                let span = tracing::info_span!("http", request_id = "r-1", user_id = tracing::field::Empty);
                span.record("user_id", "u-9");
                span.in_scope(|| {
                    let inner = tracing::info_span!("command", aggregate = "country");
                    inner.in_scope(|| tracing::info!(status = 200u64, duration_ms = 1.5, note = "a \"quote\"", "done"));
                    tracing::debug!("below the filter");
                });
                tracing::warn!("outside any span");
            });
            let lines = buf.lines();
            assert_eq!(lines.len(), 2, "traces {traces}: {lines:?}");
            let line = &lines[0];
            assert_eq!(line["message"], "done");
            assert_eq!((line["request_id"].as_str(), line["user_id"].as_str()), (Some("r-1"), Some("u-9")));
            assert_eq!(line["aggregate"], "country");
            assert_eq!((line["status"].as_u64(), line["duration_ms"].as_f64()), (Some(200), Some(1.5)));
            assert_eq!(line["note"], "a \"quote\"");
            assert_eq!(line["level"], "INFO");
            let at = line["timestamp"].as_str().expect("timestamp");
            assert!(at.len() == "2026-12-04T06:05:01.123456Z".len() && at.ends_with('Z'), "{at}");
            let written = humantime::parse_rfc3339(at).expect("an RFC 3339 timestamp");
            let age = std::time::SystemTime::now().duration_since(written).expect("not in the future");
            assert!(age < std::time::Duration::from_secs(60), "{at}");
            assert!(line["target"].is_string() && line.get("trace_id").is_none(), "{line}");
            assert!(lines[1].get("request_id").is_none(), "{}", lines[1]);
        }
    }

    /// `set_user` names the user once on each line of the request, its own and those of
    /// the spans below it; in the text format the span records it.
    #[test]
    fn set_user_names_the_user_on_every_line_of_the_request() {
        let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for format in [LogFormat::Json, LogFormat::Text] {
            let buf = Buf::default();
            let filter: Targets = DEFAULT_FILTER.parse().expect("filter");
            let logs = logs_layer(format, buf.clone(), Owner::default());
            let dispatch = Dispatch::new(tracing_subscriber::registry().with(filter).with(logs));
            tracing::dispatcher::with_default(&dispatch, || {
                let empty = tracing::field::Empty;
                let span = tracing::info_span!("http", request_id = "r-3", user_id = empty, role = empty);
                crate::set_user(&span, "u-7", "steward");
                span.in_scope(|| {
                    tracing::info!("own line");
                    tracing::info_span!("command").in_scope(|| tracing::info!("inner line"));
                });
            });
            let text = String::from_utf8(buf.0.lock().expect("buffer").clone()).expect("utf-8");
            assert_eq!(text.lines().count(), 2, "{text}");
            for line in text.lines() {
                assert!(line.contains("u-7") && line.contains("steward") && line.contains("r-3"), "{line}");
            }
            if format == LogFormat::Json {
                for line in text.lines() {
                    assert_eq!(line.matches("\"user_id\"").count(), 1, "{line}");
                    assert_eq!(line.matches("\"role\"").count(), 1, "{line}");
                }
            }
        }
    }

    /// A line logged in a request's span carries the span's name and every field it
    /// recorded, at creation or later, each once; a line in a span below it carries that
    /// span's own fields and only the request's `request_id`, `user_id` and `role`.
    #[test]
    fn a_request_span_writes_its_own_fields_on_its_lines() {
        let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let buf = Buf::default();
        let filter: Targets = DEFAULT_FILTER.parse().expect("filter");
        let logs = logs_layer(LogFormat::Json, buf.clone(), Owner::default());
        let dispatch = Dispatch::new(tracing_subscriber::registry().with(filter).with(logs));
        tracing::dispatcher::with_default(&dispatch, || {
            let empty = tracing::field::Empty;
            let span = tracing::info_span!(
                "http",
                http.route = "/api/graphql",
                request_id = "r-5",
                attempt = 2u64,
                otel.kind = empty,
                user_id = empty,
                role = empty,
            );
            span.record("otel.kind", "server");
            crate::set_user(&span, "u-1", "admin");
            crate::set_user(&span, "u-2", "steward");
            tracing::info!(parent: &span, status = 200u64, "request finished");
            span.in_scope(|| {
                tracing::info_span!("command", aggregate = "country").in_scope(|| tracing::info!("inner"))
            });
        });
        let lines = buf.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let own = &lines[0];
        let expected = [
            ("name", serde_json::json!("http")),
            ("http.route", serde_json::json!("/api/graphql")),
            ("request_id", serde_json::json!("r-5")),
            ("attempt", serde_json::json!(2)),
            ("otel.kind", serde_json::json!("server")),
            ("user_id", serde_json::json!("u-2")),
            ("role", serde_json::json!("steward")),
            ("status", serde_json::json!(200)),
            ("message", serde_json::json!("request finished")),
        ];
        for (key, value) in &expected {
            assert_eq!(&own[*key], value, "{key}: {own}");
        }
        let text = String::from_utf8(buf.0.lock().expect("buffer").clone()).expect("utf-8");
        let first = text.lines().next().expect("a line");
        for (key, _) in &expected {
            assert_eq!(first.matches(&format!("\"{key}\":")).count(), 1, "{key}: {first}");
        }
        let inner = &lines[1];
        assert_eq!(
            (inner["name"].as_str(), inner["aggregate"].as_str()),
            (Some("command"), Some("country")),
            "{inner}"
        );
        assert_eq!((inner["request_id"].as_str(), inner["user_id"].as_str()), (Some("r-5"), Some("u-2")), "{inner}");
        assert!(inner.get("http.route").is_none() && inner.get("attempt").is_none(), "{inner}");
    }

    /// With traces exported, a line carries the trace and span ids of its span, which is
    /// exported under its parent; `log` records pass at the logs' level.
    #[test]
    fn install_writes_json_lines_with_the_trace_id() {
        let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let buf = Buf::default();
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        install(LogFormat::Json, Some(crate::provider_with(exporter.clone(), false)), buf.clone());
        // A scoped subscriber on another thread (as another test may hold) must not cost the
        // lines their trace ids: it once did, through a nested `get_default`.
        let (scoped, is_scoped) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|threads| {
            threads.spawn(move || {
                let _scoped = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
                let _ = scoped.send(());
                let _ = released.recv(); // until `release` is dropped, on success or panic
            });
            is_scoped.recv().expect("the scoped subscriber is set");
            let _release = release;
            logs_with_trace_ids(&buf, &exporter);
        });
        if std::env::var_os("RUST_LOG").is_none() {
            assert_eq!(log::max_level(), log::LevelFilter::Info);
            log::debug!(target: "sqlx::query", "a statement");
            log::info!(target: "covenant_ops::probe", "through log");
            let text = String::from_utf8(buf.0.lock().expect("buffer").clone()).expect("utf-8");
            assert!(text.contains("through log") && !text.contains("a statement"), "{text}");
        }
    }

    /// A line logged under an exported span names the trace and span ids of that span.
    fn logs_with_trace_ids(buf: &Buf, exporter: &opentelemetry_sdk::trace::InMemorySpanExporter) {
        use crate::OpenTelemetrySpanExt as _;
        let span = tracing::info_span!("http", otel.name = "HTTP GET /", otel.kind = "server", request_id = "r-2");
        let inner_id = span.in_scope(|| {
            assert!(crate::sampled());
            let inner = tracing::info_span!("inner");
            inner.in_scope(|| tracing::info!(target: "covenant_api::http", status = 200u64, "request finished"));
            inner.context().span().span_context().span_id()
        });
        let trace = span.context().span().span_context().trace_id();
        drop(span);
        let line = buf.lines().into_iter().find(|l| l["message"] == "request finished").expect("the line");
        assert_eq!(line["request_id"], "r-2");
        assert_eq!(line["trace_id"].as_str(), Some(trace.to_string().as_str()));
        assert_eq!(line["span_id"].as_str(), Some(inner_id.to_string().as_str()));
        let spans = exporter.get_finished_spans().expect("spans");
        let http = spans.iter().find(|s| s.name == "HTTP GET /").expect("the server span");
        assert_eq!(http.span_kind, opentelemetry::trace::SpanKind::Server);
        assert!(spans.iter().any(|s| s.name == "inner" && s.parent_span_id == http.span_context.span_id()));
    }
}
