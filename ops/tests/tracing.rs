//! One GraphQL mutation, one trace: the HTTP, GraphQL, command and send spans share a trace
//! id with the right parents; the projection's process span (kind CONSUMER) links to the
//! send span and its SQL span follows; the request's JSON log lines carry the same trace
//! id. Its own test binary, because it installs the process-wide subscriber (with the
//! SDK's in-memory exporter).

#[path = "it/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use covenant_domain::Role;
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
    type Writer = Buf;
    fn make_writer(&'a self) -> Buf {
        self.clone()
    }
}

fn attr(s: &SpanData, key: &str) -> Option<String> {
    s.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
}

fn find<'a>(spans: &'a [SpanData], what: &str, pred: impl Fn(&SpanData) -> bool) -> &'a SpanData {
    spans.iter().find(|s| pred(s)).unwrap_or_else(|| {
        let names: Vec<String> = spans.iter().map(|s| format!("{} ({:?})", s.name, s.span_kind)).collect();
        panic!("no {what} span among {names:?}")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mutation_is_one_trace_from_http_to_the_projection_sql() {
    let exporter = InMemorySpanExporter::default();
    let provider = covenant_ops::telemetry::provider_with(exporter.clone(), false);
    let logs = Buf::default();
    covenant_ops::telemetry::install(covenant_ops::telemetry::LogFormat::Json, Some(provider.clone()), logs.clone());

    let app = harness::spawn_app().await;
    let token = app.user_token("tracer@example.org", Role::Admin).await;
    let auth = format!("Bearer {token}");
    let mutation =
        r#"mutation Register { registerCountry(code: "NZ", name: "New Zealand", gdpUsd: "250") { sequence } }"#;
    let (status, body) =
        harness::graphql(app.addr, mutation, &[("Authorization", &auth), ("x-request-id", "req-trace-1")]).await;
    assert_eq!(status, 200, "{body}");
    let seq: u64 = body["data"]["registerCountry"]["sequence"].as_str().expect("sequence").parse().expect("number");
    covenant_projections::checkpoint::wait_for_sequence(
        &app.pool,
        &covenant_projections::checkpoint::PROJECTIONS,
        seq,
        Duration::from_secs(10),
    )
    .await
    .expect("projected");

    // The server span ends once the response is written, the projections' after their
    // commits: poll until the request's trace and both consumers are exported.
    let complete = |spans: &[SpanData]| {
        let Some(http) = spans.iter().find(|s| attr(s, "request_id").as_deref() == Some("req-trace-1")) else {
            return false;
        };
        let trace = http.span_context.trace_id();
        let Some(send) = spans.iter().find(|s| s.span_context.trace_id() == trace && s.span_kind == SpanKind::Producer)
        else {
            return false;
        };
        let linked = spans
            .iter()
            .filter(|s| s.links.links.iter().any(|l| l.span_context.span_id() == send.span_context.span_id()))
            .count();
        linked >= 2
    };
    let mut spans = Vec::new();
    for _ in 0..100 {
        let _ = provider.force_flush();
        spans = exporter.get_finished_spans().expect("spans");
        if complete(&spans) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let http = find(&spans, "HTTP server", |s| {
        s.span_kind == SpanKind::Server && attr(s, "request_id").as_deref() == Some("req-trace-1")
    });
    let trace = http.span_context.trace_id();
    assert_eq!(http.name, "HTTP POST /api/graphql");
    assert_eq!(attr(http, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr(http, "role").as_deref(), Some("admin"));
    let in_trace: Vec<SpanData> = spans.iter().filter(|s| s.span_context.trace_id() == trace).cloned().collect();
    let gql = find(&in_trace, "GraphQL", |s| s.name == "mutation Register");
    assert_eq!(gql.parent_span_id, http.span_context.span_id(), "GraphQL under HTTP");
    let cmd = find(&in_trace, "command", |s| s.name == "command country.register");
    assert_eq!(cmd.parent_span_id, gql.span_context.span_id(), "command under GraphQL");
    let send = find(&in_trace, "send", |s| s.span_kind == SpanKind::Producer);
    assert!(send.name.starts_with("send ") && send.name.ends_with(".country"), "{}", send.name);
    assert_eq!(send.parent_span_id, cmd.span_context.span_id(), "send under the command");

    // Each projection processes the event in a consumer span linked to the send span,
    // with its SQL transaction as a child.
    let consumers: Vec<&SpanData> = spans
        .iter()
        .filter(|s| {
            s.span_kind == SpanKind::Consumer
                && s.links.links.iter().any(|l| l.span_context.span_id() == send.span_context.span_id())
        })
        .collect();
    let projections: std::collections::BTreeSet<String> =
        consumers.iter().filter_map(|s| attr(s, "projection")).collect();
    assert_eq!(projections.into_iter().collect::<Vec<_>>(), ["audit", "ledger"], "both projections link to the send");
    for c in &consumers {
        assert!(c.name.starts_with("process ") && c.name.ends_with(".country"), "{}", c.name);
        let sql =
            find(&spans, "SQL", |s| s.parent_span_id == c.span_context.span_id() && s.span_kind == SpanKind::Client);
        assert!(sql.name.ends_with(" transaction"), "{}", sql.name);
        assert_eq!(attr(sql, "db.system.name").as_deref(), Some("postgresql"));
    }

    // The request's log lines carry its trace id (and request id, user, role, status).
    let text = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("UTF-8 logs");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .filter(|l: &serde_json::Value| l["request_id"] == "req-trace-1")
        .collect();
    let finished = lines.iter().find(|l| l["message"] == "request finished").unwrap_or_else(|| panic!("{text}"));
    for l in &lines {
        assert_eq!(l["trace_id"].as_str(), Some(trace.to_string().as_str()), "{l}");
        assert!(l["span_id"].is_string() && l["timestamp"].is_string() && l["level"].is_string(), "{l}");
    }
    assert_eq!(finished["status"], 200);
    assert_eq!(finished["role"], "admin");
    assert!(finished["user_id"].is_string() && finished["duration_ms"].is_number(), "{finished}");
    assert_eq!(finished["target"], "covenant_api::http");
    app.stop().await;
}
