//! Covenant's HTTP API: GraphQL (queries over the read models), GraphiQL, health and
//! metrics routes.
//!
//! Depends on the domain, the command side, the projections and the audit crate; built
//! into the `covenant` binary by `ops`.
//!
//! Modules:
//! - [`http`]: routes and the request metrics middleware (GraphQL over HTTP content
//!   negotiation, `Covenant-Min-Sequence` read-your-writes).
//! - [`graphql`]: the schema.
//! - [`guard`]: bounds what a document may cost before it is parsed and validated.
//! - [`auth`]: argon2 passwords, HS256 JWTs with `kid`, rotation and revocation.
//! - [`principals`]: keys, roles and revocations held in memory, followed from the stream.
//! - [`error`]: the one error type and its `extensions.code`.
//! - [`limits`]: the seed's rate limits.
//! - [`trail`]: the audit trail's state (last sequence, latest checkpoint).

pub mod auth;
pub mod error;
pub mod graphql;
pub mod guard;
pub mod http;
pub mod limits;
pub mod principals;
pub mod process;
pub mod trail;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1 << 20;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a GraphQL query may run (parse, validation and execution); mutations have
/// only [`REQUEST_TIMEOUT`].
pub const GRAPHQL_TIME_BUDGET: Duration = Duration::from_secs(10);

/// What the handlers share.
pub struct AppState {
    /// The GraphQL schema of the HTTP handler, which hands it documents the guard has
    /// checked ([`graphql::Parsing::Prechecked`]).
    pub schema: graphql::CovenantSchema,
    /// The GraphQL schema of WebSocket subscriptions, whose documents arrive as text: the
    /// guard is its parse step ([`graphql::Parsing::Guarded`]).
    pub ws_schema: graphql::CovenantSchema,
    /// Read-model pool.
    pub pool: PgPool,
    /// NATS connection (health, lag).
    pub nats: async_nats::Client,
    /// Event stream name.
    pub stream: String,
    /// The Prometheus handle `/metrics` renders, if this process records metrics.
    pub metrics: Option<PrometheusHandle>,
    /// Projection lag above which the health check reports degraded.
    pub max_lag: u64,
    /// Rate limiters.
    pub limits: Arc<limits::RateLimits>,
    /// Operation names seen (metric labels).
    pub operations: http::OperationLabels,
    /// The handles of the histograms every request records.
    pub histograms: http::RequestHistograms,
    /// Keys, roles and revocations in memory (start following with
    /// [`principals::Principals::start`]; until then they are read from PostgreSQL).
    pub principals: Arc<principals::Principals>,
}

/// How the API is tuned; the default is the seed's limits.
#[derive(Debug, Clone, Copy)]
pub struct ApiOptions {
    /// Rate limits.
    pub limits: limits::LimitSettings,
    /// Projection lag (events) above which `/api/healthcheck` answers 503.
    pub max_lag: u64,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self { limits: limits::LimitSettings::default(), max_lag: 10_000 }
    }
}

impl AppState {
    /// State over `pool` and `nats` for `stream`; mutations need `side`.
    pub fn new(
        pool: PgPool,
        nats: async_nats::Client,
        stream: impl Into<String>,
        metrics: Option<PrometheusHandle>,
        side: Option<Arc<covenant_commands::CommandSide>>,
        options: ApiOptions,
    ) -> Self {
        let stream = stream.into();
        auth::prepare_dummy_hash();
        if metrics.is_some() {
            process::describe();
            http::describe();
        }
        let limits = Arc::new(limits::RateLimits::new(options.limits));
        let principals = principals::Principals::new(pool.clone());
        let feed = graphql::subscription::EventFeed::new(async_nats::jetstream::new(nats.clone()), stream.clone());
        // The two schemas differ only in how they parse (see `graphql::Parsing`).
        let schema = |parsing| {
            graphql::schema(pool.clone(), feed.clone(), limits.clone(), side.clone(), principals.clone(), parsing)
        };
        Self {
            schema: schema(graphql::Parsing::Prechecked),
            ws_schema: schema(graphql::Parsing::Guarded),
            pool,
            nats,
            stream,
            metrics,
            max_lag: options.max_lag,
            limits,
            operations: http::OperationLabels::default(),
            histograms: http::RequestHistograms::default(),
            principals,
        }
    }
}

