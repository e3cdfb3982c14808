//! HTTP routes: GraphQL over HTTP (honouring `Accept`), GraphiQL, health, metrics, and the
//! request metrics middleware.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::http::GraphiQLSource;
use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use covenant_projections::checkpoint::{PROJECTIONS, wait_for_sequence};

use crate::AppState;
use crate::auth;
use crate::graphql::mutation::ClientIp;

/// `application/graphql-response+json`.
pub const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
/// Header asking for read-your-writes.
pub const MIN_SEQUENCE: &str = "covenant-min-sequence";
/// How long a request waits for `Covenant-Min-Sequence`.
pub const MIN_SEQUENCE_WAIT: Duration = Duration::from_secs(5);

/// The media type to answer with, from `Accept` (GraphQL over HTTP): `None` = 406.
fn negotiate(headers: &HeaderMap) -> Option<&'static str> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some("application/json");
    };
    let types: Vec<&str> = accept.split(',').map(|t| t.split(';').next().unwrap_or("").trim()).collect();
    if types.contains(&GRAPHQL_RESPONSE) {
        Some(GRAPHQL_RESPONSE)
    } else if types.iter().any(|t| *t == "application/json" || *t == "application/*" || *t == "*/*") {
        Some("application/json")
    } else {
        None
    }
}

fn json_response(status: StatusCode, media: &'static str, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    r
}

fn request_error(status: StatusCode, media: &'static str, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    json_response(status, media, body.to_string().into_bytes())
}

/// `POST /api/graphql`.
pub async fn graphql(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(media) = negotiate(&headers) else {
        return request_error(
            StatusCode::NOT_ACCEPTABLE,
            "application/json",
            "BAD_REQUEST",
            "Accept application/graphql-response+json or application/json",
        );
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")) {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            "BAD_REQUEST",
            "Content-Type must be application/json",
        );
    }
    let principal = match bearer(&headers) {
        None => None,
        Some(token) => match auth::authenticate(&state.pool, token).await {
            Ok(p) => Some(p),
            Err(auth::AuthError::Database(_)) => {
                return request_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    media,
                    "UNAVAILABLE",
                    "authentication unavailable",
                );
            }
            Err(e) => return request_error(StatusCode::UNAUTHORIZED, media, "UNAUTHENTICATED", &e.to_string()),
        },
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                media,
                "BAD_REQUEST",
                &format!("request body is not a GraphQL request: {e}"),
            );
        }
    };
    if let Some(v) = headers.get(MIN_SEQUENCE) {
        let Some(seq) = v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) else {
            return request_error(
                StatusCode::BAD_REQUEST,
                media,
                "BAD_USER_INPUT",
                "Covenant-Min-Sequence must be a stream sequence number",
            );
        };
        if let Err(e) = wait_for_sequence(&state.pool, &PROJECTIONS, seq, MIN_SEQUENCE_WAIT).await {
            let status = if media == GRAPHQL_RESPONSE { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
            return request_error(status, media, "UNAVAILABLE", &e.to_string());
        }
    }
    let request = request.data(principal).data(ClientIp(peer.ip()));
    let started = Instant::now();
    let operation = request.operation_name.clone().unwrap_or_else(|| "anonymous".into());
    let mut response = state.schema.execute(request).await;
    metrics::histogram!("graphql_operation_duration_seconds", "operation" => operation, "type" => "query")
        .record(started.elapsed().as_secs_f64());
    // Parse and validation errors leave no data: a request error (400 under the new media type).
    let request_failed = response.data == async_graphql::Value::Null && !response.errors.is_empty();
    // Every error carries a code: parse, validation and input-coercion errors are the
    // client's (BAD_USER_INPUT); resolvers always set theirs.
    for e in &mut response.errors {
        let ext = e.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", "BAD_USER_INPUT");
        }
    }
    let status = if request_failed && media == GRAPHQL_RESPONSE { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    match serde_json::to_vec(&response) {
        Ok(body) => json_response(status, media, body),
        Err(_) => request_error(StatusCode::INTERNAL_SERVER_ERROR, media, "INTERNAL", "internal error"),
    }
}

/// The bearer token of an `Authorization` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// `GET /api/graphql`: GraphiQL.
pub async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/api/graphql").title("Covenant GraphiQL").finish())
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    match &state.metrics {
        Some(h) => {
            let mut r = h.render().into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            r
        }
        None => (StatusCode::NOT_FOUND, "metrics are not enabled in this process").into_response(),
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

/// Records `http_server_request_duration_seconds{method,route,status}` (route = the
/// matched path pattern, never the raw URI).
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("http_server_request_duration_seconds", "method" => method, "route" => route, "status" => status).record(started.elapsed().as_secs_f64());
    response
}
