//! A managed PostgreSQL cluster: `initdb` + `pg_ctl` on a free loopback port, with its
//! socket in its own directory. Run as root (CI, fresh machines), the server runs as the
//! `postgres` system user that Debian's package creates, since PostgreSQL refuses root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{free_port, wait_until};

/// Finds PostgreSQL's server binaries: `explicit`, `pg_config --bindir`, the newest
/// `/usr/lib/postgresql/<v>/bin`, or `initdb` on `PATH`.
///
/// # Errors
/// A message saying how to install PostgreSQL.
pub fn locate_bin_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    let has_initdb = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(d) = explicit.filter(|d| has_initdb(d)) {
        return Ok(d.to_path_buf());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, d): &(u32, PathBuf)| has_initdb(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Ok(d);
    }
    if let Some(d) = super::candidates("initdb", None).first().and_then(|p| p.parent()) {
        return Ok(d.to_path_buf());
    }
    bail!("PostgreSQL server binaries (initdb, pg_ctl) not found: install them with `apt-get install postgresql`")
}

/// One PostgreSQL cluster.
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    run_as: Option<String>,
    running: bool,
    /// Ownership of a cluster kept in a directory that outlives this process (see
    /// [`super::Owner`]).
    owner: Option<super::Owner>,
    _tmp: Option<tempfile::TempDir>,
}

/// Where the managed cluster of `data_dir` lives: `<data_dir>/postgres`, unless the
/// server's user cannot reach it. PostgreSQL refuses to run as root, so run as root it
/// runs as `postgres`, which cannot enter a checkout in root's home (mode 0700). Then the
/// cluster lives in `/var/lib/covenant/<name>-<hash of data_dir>`, and
/// `<data_dir>/postgres` is a symbolic link to it, so it is found again (and shown).
///
/// # Errors
/// When the directories cannot be made.
pub fn cluster_dir(data_dir: &Path) -> Result<PathBuf> {
    let dir = data_dir.join("postgres");
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    if let Ok(target) = std::fs::read_link(&dir) {
        return Ok(target);
    }
    if !is_root() || reachable_by("postgres", data_dir) {
        return Ok(dir);
    }
    // Empty directories left by an earlier attempt give way to the link.
    for leftover in [dir.join("run"), dir.join("data"), dir.clone()] {
        let _ = std::fs::remove_dir(leftover);
    }
    if dir.exists() {
        bail!(
            "{} exists but the postgres user cannot reach it (a parent directory is closed to it):              move the data directory (COVENANT_DATA_DIR) under a directory others may enter, e.g. /var/lib/covenant",
            dir.display()
        );
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let name = data_dir.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned());
    let target =
        PathBuf::from("/var/lib/covenant").join(format!("{}-{hex}", name.unwrap_or_else(|| "covenant".into())));
    std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
    std::os::unix::fs::symlink(&target, &dir)
        .with_context(|| format!("linking {} to {}", dir.display(), target.display()))?;
    eprintln!(
        "note: the postgres user cannot enter {}, so the managed PostgreSQL keeps its files in {} ({} links there)",
        data_dir.display(),
        target.display(),
        dir.display()
    );
    Ok(target)
}

/// Whether `user` may enter `dir` (every parent included).
fn reachable_by(user: &str, dir: &Path) -> bool {
    Command::new("runuser").args(["-u", user, "--", "test", "-x"]).arg(dir).status().is_ok_and(|s| s.success())
}

