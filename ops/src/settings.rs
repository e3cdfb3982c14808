//! Typed settings, read once in `main`: defaults, then environment variables, then flags
//! (clap reads each `COVENANT_*` variable named below). Nothing else reads the environment.

use std::path::PathBuf;

use crate::managed::nats::SyncPolicy;

/// Default port of the managed nats-server (not 4222, where an older system server may
/// listen); `COVENANT_MANAGED_NATS_PORT` moves it.
pub const MANAGED_NATS_PORT: u16 = 14222;
/// Default port of the managed PostgreSQL cluster (not 5432, where the system's may
/// listen); `COVENANT_MANAGED_PG_PORT` moves it.
pub const MANAGED_PG_PORT: u16 = 15432;

/// Durability of the managed nats-server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncArg {
    /// fsync before every acknowledgement: an acknowledged event survives an OS crash.
    Always,
    /// The server default (flush every 2 min): an OS crash may lose up to 2 min of
    /// acknowledged events; a process crash loses nothing.
    Default,
}

impl From<SyncArg> for SyncPolicy {
    fn from(s: SyncArg) -> Self {
        match s {
            SyncArg::Always => SyncPolicy::Always,
            SyncArg::Default => SyncPolicy::Default,
        }
    }
}

/// A secret setting: never shown by `Debug`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < 16 {
            return Err("a JWT secret needs at least 16 characters".into());
        }
        Ok(Secret(s.to_owned()))
    }
}

/// Where Covenant finds (or starts) its services.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Address the HTTP API listens on (port 0 = any free port).
    #[arg(long, env = "COVENANT_HTTP_ADDR", default_value = "127.0.0.1:4000", global = true)]
    pub http_addr: std::net::SocketAddr,

    /// Most HTTP connections open at once (WebSockets included); more wait to be accepted.
    /// Lowered at start to what the open-file limit (`ulimit -n`, raised to its hard limit)
    /// leaves for them.
    #[arg(
        long,
        env = "COVENANT_HTTP_MAX_CONNECTIONS",
        default_value_t = 4096,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true,
        help_heading = "API limits"
    )]
    pub http_max_connections: u32,

    /// How long a client has to send a request's headers once connected or answered
    /// (`10s`, `1500ms`): slower or idle connections are closed.
    #[arg(
        long,
        env = "COVENANT_HTTP_HEADER_TIMEOUT",
        default_value = "10s",
        value_parser = parse_header_timeout,
        global = true,
        help_heading = "API limits"
    )]
    pub http_header_timeout: std::time::Duration,

    /// Most HTTP connections open at once from one client address (an IPv6 /64 counts as
    /// one address), or `off`: one client cannot hold every connection. Past it, its next
    /// connection is answered 503 and closed. Behind a proxy every client has the proxy's
    /// address: set `off` there and bound connections at the proxy.
    #[arg(
        long,
        env = "COVENANT_HTTP_MAX_CONNECTIONS_PER_ADDRESS",
        default_value = "256",
        value_parser = parse_per_address,
        global = true,
        help_heading = "API limits"
    )]
    pub http_max_connections_per_address: PerAddress,

    /// NATS server URL(s), comma-separated. Unset: a managed nats-server is started under
    /// the data directory on 127.0.0.1:14222.
    #[arg(long, env = "COVENANT_NATS_URL", global = true)]
    pub nats_url: Option<String>,

    /// PostgreSQL URL of the read models. Unset: a managed cluster is started under the
    /// data directory on 127.0.0.1:15432.
    #[arg(long, env = "COVENANT_DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Directory of the managed services' data (made absolute at start: the managed
    /// servers run in directories of their own).
    #[arg(long, env = "COVENANT_DATA_DIR", default_value = "./.covenant", global = true)]
    pub data_dir: PathBuf,

    /// Port of the managed nats-server on 127.0.0.1 (when COVENANT_NATS_URL is unset).
    #[arg(long, env = "COVENANT_MANAGED_NATS_PORT", default_value_t = MANAGED_NATS_PORT, global = true)]
    pub managed_nats_port: u16,

    /// Port of the managed PostgreSQL on 127.0.0.1 (when COVENANT_DATABASE_URL is unset).
    #[arg(long, env = "COVENANT_MANAGED_PG_PORT", default_value_t = MANAGED_PG_PORT, global = true)]
    pub managed_pg_port: u16,

    /// JetStream replicas of the event stream: 1 for one node, 3 in a cluster.
    #[arg(long, env = "COVENANT_STREAM_REPLICAS", default_value_t = 1, global = true)]
    pub stream_replicas: usize,

    /// Group commit: atomic batches in flight per process, each holding the appends to
    /// different aggregates that queued meanwhile (stored and fsynced once instead of once
    /// per event); 0 publishes every append alone. Unset: on (2) when the managed
    /// nats-server syncs always, off otherwise (nats-server stages each batch on disk, which
    /// costs more than it saves when acks are not fsynced). The server allows 50 per stream.
    #[arg(long, env = "COVENANT_GROUP_COMMIT", value_parser = parse_group_commit, global = true)]
    pub group_commit: Option<usize>,

    /// Durability of the managed nats-server (ignored with COVENANT_NATS_URL).
    #[arg(long, env = "COVENANT_NATS_SYNC", value_enum, default_value_t = SyncArg::Always, global = true)]
    pub nats_sync: SyncArg,

    /// Secret of the first JWT signing key (used only while no key exists yet; later keys
    /// come from `covenant secrets rotate`). Unset: a random one.
    #[arg(long, env = "COVENANT_JWT_SECRET", global = true, hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// Event stream name (tests and side-by-side deployments vary it).
    #[arg(long, env = "COVENANT_STREAM", default_value = "COVENANT_EVENTS", global = true)]
    pub stream: String,

    /// Subject prefix of the event stream: subjects are `<prefix>.<aggregate>.<id>`.
    #[arg(long, env = "COVENANT_SUBJECT_PREFIX", default_value = "covenant.events", global = true)]
    pub subject_prefix: String,

    /// Requests to /api/graphql per client address (an IPv6 /64 counts as one), as
    /// N/WINDOW (`60/1m`, `10/30s`) or `off`. Health and metrics are never limited.
    #[arg(long, env = "COVENANT_RATE_LIMIT_IP", default_value = "60/1m", global = true, help_heading = "API limits")]
    pub rate_limit_ip: covenant_api::limits::Limit,

    /// GraphQL requests per signed-in user, as N/WINDOW or `off`.
    #[arg(
        long,
        env = "COVENANT_RATE_LIMIT_USER",
        default_value = "100/1m",
        global = true,
        help_heading = "API limits"
    )]
    pub rate_limit_user: covenant_api::limits::Limit,

    /// Login attempts per client address (an IPv6 /64 counts as one) and account, as
    /// N/WINDOW or `off`.
    #[arg(
        long,
        env = "COVENANT_RATE_LIMIT_LOGIN",
        default_value = "5/15m",
        global = true,
        help_heading = "API limits"
    )]
    pub rate_limit_login: covenant_api::limits::Limit,

    /// How long a projection lease lasts unrenewed (`6s`, `1500ms`): with several instances
    /// each projection runs in the one holding its lease, and a standby takes over a dead
    /// holder's projections within this. Renewals come every third of it.
    #[arg(long, env = "COVENANT_PROJECTION_LEASE", default_value = "6s", value_parser = parse_lease, global = true)]
    pub projection_lease: std::time::Duration,

    /// Explicit nats-server binary for the managed server (default: pip's, then PATH).
    #[arg(long, env = "COVENANT_NATS_SERVER", global = true, hide = true)]
    pub nats_server: Option<PathBuf>,
}

