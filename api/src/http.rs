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

mod graphiql;
mod observe;
mod operations;
pub use graphiql::{ConnectionHold, WS_INIT_TIMEOUT, graphiql_asset, graphiql_or_websocket};
pub use observe::{REQUEST_ID_MAX, RequestHistograms, describe, health, metrics_text, track, usable_request_id};
pub use operations::OperationLabels;
use operations::operation_type;

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
    // Parsed once, here: the operation's type decides what follows, and this document is
    // what the schema runs (a document that does not parse or is refused goes on, and is
    // answered with why where the schema would answer).
    let checked = crate::guard::parse_checked_async(&request.query, &request.variables, crate::guard::BOUNDS)
        .await
        .and_then(|doc| crate::graphql::check_variable_types(&doc).map(|()| doc));
    let (kind, op_name) = match &checked {
        Ok(doc) => operation_type(doc, request.operation_name.as_deref()),
        Err(_) => ("invalid", None),
    };
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
    if let Some(p) = &principal {
        // The request's span (`track`): its log lines and its server span name the user.
        covenant_telemetry::set_user(&tracing::Span::current(), &p.user_id.to_string(), p.role.as_str());
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
        // once. (If the stream cannot be read, the wait below decides.) The lookup answers
        // with the stream's state: one request, not a second one for `info`.
        let js = async_nats::jetstream::new(state.nats.clone());
        if let Ok(stream) = js.get_stream(&state.stream).await
            && let last = stream.cached_info().state.last_sequence
            && seq > last
        {
            let message = format!("Covenant-Min-Sequence {seq} is beyond the stream's last sequence {last}");
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
    // Made only inside a sampled trace (see `covenant_telemetry::sampled`).
    let gql_span = if covenant_telemetry::sampled() {
        tracing::info_span!(
            "graphql",
            otel.name = %format_args!("{kind} {operation}"),
            otel.kind = "internal",
            graphql.operation.name = operation.as_str(),
            graphql.operation.type = kind,
        )
    } else {
        tracing::Span::none()
    };
    // The schema takes the checked document and parses nothing itself
    // (`Parsing::Prechecked`); a document the guard refused is answered with the guard's
    // error, as a parse error is.
    let run = tracing::Instrument::instrument(
        async {
            match checked {
                Ok(doc) => {
                    let mut request = request;
                    request.set_parsed_query(doc);
                    state.schema.execute(request).await
                }
                Err(e) => async_graphql::Response::from_errors(vec![e]),
            }
        },
        gql_span,
    );
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
    state.histograms.operations.record(
        (operation, kind),
        |(operation, kind)| {
            vec![metrics::Label::new("operation", operation.clone()), metrics::Label::new("type", *kind)]
        },
        started.elapsed().as_secs_f64(),
    );
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
        && let Err(wait) = state.limits.per_ip.check(&crate::limits::client_key(peer.ip()))
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
