//! `covenant-bench http`: the API measured as a client sees it. The API and projections
//! run in a process of their own ([`server`]); this process is the load generator. Reads
//! (anonymous and signed in) and `updateGdp` mutations (selecting the country or not) at
//! several concurrencies, each beside a baseline run from this process in the same run at
//! the same concurrency: the read models' SQL through sqlx, the command through the
//! CommandBus. Runs on a temporary nats-server and PostgreSQL; rate limits are off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng as _;

use crate::Figures;
use covenant_ops::connect;
use covenant_ops::managed::nats::{NatsServer, SyncPolicy};
use covenant_ops::managed::postgres::PgCluster;

mod scenarios;
pub mod server;

/// Options of the HTTP benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpBench {
    /// Concurrent clients, comma-separated; each level is one run.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
    pub concurrency: Vec<usize>,
    /// Seconds per run.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
}

/// Countries the load spreads over (the first assigned ISO codes).
pub const COUNTRIES: usize = 100;

/// The `i`-th benchmark country.
pub fn country(i: usize) -> &'static str {
    covenant_domain::iso3166::ALPHA2[i % COUNTRIES]
}

/// The benchmark's HTTP client.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The benchmarks' HTTP client: keep-alive connections, each dropped once idle for 5 s,
/// below the server's header timeout (10 s), which closes idle connections.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(5))
        .build_http()
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// When a service cannot be started or a request fails.
pub async fn run(opts: &HttpBench) -> Result<()> {
    if opts.concurrency.contains(&0) {
        bail!("--concurrency levels must be at least 1");
    }
    let t = Target::start().await?;
    println!(
        "HTTP benchmark: the API and projections in a process of their own (as `covenant serve` runs them: \
         JSON logs at info to {}, metrics on, traces not exported, rate limits off), the clients in this one; \
         {} s per run; reads are a countries page, the fund or one country; mutations are updateGdp over {COUNTRIES} \
         countries, signed in. Baselines in the same run, from this process at the same concurrency: the read \
         models' SQL through sqlx, the command through the CommandBus. Each run starts once the projections \
         have applied the earlier runs' events. One nats-server at its default sync \
         (acknowledged once in memory, fsync every 2 min), PostgreSQL synchronous_commit on.",
        t.server.log.display(),
        opts.seconds,
    );
    let client = client();
    let mut table = scenarios::Table::default();
    for &c in &opts.concurrency {
        println!("c={c}");
        for s in scenarios::Scenario::ALL {
            t.settle().await?;
            let m = scenarios::measure(&t, &client, s, c, opts.seconds).await?;
            table.add(s, c, m);
        }
    }
    table.print_targets(t.server.rss());
    t.stop().await;
    Ok(())
}

/// What the HTTP benchmarks run against: temporary services, the server process, the
/// benchmark countries and an administrator's token.
pub(crate) struct Target {
    pub(crate) server: server::ServerProcess,
    pub(crate) side: Arc<covenant_commands::CommandSide>,
    pub(crate) pool: sqlx::PgPool,
    pub(crate) token: Arc<str>,
    _dir: tempfile::TempDir,
    _pg: PgCluster,
    _nats: NatsServer,
}

impl Target {
    /// Starts nats-server, PostgreSQL and the server process, registers the benchmark
    /// countries and signs an administrator in.
    ///
    /// # Errors
    /// When a step fails.
    pub(crate) async fn start() -> Result<Self> {
        let nats = NatsServer::start_temp(SyncPolicy::Default).await?;
        let pg = PgCluster::start_temp().await?;
        pg.create_database("bench").await?;
        let pool = connect::pool(&pg.url("bench")).await?;
        covenant_projections::migrate(&pool).await?;
        let cfg = covenant_commands::LogConfig {
            stream: "BENCH_HTTP".into(),
            subject_prefix: "bench.events".into(),
            ..Default::default()
        };
        let side =
            Arc::new(covenant_commands::CommandSide::open(connect::client(&nats.url()).await?, cfg.clone()).await?);
        let dir = tempfile::Builder::new().prefix("covenant-bench-http").tempdir()?;
        let server = server::ServerProcess::start(
            dir.path(),
            &server::HttpServer {
                nats: nats.url(),
                database: pg.url("bench"),
                stream: cfg.stream.clone(),
                subject_prefix: cfg.subject_prefix.clone(),
            },
        )
        .await?;
        for i in 0..COUNTRIES {
            let code = country(i);
            let cmd = covenant_domain::CountryCommand::Register {
                code: covenant_domain::CountryCode::parse(code)?,
                name: covenant_domain::Name::parse(&format!("Country {code}"))?,
                gdp_usd: covenant_domain::Usd::new(1_000_000_000)?,
            };
            side.countries.execute(code, cmd, &covenant_commands::CommandContext::system()).await?;
        }
        let token = admin_bearer(&side, &pool, "bench@covenant.local", Duration::from_secs(30)).await?;
        Ok(Self { server, side, pool, token, _dir: dir, _pg: pg, _nats: nats })
    }

    /// Waits until the server's projections have applied every event in the stream, so that
    /// a run does not measure the replay of the previous run's writes beside its own load
    /// (the CommandBus baseline appends tens of thousands of events in a few seconds).
    ///
    /// # Errors
    /// When the stream cannot be read or the projections take over two minutes.
    pub(crate) async fn settle(&self) -> Result<()> {
        caught_up(&self.side, &self.pool, Duration::from_secs(120))
            .await
            .context("waiting for the projections to apply the previous runs' events")
    }

