//! Managed services outlive a `covenant serve` that is killed outright (it cannot stop
//! them); the next `covenant serve` on the same data directory takes them over and stops
//! them when it stops, so nothing is left running after a clean stop, even after a crash.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use covenant_ops::managed::running;

use crate::harness::eventually;

/// The pid of the process whose command line names `arg`, found in `/proc` (so the test
/// does not rely on the pid files the service writes).
fn pid_of_process_with(arg: &std::path::Path) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        cmdline.split(|b| *b == 0).any(|a| a == arg.as_os_str().as_encoded_bytes()).then_some(pid)
    })
}

/// The first line of `path` as a pid.
fn pid_in(path: &std::path::Path) -> u32 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().next().and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("no pid in {}", path.display()))
}

struct Ports {
    http: u16,
    nats: u16,
    pg: u16,
}

fn serve(data: &std::path::Path, ports: &Ports, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_covenant"))
        .arg("serve")
        .env_remove("COVENANT_NATS_URL")
        .env_remove("COVENANT_DATABASE_URL")
        .env_remove("COVENANT_SEALER_KEY")
        .env("COVENANT_DATA_DIR", data)
        .env("COVENANT_HTTP_ADDR", format!("127.0.0.1:{}", ports.http))
        .env("COVENANT_MANAGED_NATS_PORT", ports.nats.to_string())
        .env("COVENANT_MANAGED_PG_PORT", ports.pg.to_string())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("spawn covenant serve")
}

async fn healthy(port: u16) -> bool {
    eventually(Duration::from_secs(90), async || {
        health_status(port).await.is_some_and(|s| s.starts_with("HTTP/1.1 200"))
    })
    .await
}

/// `GET /api/healthcheck`: the status line, if anything answers.
async fn health_status(port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(b"GET /api/healthcheck HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await.ok()?.ok()?;
    String::from_utf8_lossy(&answer).lines().next().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_a_killed_serve_left_running_stop_with_the_next_one() {
    let data = tempfile::tempdir().expect("tmp");
    let free = || covenant_ops::managed::free_port().expect("a free port");
    let ports = Ports { http: free(), nats: free(), pg: free() };
    let log = |n: u32| data.path().join(format!("serve-{n}.log"));
    let tail = |n: u32| std::fs::read_to_string(log(n)).unwrap_or_default();

    let mut first = serve(data.path(), &ports, &log(1));
    assert!(healthy(ports.http).await, "the first serve did not become healthy:\n{}", tail(1));
    let conf = data.path().join("nats/covenant.conf");
    let nats = pid_of_process_with(&conf).unwrap_or_else(|| panic!("no process runs {}", conf.display()));
    let cluster = covenant_ops::managed::postgres::cluster_dir(data.path()).expect("cluster dir");
    let postgres = pid_in(&cluster.join("data/postmaster.pid"));
    assert!(running(nats) && running(postgres), "nats-server {nats} or postgres {postgres} is not running");

    // Killed outright: it cannot stop its services, which keep running without an owner.
    first.kill().expect("kill the first serve");
    let _ = first.wait();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(running(nats) && running(postgres), "the services ended with the killed serve");

    // The next one uses them, takes them over, and stops them when it stops.
    let mut second = serve(data.path(), &ports, &log(2));
    assert!(healthy(ports.http).await, "the second serve did not become healthy:\n{}", tail(2));
    assert!(running(nats) && running(postgres), "the second serve started services of its own");
    let _ = Command::new("kill").args(["-INT", &second.id().to_string()]).status();
    let stopped = eventually(Duration::from_secs(60), async || matches!(second.try_wait(), Ok(Some(_)))).await;
    if !stopped {
        let _ = second.kill();
    }
    assert!(stopped, "the second serve did not stop after SIGINT:\n{}", tail(2));
    let gone = eventually(Duration::from_secs(20), async || !running(nats) && !running(postgres)).await;
    let left: Vec<String> = [("nats-server", nats), ("postgres", postgres)]
        .into_iter()
        .filter(|(_, pid)| running(*pid))
        .map(|(what, pid)| format!("{what} {pid}"))
        .collect();
    for pid in [nats, postgres] {
        if running(pid) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
    assert!(gone, "left running after a clean stop: {}\n{}", left.join(", "), tail(2));
    let log = tail(2);
    assert!(log.contains("took over the managed nats-server"), "{log}");
    assert!(log.contains("took over the managed PostgreSQL"), "{log}");
}