impl Settings {
    /// The HTTP server's connection bounds.
    pub fn connections(&self) -> crate::http::Connections {
        crate::http::Connections {
            max: usize::try_from(self.http_max_connections).unwrap_or(usize::MAX),
            header_timeout: self.http_header_timeout,
            per_address: self.http_max_connections_per_address.0,
        }
    }

    /// The API's options: these settings' rate limits.
    pub fn api_options(&self) -> covenant_api::ApiOptions {
        covenant_api::ApiOptions {
            limits: covenant_api::limits::LimitSettings {
                per_ip: self.rate_limit_ip,
                per_user: self.rate_limit_user,
                login: self.rate_limit_login,
            },
            ..Default::default()
        }
    }

    /// Batches in flight for group commit: as set, else on only where every ack is
    /// fsynced (the managed server at sync always).
    pub fn group_commit(&self) -> usize {
        self.group_commit.unwrap_or(match (&self.nats_url, self.nats_sync) {
            (None, SyncArg::Always) => covenant_commands::DEFAULT_GROUP_COMMIT,
            _ => 0,
        })
    }

    /// The event log configuration these settings describe.
    pub fn log_config(&self) -> covenant_commands::LogConfig {
        covenant_commands::LogConfig {
            stream: self.stream.clone(),
            subject_prefix: self.subject_prefix.clone(),
            replicas: self.stream_replicas,
            group_commit: self.group_commit(),
            ..Default::default()
        }
    }
}

/// Parses a group-commit setting: 0 (off) to 50 batches in flight (the server's limit per
/// stream).
pub fn parse_group_commit(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n <= 50 => Ok(n),
        _ => Err(format!("`{s}` is not a group commit: 0 (off) to 50 atomic batches in flight")),
    }
}

/// Parses a lease time to live: `<N>s` or `<N>ms`, from 300 ms to 10 minutes.
fn parse_lease(s: &str) -> Result<std::time::Duration, String> {
    parse_duration(s, "a lease time")
}

/// Parses the HTTP header timeout: `<N>s` or `<N>ms`, from 300 ms to 10 minutes.
fn parse_header_timeout(s: &str) -> Result<std::time::Duration, String> {
    parse_duration(s, "a header timeout")
}

/// `<N>s` or `<N>ms`, from 300 ms to 10 minutes; the error names `what` was expected.
fn parse_duration(s: &str, what: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let bad = || format!("`{s}` is not {what}: write 6s or 1500ms (300ms to 600s)");
    let ms = if let Some(n) = s.strip_suffix("ms") {
        n.trim().parse::<u64>().map_err(|_| bad())?
    } else if let Some(n) = s.strip_suffix('s') {
        n.trim().parse::<u64>().map_err(|_| bad())?.checked_mul(1000).ok_or_else(bad)?
    } else {
        return Err(bad());
    };
    if !(300..=600_000).contains(&ms) {
        return Err(bad());
    }
    Ok(std::time::Duration::from_millis(ms))
}

/// [`Settings::http_max_connections_per_address`]: a number of connections, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerAddress(pub Option<usize>);

/// `off`, or a number of connections from 1 up.
fn parse_per_address(s: &str) -> Result<PerAddress, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(PerAddress(None));
    }
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(PerAddress(Some(n))),
        _ => Err(format!("`{s}` is not a number of connections: write a number from 1 up, or off")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn connections_per_address_are_a_number_or_off() {
        use super::{PerAddress, parse_per_address};
        assert_eq!(parse_per_address("256"), Ok(PerAddress(Some(256))));
        assert_eq!(parse_per_address(" OFF "), Ok(PerAddress(None)));
        for bad in ["0", "-1", "lots", ""] {
            let e = parse_per_address(bad).expect_err(bad);
            assert!(e.contains("from 1 up, or off"), "{e}");
        }
    }
}
