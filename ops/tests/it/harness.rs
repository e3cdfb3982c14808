//! Shared test helpers: a nats-server per test, a uniquely named stream per log, and whole-
//! stream reads.

use std::time::Duration;

/// Projection lease time to live in tests: short, so a killed holder is replaced quickly.
pub const LEASE: Duration = Duration::from_secs(2);

/// Runs `covenant ARGS` against a stream and a database: (exit code, stdout + stderr).
pub fn covenant_cli(args: &[&str], nats_url: &str, db_url: &str, cfg: &LogConfig) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_covenant"))
        .args(args)
        .env("COVENANT_NATS_URL", nats_url)
        .env("COVENANT_DATABASE_URL", db_url)
        .env("COVENANT_STREAM", &cfg.stream)
        .env("COVENANT_SUBJECT_PREFIX", &cfg.subject_prefix)
        .env("RUST_LOG", "error")
        .output()
        .expect("run covenant");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// Runs every projection in this process with the tests' lease (the monitor refreshing
/// every `monitor_every`) until `stop` turns true.
pub fn run_projections(
    js: &async_nats::jetstream::Context,
    stream: &str,
    pool: &sqlx::PgPool,
    stop: &tokio::sync::watch::Receiver<bool>,
    monitor_every: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    covenant_ops::projections::spawn(js, stream, pool, stop, monitor_every, LEASE)
}

use covenant_commands::{CommandSide, EventLog, LogConfig, StoredEvent};
use covenant_ops::managed::nats::{NatsServer, SyncPolicy};

/// Starts a single-node nats-server on a free port with a temporary store.
pub async fn nats() -> NatsServer {
    NatsServer::start_temp(SyncPolicy::Default)
        .await
        .expect("nats-server >= 2.12 starts (run the README's test command to install it)")
}

/// A log configuration with a stream name and subject prefix of its own.
pub fn log_config() -> LogConfig {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    LogConfig {
        stream: format!("T_{}", tag.to_uppercase()),
        subject_prefix: format!("t{tag}.events"),
        request_timeout: Duration::from_secs(2),
        // Group commit on, so every suite (chaos included) runs through it.
        group_commit: covenant_commands::DEFAULT_GROUP_COMMIT,
        ..LogConfig::default()
    }
}

/// A NATS client that reconnects forever, quickly.
pub async fn client(url: &str) -> async_nats::Client {
    covenant_ops::connect::client(url).await.expect("connect to the test nats-server")
}

/// The command side on its own connection (its own cache: a separate "process").
pub async fn side(url: &str, cfg: &LogConfig) -> CommandSide {
    CommandSide::open(client(url).await, cfg.clone()).await.expect("open the command side")
}

/// Every event in the stream, in stream order.
pub async fn all_events(log: &EventLog) -> Vec<StoredEvent> {
    let last = log.last_sequence().await.expect("stream info");
    let mut out = Vec::new();
    log.scan(">", 1, last, |e| out.push(e)).await.expect("scan the stream");
    out
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually(timeout: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A PostgreSQL cluster of the test's own with a migrated database `covenant`.
pub async fn pg() -> (covenant_ops::managed::postgres::PgCluster, sqlx::PgPool) {
    let cluster = covenant_ops::managed::postgres::PgCluster::start_temp()
        .await
        .expect("PostgreSQL starts (run the README's test command to install it)");
    let pool = database(&cluster, "covenant").await;
    (cluster, pool)
}

/// Creates and migrates database `name` on `cluster`.
pub async fn database(cluster: &covenant_ops::managed::postgres::PgCluster, name: &str) -> sqlx::PgPool {
    cluster.create_database(name).await.expect("create database");
    let pool = covenant_ops::connect::pool(&cluster.url(name)).await.expect("pool");
    covenant_projections::migrate(&pool).await.expect("migrations");
    pool
}

/// The process-wide Prometheus recorder (installed once; tests read their own labels).
pub fn metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    covenant_ops::telemetry::install_metrics()
}

/// The value of the series whose name and labels contain every part of `parts`.
pub fn metric_value(name: &str, parts: &[&str]) -> Option<f64> {
    metrics().render().lines().find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        (series.starts_with(name) && parts.iter().all(|p| series.contains(p))).then(|| value.parse().ok())?
    })
}

/// Every row of each read-model table as JSON, ordered by primary key: two databases with
/// equal snapshots hold the same read models, row by row.
pub async fn read_models(pool: &sqlx::PgPool) -> Vec<(String, serde_json::Value)> {
    let tables = [
        ("countries", "code"),
        ("country_gdp_history", "code, version"),
        ("projects", "id"),
        ("users", "id"),
        ("covenant_fund", "id"),
        ("audit_events", "seq"),
    ];
    let mut out = Vec::new();
    for (t, order) in tables {
        let sql = format!("SELECT COALESCE(jsonb_agg(to_jsonb(x) ORDER BY {order}), '[]'::jsonb) FROM {t} x");
        let v: serde_json::Value = sqlx::query_scalar(&sql).fetch_one(pool).await.expect("snapshot query");
        out.push((t.to_owned(), v));
    }
    out
}