    /// Stops the server process and closes this process's connections (the services stop
    /// when dropped).
    pub(crate) async fn stop(self) {
        let Target { server, pool, _dir, _pg, _nats, .. } = self;
        server.stop().await;
        pool.close().await;
    }
}

/// Waits (at most `wait`) until every projection has applied every event the stream holds
/// now.
///
/// # Errors
/// When the stream cannot be read or the projections do not catch up in time.
pub(crate) async fn caught_up(
    side: &covenant_commands::CommandSide,
    pool: &sqlx::PgPool,
    wait: Duration,
) -> Result<()> {
    let seq = side.log.last_sequence().await?;
    covenant_projections::checkpoint::wait_for_sequence(
        pool,
        &covenant_projections::checkpoint::PROJECTIONS,
        seq,
        wait,
    )
    .await?;
    Ok(())
}

/// Registers administrator `email`, waits (at most `wait`) until the projections hold it,
/// and returns its `Authorization` header value.
///
/// # Errors
/// When a step fails or the projections do not catch up in time.
pub async fn admin_bearer(
    side: &covenant_commands::CommandSide,
    pool: &sqlx::PgPool,
    email: &str,
    wait: Duration,
) -> Result<Arc<str>> {
    let admin =
        covenant_ops::users::create(side, pool, email, covenant_domain::Role::Admin, "bench password 1").await?;
    caught_up(side, pool, wait).await?;
    let principals = covenant_api::principals::Principals::new(pool.clone());
    let (token, _) = covenant_api::auth::issue(&principals, admin).await.context("issuing the benchmark token")?;
    Ok(format!("Bearer {token}").into())
}

/// The projections as `covenant serve` runs them (monitor every 5 s, lease 6 s), until
/// `stop` turns true.
pub(crate) fn projections(
    side: &covenant_commands::CommandSide,
    pool: &sqlx::PgPool,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let stream = &side.log.config().stream;
    covenant_ops::projections::spawn(
        side.log.jetstream(),
        stream,
        pool,
        stop,
        Duration::from_secs(5),
        Duration::from_secs(6),
    )
}

/// The API as `covenant serve` runs it (rate limits off), in this process on a free port,
/// following the stream's users and keys.
pub(crate) async fn api_in_process(
    side: &Arc<covenant_commands::CommandSide>,
    pool: &sqlx::PgPool,
    nats_url: &str,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<covenant_ops::http::HttpServer> {
    let cfg = side.log.config();
    let state = covenant_api::AppState::new(
        pool.clone(),
        connect::client(nats_url).await?,
        cfg.stream.clone(),
        metrics,
        Some(side.clone()),
        covenant_api::ApiOptions { limits: covenant_api::limits::LimitSettings::off(), ..Default::default() },
    );
    state.follow(&cfg.subject_prefix, stop.clone()).await;
    covenant_ops::http::serve("127.0.0.1:0".parse()?, state, stop.clone()).await
}

/// `c` clients for `seconds`: signed-in GraphQL requests, `mutations` percent of them
/// `updateGdp`, the rest reads.
///
/// # Errors
/// A failed request.
pub async fn load(
    client: &HttpClient,
    addr: SocketAddr,
    c: usize,
    seconds: u64,
    mutations: u32,
    token: Arc<str>,
) -> Result<Figures> {
    let client = client.clone();
    let measured = scenarios::drive(c, seconds, move || {
        let (client, token) = (client.clone(), token.clone());
        async move {
            let query = if rand::rng().random_range(0..100) < mutations {
                update_query("sequence")
            } else {
                read_query(&mut rand::rng())
            };
            post_graphql(&client, addr, Some(&token), &query).await.map(|_| true)
        }
    })
    .await?;
    Ok(measured.figures)
}

/// POSTs `query` to the API (with `token` as its `Authorization` header, if any) and
/// returns the answer's body.
///
/// # Errors
/// A failed request: an answer other than 2xx, or a GraphQL response that is only
/// `errors` (the request did not run).
pub(crate) async fn post_graphql(
    client: &HttpClient,
    addr: SocketAddr,
    token: Option<&str>,
    query: &str,
) -> Result<String> {
    let mut req = hyper::Request::post(format!("http://{addr}/api/graphql"))
        .header("content-type", "application/json")
        .header("accept", "application/graphql-response+json");
    if let Some(t) = token {
        req = req.header("authorization", t);
    }
    let body = serde_json::json!({ "query": query }).to_string();
    let resp = client.request(req.body(Full::new(Bytes::from(body)))?).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() || text.starts_with("{\"errors\"") {
        bail!("request failed: {status} {text}");
    }
    Ok(text)
}

/// `updateGdp` of a random benchmark country to a new figure, selecting `selection`.
pub(crate) fn update_query(selection: &str) -> String {
    let (code, gdp) = gdp_update();
    format!(r#"mutation {{ updateGdp(code: "{code}", gdpUsd: "{gdp}") {{ {selection} }} }}"#)
}

/// A new GDP figure for a random benchmark country.
pub(crate) fn gdp_update() -> (&'static str, u64) {
    let mut rng = rand::rng();
    (country(rng.random_range(0..COUNTRIES)), rng.random_range(1_000_000_000u64..2_000_000_000))
}

/// One of the benchmark's reads: a countries page, the fund, or one country.
pub(crate) fn read_query(rng: &mut impl rand::Rng) -> String {
    match rng.random_range(0..3) {
        0 => "{ countries(first: 20) { nodes { code name gdpUsd } totalCount } }".to_owned(),
        1 => "{ covenantFund { totalUsd countries projects users asOfSequence } }".to_owned(),
        _ => format!(r#"{{ country(code: "{}") {{ name gdpUsd version }} }}"#, country(rng.random_range(0..COUNTRIES))),
    }
}
