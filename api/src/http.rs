//! HTTP routes: GraphQL over HTTP (honouring `Accept`), GraphiQL, health, metrics, and the
//! request metrics middleware.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use covenant_projections::checkpoint::{PROJECTIONS, wait_for_sequence};

use crate::AppState;
use crate::auth;
use crate::error::Code;
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

fn request_error(status: StatusCode, media: &'static str, code: Code, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code.as_str() } }] });
    json_response(status, media, body.to_string().into_bytes())
}

/// `POST /api/graphql`.
pub async fn graphql(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let Some(media) = negotiate(&headers) else { return not_acceptable() };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let message = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the request body is larger than {} bytes", crate::BODY_LIMIT)
            } else {
                "the request body could not be read".to_owned()
            };
            return request_error(e.status(), media, Code::BadUserInput, &message);
        }
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")) {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            Code::BadUserInput,
            "Content-Type must be application/json",
        );
    }
    let params = serde_json::from_slice::<serde_json::Value>(&body)
        .map_err(|e| format!("request body is not JSON: {e}"))
        .and_then(|v| request_params(v, false));
    match params {
        Ok(request) => execute(&state, peer, &headers, media, request, false).await,
        Err(e) => request_error(StatusCode::BAD_REQUEST, media, Code::BadUserInput, &e),
    }
}

/// `GET /api/graphql?query=…`: a query (never a mutation) with its parameters URL-encoded
/// (`variables` and `extensions` as JSON strings).
async fn graphql_get(state: &AppState, peer: SocketAddr, headers: &HeaderMap, query_string: &str) -> Response {
    let Some(media) = negotiate(headers) else { return not_acceptable() };
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_str(query_string) {
        Ok(p) => p,
        Err(e) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                media,
                Code::BadUserInput,
                &format!("bad query string: {e}"),
            );
        }
    };
    let mut params = serde_json::Map::new();
    for (k, v) in pairs {
        let value = match k.as_str() {
            "variables" | "extensions" => match serde_json::from_str(&v) {
                Ok(v) => v,
                Err(_) => {
                    return request_error(
                        StatusCode::BAD_REQUEST,
                        media,
                        Code::BadUserInput,
                        &format!("`{k}` is not JSON"),
                    );
                }
            },
            _ => serde_json::Value::String(v),
        };
        params.insert(k, value);
    }
    match request_params(serde_json::Value::Object(params), true) {
        Ok(request) => execute(state, peer, headers, media, request, true).await,
        Err(e) => request_error(StatusCode::BAD_REQUEST, media, Code::BadUserInput, &e),
    }
}

fn not_acceptable() -> Response {
    request_error(
        StatusCode::NOT_ACCEPTABLE,
        "application/json",
        Code::BadUserInput,
        "Accept application/graphql-response+json or application/json",
    )
}

/// The GraphQL request in `v`, its parameters checked as GraphQL over HTTP requires:
/// `query` a string, `operationName` a string or null, `variables` and `extensions` maps
/// or null.
fn request_params(v: serde_json::Value, get: bool) -> Result<async_graphql::Request, String> {
    use serde_json::Value;
    let Value::Object(map) = &v else { return Err("the request must be a JSON object".into()) };
    match map.get("query") {
        Some(Value::String(_)) => {}
        None => return Err("the request has no `query`".into()),
        Some(_) => return Err("`query` must be a string".into()),
    }
    if !matches!(map.get("operationName"), None | Some(Value::Null | Value::String(_))) {
        return Err("`operationName` must be a string or null".into());
    }
    for key in ["variables", "extensions"] {
        if !matches!(map.get(key), None | Some(Value::Null | Value::Object(_))) {
            return Err(format!("`{key}` must be a map or null{}", if get { " (URL-encoded JSON)" } else { "" }));
        }
    }
    serde_json::from_value(v).map_err(|e| format!("not a GraphQL request: {e}"))
}

