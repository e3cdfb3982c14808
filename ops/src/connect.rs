//! Connecting to NATS, starting managed services when none are configured.

use std::time::Duration;

use anyhow::{Context, Result};
use covenant_commands::{CommandSide, LogConfig};

use crate::managed::nats::{self, NatsServer, SyncPolicy};
use crate::settings::Settings;

/// NATS as this process reaches it: a URL, and the managed server if we started it.
pub struct NatsHandle {
    /// Client URL.
    pub url: String,
    /// Durability in force when known (managed server), for reports.
    pub sync: Option<SyncPolicy>,
    /// The managed server, when this process started it or took it over from a process
    /// that ended without stopping it (dropped = killed).
    pub managed: Option<NatsServer>,
}

/// Uses `COVENANT_NATS_URL`, or the managed server (reusing one already running on the
/// managed port, e.g. under `covenant serve`, or starting it).
///
/// # Errors
/// When no suitable nats-server can be found or started.
pub async fn nats(settings: &Settings) -> Result<NatsHandle> {
    if let Some(url) = &settings.nats_url {
        return Ok(NatsHandle { url: url.clone(), sync: None, managed: None });
    }
    let port = settings.managed_nats_port;
    let url = format!("nats://127.0.0.1:{port}");
    let dir = settings.data_dir.join("nats");
    if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        // Reuse a managed server (another covenant process started it), but nothing else.
        nats::check_managed(port).map_err(|why| {
            anyhow::anyhow!(
                "port 127.0.0.1:{port} is in use by {why}, not by Covenant's managed nats-server: stop it, \
                 or set COVENANT_MANAGED_NATS_PORT (--managed-nats-port) to a free port, \
                 or COVENANT_NATS_URL to use a server of your own"
            )
        })?;
        // A server whose owner ended without stopping it (killed, crashed) is taken over,
        // to be stopped when this process ends; one whose owner runs is left to it.
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let adopted = match crate::managed::Owner::claim(&dir)? {
            None => None,
            Some(owner) => {
                let server = NatsServer::adopt(&dir, port, owner);
                if server.is_some() {
                    tracing::info!(port, dir = %dir.display(), "took over the managed nats-server a process that ended left running: it stops with this one");
                } else {
                    tracing::warn!(
                        port,
                        dir = %dir.display(),
                        "the managed nats-server has no running owner, but its pid cannot be told: it keeps running after this process"
                    );
                }
                server
            }
        };
        return Ok(NatsHandle { url, sync: None, managed: adopted });
    }
    let bin = nats::locate(settings.nats_server.as_deref())?;
    let server = NatsServer::start_in(bin, &dir, port, settings.nats_sync.into())
        .await
        .with_context(|| format!("starting the managed nats-server in {}", dir.display()))?;
    Ok(NatsHandle { url, sync: Some(server.sync()), managed: Some(server) })
}

/// A NATS client that reconnects forever in the background (commands fail fast while it
/// is disconnected) but fails at once when the first connection cannot be made.
///
/// # Errors
/// When the server cannot be reached.
pub async fn client(url: &str) -> Result<async_nats::Client> {
    let addrs: Vec<async_nats::ServerAddr> = url
        .split(',')
        .map(|u| u.trim().parse().with_context(|| format!("NATS URL `{u}` is not valid")))
        .collect::<Result<_>>()?;
    let mut options = async_nats::ConnectOptions::new()
        .name("covenant")
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .reconnect_delay_callback(|n| Duration::from_millis((50 * n as u64).min(1000)));
    // async-nats ignores credentials in the URL (`nats://user:password@host`): pass them.
    if let Some(a) = addrs.iter().find(|a| a.has_user_pass()) {
        options = options.user_and_password(
            a.username().unwrap_or_default().to_owned(),
            a.password().unwrap_or_default().to_owned(),
        );
    }
    options.connect(addrs.as_slice()).await.with_context(|| format!("connecting to NATS at {url}"))
}

