//! The HTTP benchmark's server: the API and the projections as `covenant serve` runs them,
//! in a process of its own, so that the load generator does not share its runtime.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use covenant_ops::connect;

/// One server run (internal): started by `covenant-bench http` and `covenant-bench soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpServer {
    /// NATS URL.
    #[arg(long)]
    pub nats: String,
    /// PostgreSQL URL.
    #[arg(long)]
    pub database: String,
    /// The event stream.
    #[arg(long)]
    pub stream: String,
    /// The stream's subject prefix.
    #[arg(long)]
    pub subject_prefix: String,
}

/// Serves until standard input closes: prints `listening <address>` once the API accepts
/// requests.
///
/// # Errors
/// When a service cannot be reached.
pub async fn serve(s: &HttpServer) -> Result<()> {
    let metrics = Some(covenant_ops::telemetry::install_metrics());
    let cfg = covenant_commands::LogConfig {
        stream: s.stream.clone(),
        subject_prefix: s.subject_prefix.clone(),
        ..Default::default()
    };
    let side = Arc::new(covenant_commands::CommandSide::open(connect::client(&s.nats).await?, cfg.clone()).await?);
    let pool = connect::pool(&s.database).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = super::projections(&side, &pool, &stop_rx);
    let api = super::api_in_process(&side, &pool, &s.nats, metrics, &stop_rx).await?;
    println!("listening {}", api.addr);
    let mut line = String::new();
    let _ = BufReader::new(tokio::io::stdin()).read_line(&mut line).await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let _ = api.task.await;
    Ok(())
}

/// The server process, seen from the load generator.
pub struct ServerProcess {
    child: tokio::process::Child,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Its log file (standard error).
    pub log: std::path::PathBuf,
}

impl ServerProcess {
    /// Starts `covenant-bench http-server` on the services and stream given; its logs
    /// (the service's defaults: JSON lines at `info`) go to a file in `dir`.
    ///
    /// # Errors
    /// When it cannot start or does not listen within a minute.
    pub async fn start(dir: &std::path::Path, s: &HttpServer) -> Result<Self> {
        let exe = std::env::current_exe().context("locating the covenant-bench binary")?;
        let log = dir.join("http-server.log");
        let file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = tokio::process::Command::new(exe)
            .args(["http-server", "--nats", &s.nats, "--database", &s.database])
            .args(["--stream", &s.stream, "--subject-prefix", &s.subject_prefix])
            .env("COVENANT_LOG_FORMAT", "json")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .context("starting the benchmark's server process")?;
        let out = child.stdout.take().context("the server's standard output")?;
        let mut lines = BufReader::new(out).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(l) = lines.next_line().await? {
                if let Some(a) = l.strip_prefix("listening ") {
                    return Ok(a.parse()?);
                }
            }
            bail!("the server process ended before listening (its log: {})", log.display())
        })
        .await
        .with_context(|| format!("the server process did not listen within a minute (its log: {})", log.display()))??;
        Ok(Self { child, addr, log })
    }

    /// CPU time (user and system) the server process has used so far (`None` off Linux).
    pub fn cpu(&self) -> Option<std::time::Duration> {
        crate::cpu_time(Some(self.child.id()?))
    }

    /// Resident memory of the server process, in bytes (`None` off Linux).
    pub fn rss(&self) -> Option<u64> {
        #[cfg(target_os = "linux")]
        {
            let pid = i32::try_from(self.child.id()?).ok()?;
            let status = procfs::process::Process::new(pid).ok()?.status().ok()?;
            status.vmrss.map(|kb| kb * 1024)
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }

    /// Stops it (closes its standard input) and waits for it.
    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }
}
