//! `GET /api/graphql` without a query: GraphiQL (and its assets, served from the binary) or
//! a WebSocket upgrade for subscriptions.

use super::*;

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
    let schema = state.ws_schema.clone();
    let principals = state.principals.clone();
    let hold = parts.extensions.get::<ConnectionHold>().cloned();
    ws.protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |socket| async move {
        // The connection's place in the server's bound, kept while the socket is open.
        let _hold = hold;
        let (init_tx, init_rx) = tokio::sync::oneshot::channel::<()>();
        let serve = async_graphql_axum::GraphQLWebSocket::new(socket, schema, protocol)
            .on_connection_init(move |payload| async move {
                let _ = init_tx.send(());
                connection_data(&principals, &payload, peer).await
            })
            .serve();
        tokio::pin!(serve);
        tokio::select! {
            () = &mut serve => return,
            init = tokio::time::timeout(WS_INIT_TIMEOUT, init_rx) => {
                if init.is_err() {
                    metrics::counter!("covenant_websocket_init_timed_out_total").increment(1);
                    return;
                }
            }
        }
        serve.await;
    })
}

/// How long a WebSocket has to send `connection_init` before it is closed (the
/// `graphql-transport-ws` protocol's initialisation timeout): a socket that never does
/// would hold a connection's place in the server's bound for ever.
pub const WS_INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection's place in the HTTP server's bound on open connections
/// (`covenant_ops::http`), in the extensions of each request on it. The WebSocket a
/// request becomes keeps a clone while it is open: the connection's request loop ends at
/// the upgrade, and the socket would otherwise hold a file descriptor outside the bound.
#[derive(Clone)]
pub struct ConnectionHold {
    _place: Arc<dyn std::any::Any + Send + Sync>,
}

impl ConnectionHold {
    /// Holds `place` until the last clone is dropped.
    pub fn new(place: impl Send + Sync + 'static) -> Self {
        Self { _place: Arc::new(place) }
    }
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
    Html(include_str!("../../assets/graphiql.html"))
}

/// `GET /api/graphiql/{file}`: the vendored GraphiQL and React builds.
pub async fn graphiql_asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    const JS: &str = "text/javascript; charset=utf-8";
    let (body, media): (&'static [u8], &'static str) = match file.as_str() {
        "graphiql.min.js" => (include_bytes!("../../assets/graphiql/graphiql.min.js"), JS),
        "graphiql.min.css" => (include_bytes!("../../assets/graphiql/graphiql.min.css"), "text/css; charset=utf-8"),
        "react.production.min.js" => (include_bytes!("../../assets/graphiql/react.production.min.js"), JS),
        "react-dom.production.min.js" => (include_bytes!("../../assets/graphiql/react-dom.production.min.js"), JS),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    r
}