/// Opens the command side on `url` with `settings`' replica count.
///
/// # Errors
/// When NATS cannot be reached or the stream is misconfigured.
pub async fn command_side(url: &str, settings: &Settings) -> Result<CommandSide> {
    let cfg: LogConfig = settings.log_config();
    let side = CommandSide::open(client(url).await?, cfg).await.context("opening the event stream")?;
    Ok(side)
}

/// PostgreSQL as this process reaches it: a pool, and the managed cluster if we started it.
pub struct DbHandle {
    /// Connection pool (migrations applied).
    pub pool: sqlx::PgPool,
    /// URL (for display; managed URLs carry no password).
    pub url: String,
    /// The managed cluster when this process started it or took it over from a process
    /// that ended without stopping it.
    pub managed: Option<crate::managed::postgres::PgCluster>,
}

/// Uses `COVENANT_DATABASE_URL`, or the managed cluster (reusing one already listening on
/// the managed port, or starting it), then applies migrations.
///
/// # Errors
/// When PostgreSQL cannot be started or reached, or a migration fails.
pub async fn database(settings: &Settings) -> Result<DbHandle> {
    use crate::managed::postgres::{PgCluster, cluster_dir, serves_dir};
    let port = settings.managed_pg_port;
    let (url, managed) = match &settings.database_url {
        Some(u) => (u.clone(), None),
        None if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() => {
            // Reuse this data directory's cluster (another covenant process started it),
            // but nothing else listening there.
            let dir = cluster_dir(&settings.data_dir)?;
            if !serves_dir(&dir, port) {
                anyhow::bail!(
                    "port 127.0.0.1:{port} is in use by another process, not by the managed PostgreSQL of {}: \
                     stop it, or set COVENANT_MANAGED_PG_PORT (--managed-pg-port) to a free port, \
                     or COVENANT_DATABASE_URL to use a server of your own",
                    settings.data_dir.display()
                );
            }
            // One whose owner ended without stopping it (killed, crashed) is taken over, to
            // be stopped when this process ends; one whose owner runs is left to it.
            let adopted = PgCluster::adopt(&dir, port)?;
            if adopted.is_some() {
                tracing::info!(port, dir = %dir.display(), "took over the managed PostgreSQL a process that ended left running: it stops with this one");
            }
            (format!("postgres://postgres@127.0.0.1:{port}/covenant"), adopted)
        }
        None => {
            let dir = cluster_dir(&settings.data_dir)?;
            let cluster = PgCluster::start_in(&dir, port)
                .await
                .with_context(|| format!("starting the managed PostgreSQL in {}", dir.display()))?;
            cluster.create_database("covenant").await?;
            (cluster.url("covenant"), Some(cluster))
        }
    };
    let pool = pool(&url).await?;
    covenant_projections::migrate(&pool).await.context("applying database migrations")?;
    Ok(DbHandle { pool, url, managed })
}

/// How long a pooled connection may have sat idle before it is pinged on its way out of
/// the pool.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// A pool that fails fast (3 s) when PostgreSQL is unreachable, instead of hanging.
///
/// sqlx pings every connection it hands out by default: one more round trip to
/// PostgreSQL per query, which under load doubled the server's wake-ups for a read. Here
/// only a connection idle for [`PING_IF_IDLE_FOR`] is pinged (one that has just answered
/// is known to be alive); a ping that fails drops that connection and the pool hands out
/// another, as sqlx's own check does. A server that died between two busy queries is met
/// by the query itself, which fails as it would have after a successful ping.
///
/// # Errors
/// When the URL is invalid or the first connection fails.
pub async fn pool(url: &str) -> Result<sqlx::PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(3))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect(url)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", redact(url)))
}

/// A URL with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let colon = s + 3 + url[s + 3..at].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..colon], &url[at..])
        }
        _ => url.to_owned(),
    }
}