impl AppState {
    /// Starts following the stream's users and key rotations under subject `prefix` (see
    /// [`principals`]); returns once the history is folded in (at most 10 s).
    pub async fn follow(&self, prefix: &str, shutdown: tokio::sync::watch::Receiver<bool>) {
        let js = async_nats::jetstream::new(self.nats.clone());
        self.principals.start(js, self.stream.clone(), prefix.to_owned(), shutdown).await;
    }
}

/// The router: `/api/graphql` (POST GraphQL, GET GraphiQL or a WebSocket upgrade for
/// subscriptions; limited per client address), `/api/healthcheck`, `/metrics` (never
/// limited, so monitoring is not throttled).
pub fn router(state: Arc<AppState>) -> Router {
    let graphql = Router::new()
        .route("/api/graphql", get(http::graphiql_or_websocket).post(http::graphql))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), http::limit_per_ip));
    let routes = Router::new()
        .merge(graphql)
        .route("/api/graphiql/{file}", get(http::graphiql_asset))
        .route("/api/healthcheck", get(http::health))
        .route("/metrics", get(http::metrics_text))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), http::track));
    outer_layers(routes).with_state(state)
}

/// What wraps every route: body limit, request ids, the request timeout, and the panic
/// catcher (outermost, so a panic anywhere inside is answered).
fn outer_layers<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        // The body limit is applied where the body is read, so the GraphQL handler answers
        // an oversized body with a GraphQL error.
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        // An `x-request-id` is taken from the request if usable, else set (a UUID), and
        // returned.
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(tower_http::request_id::MakeRequestUuid))
        .layer(axum::middleware::map_request(http::usable_request_id))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        // A panic in a handler is answered 500 (a GraphQL error, no internals) and counted;
        // the process and its other requests go on.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
}

/// The answer to a request whose handler panicked: `INTERNAL`, and
/// `covenant_http_panics_total` counts it (the panic message goes to the log, never to
/// the client).
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = message, "a request handler panicked");
    metrics::counter!("covenant_http_panics_total").increment(1);
    let body = serde_json::json!({ "errors": [{ "message": "internal error", "extensions": { "code": error::Code::Internal.as_str() } }] });
    let mut r = (axum::http::StatusCode::INTERNAL_SERVER_ERROR, body.to_string()).into_response();
    r.headers_mut().insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    #[allow(clippy::unused_async)]
    async fn boom() -> &'static str {
        panic!("secret detail of the bug")
    }

    /// A handler that panics is answered 500 `INTERNAL` without its message, the panic is
    /// counted, and the same router goes on answering.
    #[tokio::test]
    async fn a_panicking_handler_is_answered_500_internal_and_counted() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let routes = axum::Router::new()
            .route("/boom", axum::routing::get(boom))
            .route("/fine", axum::routing::get(|| async { "fine" }));
        let app = super::outer_layers(routes);
        let res = metrics::with_local_recorder(&recorder, || {
            futures::executor::block_on(app.clone().oneshot(Request::get("/boom").body(Body::empty()).expect("req")))
        })
        .expect("answered");
        assert_eq!(res.status(), 500);
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.expect("body");
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("\"INTERNAL\"") && !body.contains("secret"), "{body}");
        assert!(handle.render().contains("covenant_http_panics_total 1"), "{}", handle.render());
        let res = app.oneshot(Request::get("/fine").body(Body::empty()).expect("req")).await.expect("answered");
        assert_eq!(res.status(), 200);
    }
}