/// Whether the PostgreSQL listening on `port` is the cluster in `dir` (its
/// `postmaster.pid` names that port and a live process).
pub fn serves_dir(dir: &Path, port: u16) -> bool {
    let Ok(pid_file) = std::fs::read_to_string(dir.join("data/postmaster.pid")) else { return false };
    let mut lines = pid_file.lines();
    let pid = lines.next().and_then(|l| l.trim().parse::<u32>().ok());
    let listed_port = lines.nth(2).and_then(|l| l.trim().parse::<u16>().ok());
    matches!(pid, Some(pid) if Path::new(&format!("/proc/{pid}")).exists()) && listed_port == Some(port)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

impl PgCluster {
    /// Initialises and starts a cluster in a new temporary directory (fsync off: tests).
    ///
    /// # Errors
    /// When binaries are missing or the server does not start.
    pub async fn start_temp() -> Result<Self> {
        Self::start_temp_with(false).await
    }

    /// Like [`PgCluster::start_temp`], with fsync on when `durable` (benchmarks).
    ///
    /// # Errors
    /// As [`PgCluster::start_temp`].
    pub async fn start_temp_with(durable: bool) -> Result<Self> {
        let tmp = tempfile::Builder::new().prefix("covenant-pg-").tempdir()?;
        let mut c = Self::init(tmp.path(), free_port()?, durable)?;
        c._tmp = Some(tmp);
        c.start().await?;
        Ok(c)
    }

    /// Starts the cluster kept in `dir` (initialising it on first use) on `port`.
    ///
    /// # Errors
    /// As [`PgCluster::start_temp`].
    pub async fn start_in(dir: &Path, port: u16) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let Some(owner) = super::Owner::claim(dir)? else {
            bail!("another Covenant process owns the managed PostgreSQL in {} but it is not listening", dir.display());
        };
        let mut c = Self::init(dir, port, true)?;
        c.owner = Some(owner);
        c.start().await?;
        Ok(c)
    }

    /// Takes over the running cluster kept in `dir`, listening on `port`, when the Covenant
    /// process that started it ended without stopping it (no live process owns it): this
    /// handle stops it as if it had started it. `None` while its owner runs.
    ///
    /// # Errors
    /// When the ownership lock cannot be taken or the server binaries are not found.
    pub fn adopt(dir: &Path, port: u16) -> Result<Option<Self>> {
        let Some(owner) = super::Owner::claim(dir)? else { return Ok(None) };
        let mut c = Self::handle(dir, port)?;
        c.running = true;
        c.owner = Some(owner);
        Ok(Some(c))
    }

    /// A handle on the cluster kept in `dir`, on `port`, which it has not started.
    fn handle(dir: &Path, port: u16) -> Result<Self> {
        let bin = locate_bin_dir(std::env::var_os("COVENANT_PG_BIN").map(PathBuf::from).as_deref())?;
        let run_as = is_root().then(|| "postgres".to_owned());
        Ok(Self { bin, dir: dir.to_path_buf(), port, run_as, running: false, owner: None, _tmp: None })
    }

    fn init(dir: &Path, port: u16, durable: bool) -> Result<Self> {
        let c = Self::handle(dir, port)?;
        for sub in ["data", "run"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        if c.run_as.is_some() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir).status()?;
            if !status.success() {
                bail!("cannot chown {} to the postgres user (is the postgresql package installed?)", dir.display());
            }
        }
        if !dir.join("data/PG_VERSION").is_file() {
            let out = c
                .pg_command("initdb")
                .args(["-D"])
                .arg(dir.join("data"))
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
                .output()
                .context("running initdb")?;
            if !out.status.success() {
                bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            let mut conf = format!(
                "listen_addresses = '127.0.0.1'\nmax_connections = 200\nunix_socket_directories = '{}'\n",
                dir.join("run").display()
            );
            if !durable {
                conf.push_str("fsync = off\nfull_page_writes = off\n");
            }
            let path = dir.join("data/postgresql.auto.conf");
            let mut existing = std::fs::read_to_string(&path).unwrap_or_default();
            existing.push_str(&conf);
            std::fs::write(&path, existing)?;
        }
        Ok(c)
    }

    fn pg_command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    /// Starts the server (again, after [`PgCluster::stop`]) and waits for it.
    ///
    /// # Errors
    /// When `pg_ctl start` fails.
    pub async fn start(&mut self) -> Result<()> {
        let status = self.pg_command("pg_ctl").arg("-D").arg(self.dir.join("data")).arg("status").output()?;
        if status.status.success() {
            // Already running: started by a process that ended without stopping it when
            // this handle owns the directory (then it is this handle's to stop), else by
            // another process, which stops it.
            self.running = self.owner.is_some();
            return Ok(());
        }
        let out = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-o", &format!("-p {}", self.port), "-w", "-t", "30", "start"])
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
            bail!(
                "pg_ctl start failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
            );
        }
        self.running = true;
        let port = self.port;
        wait_until("postgres", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).map(|_| ()).map_err(Into::into)
        })
        .await
    }

    /// Stops the server if this handle started it: `immediate` is a crash (no
    /// checkpoint), otherwise a fast shutdown.
    pub fn stop(&mut self, immediate: bool) {
        if !self.running {
            return;
        }
        let mode = if immediate { "immediate" } else { "fast" };
        let _ =
            self.pg_command("pg_ctl").arg("-D").arg(self.dir.join("data")).args(["-m", mode, "-w", "stop"]).output();
        self.running = false;
    }

    /// The URL of database `db` (user `postgres`, trust auth on loopback).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates database `name` if it does not exist.
    ///
    /// # Errors
    /// When the server refuses.
    pub async fn create_database(&self, name: &str) -> Result<()> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres")).await.context("connecting to postgres")?;
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut conn)
            .await?;
        if exists.is_none() {
            let quoted = name.replace('"', "\"\"");
            sqlx::query(&format!("CREATE DATABASE \"{quoted}\"")).execute(&mut conn).await?;
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop(true);
    }
}
