//! The service's own endpoints and request tracking: `/metrics`, the health check, and
//! each request's span, metric and log line.

use super::*;
use covenant_telemetry::metrics::Histograms;

/// The target of the per-request log line (kept as it was before this module was split
/// out: log pipelines filter on it).
const REQUEST_LOG: &str = "covenant_api::http";

/// The standard HTTP methods: the only ones a metric label or a kept span name spells out.
const METHODS: [&str; 9] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"];

/// `GET /metrics`: Prometheus text format.
pub async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    match &state.metrics {
        Some(h) => {
            crate::process::collect(&state.pool);
            collect_nats_and_audit(&state).await;
            let mut r = h.render().into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            r
        }
        None => (StatusCode::NOT_FOUND, "metrics are not enabled in this process").into_response(),
    }
}

/// Describes the series `/metrics` sets at scrape time.
pub fn describe() {
    metrics::describe_gauge!("covenant_nats_connected", "Whether the service is connected to NATS.");
    metrics::describe_counter!(
        "covenant_websocket_init_timed_out_total",
        "WebSockets closed because they sent no connection_init in time."
    );
    metrics::describe_counter!(
        "covenant_graphql_document_cache_total",
        "GraphQL documents found already parsed (hit) or parsed (miss)."
    );
    metrics::describe_gauge!("covenant_audit_checkpoint_size", "Events covered by the latest signed checkpoint.");
    metrics::describe_gauge!(
        "covenant_audit_checkpoint_timestamp_seconds",
        "When the latest checkpoint was appended (unix time; 0: none yet)."
    );
    metrics::describe_gauge!("covenant_audit_unsealed_events", "Events after the latest checkpoint.");
}

/// Read at scrape time: whether NATS is connected, and the audit trail's latest signed
/// checkpoint (size, time) and unsealed tail, read from the checkpoint stream (so the
/// sealer, a process of its own, needs no metrics endpoint). A trail that cannot be read
/// leaves the audit gauges as they were.
async fn collect_nats_and_audit(state: &AppState) {
    let connected = state.nats.connection_state() == async_nats::connection::State::Connected;
    metrics::gauge!("covenant_nats_connected").set(if connected { 1.0 } else { 0.0 });
    if !connected {
        return;
    }
    let js = async_nats::jetstream::new(state.nats.clone());
    // A checkpoint that cannot be read counts as none: the gauges then show the sealer behind.
    let read = async {
        let trail = crate::trail::read(&js, &state.stream).await?;
        let latest = trail.latest.ok().flatten();
        let (size, at) = latest.map_or((0, 0.0), |l| (l.size, l.at.timestamp_nanos_opt().unwrap_or(0) as f64 / 1e9));
        Some((trail.last_sequence, size, at))
    };
    if let Ok(Some((last, size, at))) = tokio::time::timeout(Duration::from_secs(2), read).await {
        metrics::gauge!("covenant_audit_checkpoint_size").set(size as f64);
        metrics::gauge!("covenant_audit_checkpoint_timestamp_seconds").set(at);
        metrics::gauge!("covenant_audit_unsealed_events").set(last.saturating_sub(size) as f64);
    }
}

/// `GET /api/healthcheck`: `{"status":"ok"}` with per-dependency checks; 503 when degraded.
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    let nats_ok = state.nats.connection_state() == async_nats::connection::State::Connected;
    let pg =
        tokio::time::timeout(Duration::from_secs(2), sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool))
            .await;
    let pg_ok = matches!(pg, Ok(Ok(1)));
    let monitor = covenant_projections::monitor::Monitor::new(
        async_nats::jetstream::new(state.nats.clone()),
        &state.stream,
        state.pool.clone(),
    );
    let (lag_ok, lags) = match (nats_ok && pg_ok).then_some(()) {
        Some(()) => match tokio::time::timeout(Duration::from_secs(2), monitor.tick()).await {
            Ok(Ok(statuses)) => {
                let ok = statuses.iter().all(|s| s.lag <= state.max_lag);
                (
                    ok,
                    statuses.into_iter().map(|s| (s.name, serde_json::json!(s.lag))).collect::<serde_json::Map<_, _>>(),
                )
            }
            _ => (false, serde_json::Map::new()),
        },
        None => (false, serde_json::Map::new()),
    };
    let word = |ok: bool| if ok { "ok" } else { "down" };
    let healthy = nats_ok && pg_ok && lag_ok;
    let body = serde_json::json!({
        "status": if healthy { "ok" } else { "degraded" },
        "checks": {
            "nats": word(nats_ok),
            "postgres": word(pg_ok),
            "projections": { "status": if lag_ok { "ok" } else { "lagging" }, "lag_events": lags, "max_lag": state.max_lag },
        }
    });
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

/// The longest `x-request-id` a client may give.
pub const REQUEST_ID_MAX: usize = 128;

/// Drops an `x-request-id` the service will not adopt, so that a new one is made: empty,
/// longer than [`REQUEST_ID_MAX`] or not visible ASCII. The id is written on every log line
/// of the request and echoed: taken as sent, a client could make each line as long as the
/// header limit allows (hundreds of KB) or break a log pipeline's parsing.
pub async fn usable_request_id(mut req: Request) -> Request {
    let usable = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= REQUEST_ID_MAX && b.iter().all(|c| c.is_ascii_graphic())
    };
    if req.headers().get_all("x-request-id").iter().count() > 1
        || req.headers().get("x-request-id").is_some_and(|v| !usable(v))
    {
        req.headers_mut().remove("x-request-id");
    }
    req
}

