//! What a new user meets when a port `covenant serve` needs is taken (an old nats-server on
//! the machine, another PostgreSQL, a second service on the HTTP port): the process exits
//! at once with an error naming the port and the setting that moves it, and leaves nothing
//! running. Each case runs the real binary with the default relative data dir
//! (`./.covenant`) from a directory only its owner may enter, as in root's home.
//! (`ops/scripts/first-contact.sh`, run by the README's test command, covers the happy path:
//! the demo from a fresh copy, its fund, Ctrl-C.)

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    covenant_ops::managed::free_port().expect("port")
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Runs `covenant serve` in a fresh 0700 directory with these ports; returns (exit code,
/// stderr, seconds it took).
fn serve(nats_port: u16, pg_port: u16, http_port: u16) -> (Option<i32>, String, f64) {
    let home = tempfile::tempdir().expect("tmp"); // mode 0700
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_covenant"))
        .arg("serve")
        .current_dir(home.path())
        .env_remove("COVENANT_NATS_URL")
        .env_remove("COVENANT_DATABASE_URL")
        .env_remove("COVENANT_DATA_DIR")
        .env("COVENANT_MANAGED_NATS_PORT", nats_port.to_string())
        .env("COVENANT_MANAGED_PG_PORT", pg_port.to_string())
        .env("COVENANT_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run covenant serve");
    // The managed PostgreSQL of a 0700 directory lives under /var/lib/covenant.
    if let Ok(target) = std::fs::read_link(home.path().join(".covenant/postgres"))
        && target.starts_with("/var/lib/covenant")
    {
        let _ = std::fs::remove_dir_all(target);
    }
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), started.elapsed().as_secs_f64())
}

#[test]
fn a_busy_nats_port_is_named_with_the_setting_that_moves_it() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let (code, err, secs) = serve(port, free_port(), free_port());
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("COVENANT_MANAGED_NATS_PORT"), "{err}");
    assert!(secs < 30.0, "took {secs} s");
}

#[test]
fn a_busy_postgres_port_is_named_and_the_started_nats_server_is_stopped() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let nats_port = free_port();
    let (code, err, _) = serve(nats_port, port, free_port());
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("COVENANT_MANAGED_PG_PORT"), "{err}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!listening(nats_port), "the managed nats-server was left running");
}

#[test]
fn a_busy_http_port_is_named_and_the_managed_servers_are_stopped() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let (nats_port, pg_port) = (free_port(), free_port());
    let (code, err, _) = serve(nats_port, pg_port, port);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("COVENANT_HTTP_ADDR"), "{err}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!listening(nats_port) && !listening(pg_port), "a managed server was left running");
}