/// Runs a checked request: authentication, the per-user limit, read-your-writes, then
/// the schema; shapes the response as GraphQL over HTTP says.
async fn execute(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    media: &'static str,
    request: async_graphql::Request,
    get: bool,
) -> Response {
    // Before anything parses the document: its size and nesting (the parser recurses once
    // per nesting level; see `guard`).
    if let Err(refusal) = crate::guard::check_text(&request.query, &crate::guard::BOUNDS) {
        let status = if media == GRAPHQL_RESPONSE { StatusCode::BAD_REQUEST } else { StatusCode::OK };
        return request_error(status, media, Code::BadUserInput, &refusal.to_string());
    }
    let (kind, op_name) = operation_type(&request);
    if get && kind != "query" && kind != "invalid" {
        let mut r = request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            media,
            Code::BadUserInput,
            "only queries may be sent with GET; use POST",
        );
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return r;
    }
    let principal = match bearer(headers) {
        None => None,
        Some(token) => match auth::authenticate(&state.principals, token).await {
            Ok(p) => Some(p),
            Err(auth::AuthError::Database(_)) => {
                return request_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    media,
                    Code::Unavailable,
                    "authentication unavailable",
                );
            }
            Err(e) => return request_error(StatusCode::UNAUTHORIZED, media, Code::Unauthenticated, &e.to_string()),
        },
    };
    if let Some(p) = &principal
        && let Some(span) = covenant_commands::trace::request_span()
    {
        span.record("user_id", tracing::field::display(p.user_id));
        span.record("role", p.role.as_str());
        covenant_commands::trace::record(covenant_commands::trace::KeyValue::new("role", p.role.as_str()));
    }
    if let Some(p) = &principal
        && let Err(wait) = state.limits.per_user.check(&p.user_id)
    {
        return rate_limited(wait, "too many GraphQL requests for this user");
    }
    if let Some(v) = headers.get(MIN_SEQUENCE) {
        let Some(seq) = v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) else {
            return request_error(
                StatusCode::BAD_REQUEST,
                media,
                Code::BadUserInput,
                "Covenant-Min-Sequence must be a stream sequence number",
            );
        };
        // A sequence the stream has not reached yet would hold the request for the whole
        // wait and then answer UNAVAILABLE, as if the service were at fault: refuse it at
        // once. (If the stream cannot be read, the wait below decides.)
        let js = async_nats::jetstream::new(state.nats.clone());
        if let Ok(mut stream) = js.get_stream(&state.stream).await
            && let Ok(info) = stream.info().await
            && seq > info.state.last_sequence
        {
            let message = format!(
                "Covenant-Min-Sequence {seq} is beyond the stream's last sequence {}",
                info.state.last_sequence
            );
            return request_error(StatusCode::BAD_REQUEST, media, Code::BadUserInput, &message);
        }
        if let Err(e) = wait_for_sequence(&state.pool, &PROJECTIONS, seq, MIN_SEQUENCE_WAIT).await {
            let status = if media == GRAPHQL_RESPONSE { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
            return request_error(status, media, Code::Unavailable, &e.to_string());
        }
    }
    let operation = state.operations.label(op_name.as_deref());
    let notes = crate::graphql::mutation::ReadModelNotes::default();
    let request = request.data(principal).data(ClientIp(peer.ip())).data(notes.clone());
    let started = Instant::now();
    let gql_span = covenant_commands::trace::child(
        || format!("{kind} {operation}"),
        covenant_commands::trace::SpanKind::Internal,
        || {
            use covenant_commands::trace::KeyValue;
            vec![
                KeyValue::new("graphql.operation.name", operation.clone()),
                KeyValue::new("graphql.operation.type", kind),
            ]
        },
    );
    let run = covenant_commands::trace::in_span(gql_span, state.schema.execute(request));
    // Queries get a time budget. Mutations do not: one may already be stored in the
    // stream, and a stored command is never reported as failed (its own waits are bounded).
    let budget = if kind == "mutation" { crate::REQUEST_TIMEOUT } else { crate::GRAPHQL_TIME_BUDGET };
    let Ok(mut response) = tokio::time::timeout(budget, run).await else {
        metrics::counter!("covenant_graphql_time_budget_exceeded_total").increment(1);
        let status = if media == GRAPHQL_RESPONSE { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
        return request_error(
            status,
            media,
            Code::Unavailable,
            &format!("the operation did not finish within {} s", crate::GRAPHQL_TIME_BUDGET.as_secs()),
        );
    };
    // Stored writes whose entity is not in the answer say why.
    let notes = notes.take();
    if !notes.is_empty() {
        let notes = async_graphql::Value::from_json(serde_json::Value::Array(notes)).unwrap_or_default();
        response.extensions.insert("readModels".into(), notes);
    }
    metrics::histogram!("graphql_operation_duration_seconds", "operation" => operation, "type" => kind)
        .record(started.elapsed().as_secs_f64());
    // Parse, validation and variable errors stop the request before execution: no data
    // and no error path. That is a request error: 400 under the new media type, and no
    // `data` entry. A resolver's error (it has a path) is an execution result, even when it
    // nulls the whole `data`.
    let request_failed = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    // Every error carries a code: parse, validation and input-coercion errors are the
    // client's (BAD_USER_INPUT); resolvers always set theirs.
    for e in &mut response.errors {
        let ext = e.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", Code::BadUserInput.as_str());
        }
    }
    let limited = response.errors.iter().any(|e| {
        e.extensions.as_ref().and_then(|x| x.get("code"))
            == Some(&async_graphql::Value::from(Code::RateLimited.as_str()))
    });
    let status = if limited {
        StatusCode::TOO_MANY_REQUESTS
    } else if request_failed && media == GRAPHQL_RESPONSE {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let extra_headers = std::mem::take(&mut response.http_headers);
    let body = if request_failed {
        serde_json::to_vec(&serde_json::json!({ "errors": response.errors }))
    } else {
        serde_json::to_vec(&response)
    };
    let mut reply = match body {
        Ok(body) => json_response(status, media, body),
        Err(_) => return request_error(StatusCode::INTERNAL_SERVER_ERROR, media, Code::Internal, "internal error"),
    };
    reply.headers_mut().extend(extra_headers);
    reply
}