/// The request's span (`HTTP <method> <route>`, kind server, parented on an incoming
/// W3C `traceparent`), `http_server_request_duration_seconds{method,route,status}` (route =
/// the matched path pattern, never the raw URI) and one log line per request with its
/// `request_id`, `status`, `duration_ms` and, once signed in, `user_id` and `role` (the
/// fields of its `tracing` span).
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    use covenant_telemetry::OpenTelemetrySpanExt as _;
    use opentelemetry::trace::TraceContextExt as _;
    use tracing::Instrument as _;
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let headers = req.headers();
    let parent = covenant_telemetry::propagation::extract(|name| headers.get(name).and_then(|v| v.to_str().ok()));
    // Sampled or not is decided before the span is made: an unsampled request's span is
    // seen by the logs only (see covenant_telemetry::root_span).
    let sampled = covenant_telemetry::sample(&parent);
    let span = covenant_telemetry::root_span(sampled, || {
        tracing::info_span!(
            "http",
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
            http.request.method = method.as_str(),
            http.route = route.as_str(),
            request_id = request_id.as_str(),
            user_id = tracing::field::Empty,
            role = tracing::field::Empty,
        )
    });
    if sampled {
        // The OpenTelemetry names, for the exported span only: an unsampled request's log
        // lines need not carry them.
        span.record("otel.name", server_span_name(&method, &route).as_ref());
        span.record("otel.kind", "server");
        if parent.span().span_context().is_valid() {
            // Before anything reads the span's context, which fixes its parent.
            let _ = span.set_parent(parent);
        }
    }
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if sampled {
        // An attribute of the exported span only: the log line has it as `status`.
        span.set_attribute("http.response.status_code", i64::from(status));
    }
    // The line names its span instead of entering it.
    let ms = elapsed.as_secs_f64() * 1e3;
    if status >= 500 {
        tracing::error!(target: REQUEST_LOG, parent: &span, status, duration_ms = ms, "request failed");
    } else {
        tracing::info!(target: REQUEST_LOG, parent: &span, status, duration_ms = ms, "request finished");
    }
    let method = method_label(&method);
    state.histograms.requests.record(
        (method, route, status),
        |(method, route, status)| {
            vec![
                metrics::Label::new("method", *method),
                metrics::Label::new("route", route.clone()),
                metrics::Label::new("status", status.to_string()),
            ]
        },
        elapsed.as_secs_f64(),
    );
    response
}

/// The handles of the histograms every request records (see
/// `covenant_telemetry::metrics`): held by the service's state.
#[derive(Debug)]
pub struct RequestHistograms {
    /// `http_server_request_duration_seconds{method,route,status}`.
    requests: Histograms<(&'static str, String, u16)>,
    /// `graphql_operation_duration_seconds{operation,type}`.
    pub(crate) operations: Histograms<(String, &'static str)>,
}

impl Default for RequestHistograms {
    fn default() -> Self {
        Self {
            requests: Histograms::new("http_server_request_duration_seconds"),
            operations: Histograms::new("graphql_operation_duration_seconds"),
        }
    }
}

/// The `method` label: a standard method's name, else `_OTHER` (as OpenTelemetry's HTTP
/// conventions say). HTTP allows any token as a method; a label per token would let a
/// client add series to the registry, held in memory and scraped, without bound.
fn method_label(method: &str) -> &'static str {
    METHODS.into_iter().find(|m| *m == method).unwrap_or("_OTHER")
}

/// `HTTP <method> <route>`, the server span's name: made once for each standard method and
/// route pattern (both few), and kept; formatted each time for any other method.
fn server_span_name(method: &str, route: &str) -> std::borrow::Cow<'static, str> {
    use std::collections::HashMap;
    use std::sync::{Mutex, PoisonError};
    /// Per route pattern, the name for each method of `METHODS`.
    type Names = HashMap<String, [Option<&'static str>; 9]>;
    static NAMES: Mutex<Option<Names>> = Mutex::new(None);
    let Some(m) = METHODS.iter().position(|s| *s == method) else {
        return format!("HTTP {method} {route}").into();
    };
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    let map = names.get_or_insert_with(HashMap::new);
    if let Some(Some(name)) = map.get(route).map(|n| n[m]) {
        return name.into();
    }
    let name: &'static str = Box::leak(format!("HTTP {method} {route}").into_boxed_str());
    map.entry(route.to_owned()).or_default()[m] = Some(name);
    name.into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_span_names_are_method_and_route_whether_kept_or_formatted() {
        for _ in 0..2 {
            assert_eq!(super::server_span_name("POST", "/api/graphql"), "HTTP POST /api/graphql");
            assert_eq!(super::server_span_name("GET", "/api/graphql"), "HTTP GET /api/graphql");
            assert_eq!(super::server_span_name("BREW", "unmatched"), "HTTP BREW unmatched");
        }
        assert!(matches!(super::server_span_name("GET", "/metrics"), std::borrow::Cow::Borrowed(_)));
        assert!(matches!(super::server_span_name("BREW", "/metrics"), std::borrow::Cow::Owned(_)));
    }
}
