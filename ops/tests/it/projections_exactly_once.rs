//! Exactly once across faults: while 10,000 commands are appended, the projection process
//! (a real `covenant projections run` child) is killed and restarted several times and
//! PostgreSQL is stopped and started. Afterwards every read model equals a from-scratch fold
//! of the stream, row by row, and the fund equals the sum of the aggregates' GDP.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use covenant_commands::{CommandError, JetStreamStore};
use covenant_domain::Country;
use covenant_projections::checkpoint::{PROJECTIONS, wait_for_sequence};

use crate::harness::{database, fold_until, log_config, nats, pg, read_models};
use crate::workload;

const COMMANDS: u64 = 10_000;
const WRITERS: u64 = 8;

fn spawn_projections(nats_url: &str, db_url: &str, cfg: &covenant_commands::LogConfig, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_covenant"))
        .args(["projections", "run"])
        .env("COVENANT_NATS_URL", nats_url)
        .env("COVENANT_DATABASE_URL", db_url)
        .env("COVENANT_STREAM", &cfg.stream)
        .env("COVENANT_SUBJECT_PREFIX", &cfg.subject_prefix)
        // A killed process holds its projection leases until they expire: keep that short.
        .env("COVENANT_PROJECTION_LEASE", "1s")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn covenant projections run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_models_equal_a_fresh_fold_after_process_kills_and_a_database_outage() {
    let server = nats().await;
    let (mut cluster, pool) = pg().await;
    let cfg = log_config();
    let side = Arc::new(crate::harness::side(&server.url(), &cfg).await);
    let w = Arc::new(workload::setup(&side).await);
    let logfile = tempfile::NamedTempFile::new().expect("log");
    let mut child = spawn_projections(&server.url(), &cluster.url("covenant"), &cfg, logfile.path());

    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (side, w, next) = (side.clone(), w.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= COMMANDS {
                        return;
                    }
                    match workload::step(&side, &w, i).await {
                        Ok(_) | Err(CommandError::Conflict { .. }) => {}
                        Err(e) => panic!("command {i}: {e}"),
                    }
                    tokio::time::sleep(Duration::from_millis(4)).await;
                }
            })
        })
        .collect();
    let faults = {
        let (next, done) = (next.clone(), done.clone());
        let (url, db_url, cfg) = (server.url(), cluster.url("covenant"), cfg.clone());
        let log = logfile.path().to_owned();
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut at_kills = Vec::new();
            let mut kills = 0;
            let mut outages = 0;
            let mut round = 0u64;
            while !(done.load(Ordering::Relaxed) && kills >= 3 && outages >= 1) {
                tokio::time::sleep(Duration::from_millis(700)).await;
                round += 1;
                if round % 3 == 2 {
                    cluster.stop(true);
                    tokio::time::sleep(Duration::from_millis(800)).await;
                    cluster.start().await.expect("restart postgres");
                    outages += 1;
                } else {
                    // The restarted process stands by until the killed one's lease expires:
                    // kill it only once it has taken over and applied something.
                    let before = at_kills.last().copied().unwrap_or(0);
                    let deadline = std::time::Instant::now() + Duration::from_secs(15);
                    while covenant_projections::checkpoint::get(&pool, "ledger").await.unwrap_or(0) <= before
                        && std::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    at_kills.push(covenant_projections::checkpoint::get(&pool, "ledger").await.unwrap_or(0));
                    child.kill().expect("kill projections");
                    child.wait().expect("reap");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    child = spawn_projections(&url, &db_url, &cfg, &log);
                    kills += 1;
                }
                if next.load(Ordering::Relaxed) >= COMMANDS {
                    done.store(true, Ordering::Relaxed);
                }
            }
            (child, cluster, kills, outages, at_kills)
        })
    };
    for wtask in writers {
        wtask.await.expect("writer");
    }
    done.store(true, Ordering::Relaxed);
    let (mut child, cluster, kills, outages, at_kills) = faults.await.expect("faults");
    assert!(kills >= 3 && outages >= 1, "faults injected: {kills} kills, {outages} outages");
    let advanced = at_kills.windows(2).filter(|w| w[1] > w[0]).count();
    assert!(advanced >= 2, "the projection process made progress between kills: checkpoints at kills {at_kills:?}");

    let last = side.log.last_sequence().await.expect("info");
    assert!(last > COMMANDS, "stream holds {last} events");
    let reached = wait_for_sequence(&pool, &PROJECTIONS, last, Duration::from_secs(120)).await;
    let log = std::fs::read_to_string(logfile.path()).unwrap_or_default();
    reached.unwrap_or_else(|e| panic!("projections did not catch up: {e}\n{log}"));
    child.kill().expect("kill");
    child.wait().expect("reap");

    let fresh = database(&cluster, "fold").await;
    fold_until(side.log.jetstream(), &cfg.stream, &fresh, last).await;
    let (got, want) = (read_models(&pool).await, read_models(&fresh).await);
    for ((table, g), (_, f)) in got.iter().zip(&want) {
        assert_eq!(g, f, "table {table} differs from a fresh fold");
    }
    let audit_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events").fetch_one(&pool).await.expect("count");
    assert_eq!(audit_rows as u64, last, "every event reached the audit model exactly once");

    // Independently of the projection code: the fund equals the aggregates' GDP.
    let store = JetStreamStore::<Country>::new(side.log.clone(), 64);
    let mut total = 0u64;
    for code in &w.countries {
        total += store.load(code).await.expect("load").aggregate.gdp_usd().get();
    }
    let fund = covenant_projections::views::fund(&pool).await.expect("fund");
    assert_eq!(fund.total_usd as u64, total);
    assert_eq!(fund.countries as usize, w.countries.len());
    assert_eq!(fund.as_of_seq as u64, last);
}