/// The type of the operation `request` selects (`query`, `mutation`, `subscription`, or
/// `invalid` when the document does not parse or names no such operation: the schema then
/// reports why) and its name (`operationName`, else the document's own name for it).
fn operation_type(request: &async_graphql::Request) -> (&'static str, Option<String>) {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else { return ("invalid", None) };
    let (op, name) = match (&doc.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(op), given) => (Some(op), given.map(str::to_owned)),
        (DocumentOperations::Multiple(ops), Some(name)) => (ops.get(name), Some(name.to_owned())),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            let (name, op) = ops.iter().next().map_or((None, None), |(n, o)| (Some(n.to_string()), Some(o)));
            (op, name)
        }
        _ => (None, None),
    };
    let kind = match op.map(|o| o.node.ty) {
        Some(OperationType::Query) => "query",
        Some(OperationType::Mutation) => "mutation",
        Some(OperationType::Subscription) => "subscription",
        None => "invalid",
    };
    (kind, name)
}

/// Operation names as metric labels: client-chosen, so only well-formed names, and only
/// the first [`OperationLabels::MAX`] distinct ones (later ones are `other`), keeping the
/// series count bounded.
#[derive(Default)]
pub struct OperationLabels {
    seen: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl OperationLabels {
    /// Most distinct operation names labelled.
    pub const MAX: usize = 200;

    /// The label for `name`.
    pub fn label(&self, name: Option<&str>) -> String {
        let Some(name) = name else { return "anonymous".into() };
        let well_formed = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return "other".into();
        }
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(name) || seen.len() < Self::MAX {
            seen.insert(name.to_owned());
            name.to_owned()
        } else {
            "other".into()
        }
    }
}

/// 429 with `Retry-After` and a `RATE_LIMITED` error.
fn rate_limited(wait: Duration, message: &str) -> Response {
    let secs = crate::limits::retry_after_secs(wait);
    let mut r = request_error(
        StatusCode::TOO_MANY_REQUESTS,
        "application/json",
        Code::RateLimited,
        &format!("{message}; retry in {secs} s"),
    );
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// Middleware: the per-address limit (`/api/graphql` only).
pub async fn limit_per_ip(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>()
        && let Err(wait) = state.limits.per_ip.check(&peer.ip())
    {
        return rate_limited(wait, "too many requests from this address");
    }
    next.run(req).await
}

/// The bearer token of an `Authorization` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// `GET /api/graphql`: a WebSocket upgrade serves subscriptions (`graphql-transport-ws`,
/// and the older `graphql-ws`); a `query` parameter runs that query (GraphQL over HTTP's
/// GET); any other GET gets GraphiQL.
///
/// A WebSocket client signs in with `{"Authorization": "Bearer <token>"}` as the
/// `connection_init` payload (browsers cannot set headers on a WebSocket); a bad token
/// closes the connection.
pub async fn graphiql_or_websocket(State(state): State<Arc<AppState>>, req: Request) -> Response {
    use axum::extract::FromRequestParts as _;
    use axum::extract::ws::WebSocketUpgrade;

    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        return match (req.uri().query(), peer) {
            (Some(q), Some(peer)) if q.split('&').any(|p| p.starts_with("query=")) => {
                graphql_get(&state, peer, req.headers(), q).await
            }
            _ => graphiql().into_response(),
        };
    }
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let (mut parts, _) = req.into_parts();
    let protocol = match async_graphql_axum::GraphQLProtocol::from_request_parts(&mut parts, &state).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    let schema = state.schema.clone();
    let principals = state.principals.clone();
    ws.protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |socket| {
        async_graphql_axum::GraphQLWebSocket::new(socket, schema, protocol)
            .on_connection_init(move |payload| async move { connection_data(&principals, &payload, peer).await })
            .serve()
    })
}

