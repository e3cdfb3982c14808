//! The demo's sealer (`covenant audit seal --parent <pid>`, started by `covenant serve
//! --demo`) ends with the process that started it, even when that one is killed outright
//! and cannot stop it: no sealer is left running, holding the lease, after the service.

use std::process::Command;
use std::time::Duration;

use covenant_ops::managed::running;

use crate::harness::{log_config, nats, register_country};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealer_with_a_parent_stops_when_its_parent_is_killed() {
    let server = nats().await;
    let cfg = log_config();
    let side = crate::harness::side(&server.url(), &cfg).await;
    register_country(&side, "DE", "Germany", 100).await;
    let dir = tempfile::tempdir().expect("tmp");
    // A shell stands for `covenant serve --demo`: it starts the sealer with its own pid as
    // the parent, prints the sealer's pid, and is then killed outright.
    let mut parent = Command::new("sh")
        .arg("-c")
        .arg("\"$0\" audit seal --interval 1 --parent $$ & echo $!; wait")
        .arg(env!("CARGO_BIN_EXE_covenant"))
        .env("COVENANT_NATS_URL", server.url())
        .env("COVENANT_STREAM", &cfg.stream)
        .env("COVENANT_DATA_DIR", dir.path())
        .env_remove("COVENANT_SEALER_KEY")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sh");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(parent.stdout.take().expect("stdout")), &mut line)
        .expect("the sealer's pid");
    let sealer: u32 = line.trim().parse().expect("a pid");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(running(sealer), "the sealer did not start");

    parent.kill().expect("kill the parent");
    let _ = parent.wait();
    let stopped = crate::harness::eventually(Duration::from_secs(10), async || !running(sealer)).await;
    if !stopped {
        let _ = Command::new("kill").arg(sealer.to_string()).status();
    }
    assert!(stopped, "the sealer still runs 10 s after its parent was killed");
}