/// Runs every projection in this process against `pool` until each has applied `seq`.
pub async fn fold_until(js: &async_nats::jetstream::Context, stream: &str, pool: &sqlx::PgPool, seq: u64) {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    for p in covenant_projections::all() {
        let p_name = p.name();
        let cfg = covenant_projections::RunnerConfig {
            stream: stream.to_owned(),
            fetch_wait: Duration::from_millis(100),
            ..Default::default()
        };
        let mut runner = covenant_projections::Runner::new(js.clone(), pool.clone(), p, cfg, rx.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let name = p_name;
        while covenant_projections::checkpoint::get(pool, name).await.expect("checkpoint") < seq {
            assert!(tokio::time::Instant::now() < deadline, "projection {name} did not reach {seq}");
            runner.try_process_next().await.expect("step");
        }
    }
}

/// Registers country `code` as the system actor.
pub async fn register_country(side: &CommandSide, code: &str, name: &str, gdp: u64) -> covenant_commands::Receipt {
    let cmd = covenant_domain::CountryCommand::Register {
        code: covenant_domain::CountryCode::parse(code).expect("code"),
        name: covenant_domain::Name::parse(name).expect("name"),
        gdp_usd: covenant_domain::Usd::new(gdp).expect("usd"),
    };
    side.countries.execute(code, cmd, &covenant_commands::CommandContext::system()).await.expect("register country")
}

/// An HTTP response as [`http_exchange`] read it.
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: String,
}

impl HttpReply {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A plain HTTP/1.1 exchange with the API: (status, content type, body).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let r = http_exchange(addr, method, path, headers, body).await;
    let ctype = r.header("content-type").unwrap_or_default().to_owned();
    (r.status, ctype, r.body)
}

/// A plain HTTP/1.1 exchange with the API, every header kept.
pub async fn http_exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpReply {
    try_http_exchange(addr, method, path, headers, body).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// As [`http_exchange`], with a refused or broken connection as an error (hyper-util's
/// client, one connection per exchange).
pub async fn try_http_exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<HttpReply, String> {
    use http_body_util::BodyExt as _;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
    let mut req = hyper::Request::builder().method(method).uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, hyper::header::HeaderValue::from_bytes(v.as_bytes()).map_err(|e| e.to_string())?);
    }
    let req = req.body(http_body_util::Full::new(bytes::Bytes::from(body.to_owned()))).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(HttpReply { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// POSTs a GraphQL query as JSON and returns (status, parsed body).
pub async fn graphql(addr: std::net::SocketAddr, query: &str, extra: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let body = serde_json::json!({ "query": query }).to_string();
    let mut headers = vec![("Content-Type", "application/json"), ("Accept", "application/graphql-response+json")];
    headers.extend_from_slice(extra);
    let (status, _, text) = http(addr, "POST", "/api/graphql", &headers, &body).await;
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON response, got: {text}")))
}

/// A running Covenant: its own nats-server and PostgreSQL, projections, and the HTTP API
/// on a free port (zero2prod's `spawn_app`).
pub struct TestApp {
    /// The nats-server (kept alive with the app).
    pub nats: covenant_ops::managed::nats::NatsServer,
    /// The PostgreSQL cluster (kept alive with the app).
    pub pg: covenant_ops::managed::postgres::PgCluster,
    /// Read-model pool.
    pub pool: sqlx::PgPool,
    /// The command side the API uses.
    pub side: std::sync::Arc<CommandSide>,
    /// API address.
    pub addr: std::net::SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts a [`TestApp`] with no rate limits.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(covenant_api::ApiOptions {
        limits: covenant_api::limits::LimitSettings::off(),
        ..Default::default()
    })
    .await
}

/// Starts a [`TestApp`] with `options`.
pub async fn spawn_app_with(options: covenant_api::ApiOptions) -> TestApp {
    spawn_app_serving(options, covenant_ops::http::Connections::default()).await
}

/// Starts a [`TestApp`] with `options`, its HTTP server within `connections`.
pub async fn spawn_app_serving(
    options: covenant_api::ApiOptions,
    connections: covenant_ops::http::Connections,
) -> TestApp {
    let nats = nats().await;
    let (pg, pool) = pg().await;
    let cfg = log_config();
    let side = std::sync::Arc::new(side(&nats.url(), &cfg).await);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let metrics = metrics(); // before the projections, so their first figures are recorded
    let mut tasks =
        crate::harness::run_projections(side.log.jetstream(), &cfg.stream, &pool, &rx, Duration::from_millis(200));
    let state = covenant_api::AppState::new(
        pool.clone(),
        client(&nats.url()).await,
        cfg.stream.clone(),
        Some(metrics),
        Some(side.clone()),
        options,
    );
    state.follow(&cfg.subject_prefix, rx.clone()).await;
    let api = covenant_ops::http::serve_with("127.0.0.1:0".parse().expect("addr"), state, rx, connections)
        .await
        .expect("serve the API");
    tasks.push(api.task);
    TestApp { nats, pg, pool, side, addr: api.addr, stop, tasks }
}

impl TestApp {
    /// A GraphQL request with an optional bearer token.
    pub async fn graphql(&self, query: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| vec![("Authorization", a)]).unwrap_or_default();
        graphql(self.addr, query, &headers).await
    }

    /// Creates a user through the CLI path and signs in; returns the token.
    pub async fn user_token(&self, email: &str, role: covenant_domain::Role) -> String {
        let password = "correct horse battery";
        let id = covenant_ops::users::create(&self.side, &self.pool, email, role, password).await.expect("create user");
        let seq = self.side.log.last_sequence().await.expect("info");
        covenant_projections::checkpoint::wait_for_sequence(
            &self.pool,
            &covenant_projections::checkpoint::PROJECTIONS,
            seq,
            Duration::from_secs(10),
        )
        .await
        .expect("user projected");
        let (_, body) = self
            .graphql(
                &format!(
                    r#"mutation {{ login(email: "{email}", password: "{password}") {{ token user {{ id role }} }} }}"#
                ),
                None,
            )
            .await;
        assert_eq!(body["data"]["login"]["user"]["id"], id.to_string(), "{body}");
        body["data"]["login"]["token"].as_str().expect("token").to_owned()
    }

    /// Stops the projections and the API, draining in-flight requests.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