/// The per-connection data of a WebSocket: the principal of the `connection_init` token.
async fn connection_data(
    principals: &crate::principals::Principals,
    payload: &serde_json::Value,
    peer: Option<std::net::IpAddr>,
) -> async_graphql::Result<async_graphql::Data> {
    let token = ["Authorization", "authorization"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(serde_json::Value::as_str))
        .map(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or(v).trim().to_owned());
    let principal = match token {
        None => None,
        Some(t) => {
            Some(auth::authenticate(principals, &t).await.map_err(|e| async_graphql::Error::new(e.to_string()))?)
        }
    };
    let mut data = async_graphql::Data::default();
    data.insert(principal);
    if let Some(ip) = peer {
        data.insert(ClientIp(ip));
    }
    Ok(data)
}

/// GraphiQL, with subscriptions over this server's WebSocket; its scripts and styles are
/// served by [`graphiql_asset`], so it works without internet access.
fn graphiql() -> Html<&'static str> {
    Html(include_str!("../assets/graphiql.html"))
}

/// `GET /api/graphiql/{file}`: the vendored GraphiQL and React builds.
pub async fn graphiql_asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    const JS: &str = "text/javascript; charset=utf-8";
    let (body, media): (&'static [u8], &'static str) = match file.as_str() {
        "graphiql.min.js" => (include_bytes!("../assets/graphiql/graphiql.min.js"), JS),
        "graphiql.min.css" => (include_bytes!("../assets/graphiql/graphiql.min.css"), "text/css; charset=utf-8"),
        "react.production.min.js" => (include_bytes!("../assets/graphiql/react.production.min.js"), JS),
        "react-dom.production.min.js" => (include_bytes!("../assets/graphiql/react-dom.production.min.js"), JS),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    r
}

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

/// The request's span (`HTTP <method> <route>`, kind server, parented on an incoming
/// W3C `traceparent`), `http_server_request_duration_seconds{method,route,status}` (route =
/// the matched path pattern, never the raw URI) and one log line per request with its
/// `request_id`, `status`, `duration_ms` and, once signed in, `user_id` and `role` (the
/// fields of its `tracing` span).
pub async fn track(req: Request, next: Next) -> Response {
    use covenant_commands::trace::{self, KeyValue};
    use opentelemetry::trace::TraceContextExt as _;
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let log_span = tracing::info_span!(
        "http",
        http.request.method = method.as_str(),
        http.route = route.as_str(),
        request_id = request_id.as_str(),
        user_id = tracing::field::Empty,
        role = tracing::field::Empty,
    );
    let cx = if trace::enabled() {
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(req.headers())));
        let attributes = vec![
            KeyValue::new("http.request.method", method.clone()),
            KeyValue::new("http.route", route.clone()),
            KeyValue::new("request_id", request_id),
        ];
        trace::start(&parent, server_span_name(&method, &route), trace::SpanKind::Server, attributes, Vec::new())
    } else {
        opentelemetry::Context::new()
    };
    let response = trace::in_request(log_span.clone(), cx.clone(), next.run(req)).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if cx.has_active_span() {
        cx.span().set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
    }
    // The line names its span instead of entering it (an enter and an exit in every layer),
    // inside the request's trace (its ids).
    let ms = elapsed.as_secs_f64() * 1e3;
    trace::within(&cx, || {
        if status >= 500 {
            tracing::error!(parent: &log_span, status, duration_ms = ms, "request failed");
        } else {
            tracing::info!(parent: &log_span, status, duration_ms = ms, "request finished");
        }
    });
    metrics::histogram!("http_server_request_duration_seconds", "method" => method, "route" => route, "status" => status.to_string())
        .record(elapsed.as_secs_f64());
    response
}

/// `HTTP <method> <route>`, the server span's name: made once for each standard method and
/// route pattern (both few), and kept; formatted each time for any other method.
fn server_span_name(method: &str, route: &str) -> std::borrow::Cow<'static, str> {
    use std::collections::HashMap;
    use std::sync::{Mutex, PoisonError};
    const METHODS: [&str; 9] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"];
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

/// Reads W3C trace context from HTTP headers.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
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
