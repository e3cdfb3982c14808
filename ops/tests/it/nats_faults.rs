//! nats-server killed (SIGKILL) in the middle of a stream of commands and restarted:
//! acknowledged commands survive, multi-event commands are never half-applied, the client
//! reconnects by itself, and commands sent while NATS is down fail fast as unavailable.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use covenant_commands::{CommandContext, CommandError, CommandSide};
use covenant_domain::country::CountryGdpUpdated;
use covenant_domain::{CountryCode, CountryCommand, Name, Usd};

use crate::harness::{all_events, client, eventually, log_config, nats};

const COUNTRIES: [&str; 4] = ["FR", "DE", "IT", "ES"];
const HISTORY: u64 = 5;

/// A command's number and the ids of the events it was acknowledged with.
type Acked = (u64, Vec<String>);

fn usd(v: u64) -> Usd {
    Usd::new(v).expect("in range")
}

/// Command j writes figures that identify it: j*100+1 (single) or j*100+1..=j*100+5 (batch).
fn command(j: u64) -> CountryCommand {
    if j.is_multiple_of(2) {
        CountryCommand::UpdateGdp { gdp_usd: usd(j * 100 + 1) }
    } else {
        CountryCommand::RecordGdpHistory { gdp_usd: (1..=HISTORY).map(|k| usd(j * 100 + k)).collect() }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_crash_loses_no_acknowledged_command_and_half_applies_none() {
    let mut server = nats().await;
    let cfg = log_config();
    let nc = client(&server.url()).await;
    let side = Arc::new(CommandSide::open(nc.clone(), cfg).await.expect("open"));
    for code in COUNTRIES {
        let cmd = CountryCommand::Register {
            code: CountryCode::parse(code).expect("code"),
            name: Name::parse(code).expect("name"),
            gdp_usd: usd(1),
        };
        side.countries.execute(code, cmd, &CommandContext::system()).await.expect("register");
    }
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = COUNTRIES
        .iter()
        .enumerate()
        .map(|(w, code)| {
            let (side, acked, stop) = (side.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut j = w as u64 + 1;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match side.countries.execute(code, command(j), &CommandContext::system()).await {
                        Ok(r) => {
                            acked.lock().expect("lock").push((j, r.event_ids.iter().map(ToString::to_string).collect()))
                        }
                        Err(CommandError::Unavailable { .. }) => tokio::time::sleep(Duration::from_millis(20)).await,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                    j += COUNTRIES.len() as u64;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(700)).await;
    let before_kill = acked.lock().expect("lock").len();
    assert!(before_kill > 10, "commands were flowing before the crash ({before_kill})");
    server.kill();
    assert!(eventually(Duration::from_secs(5), async || nc.connection_state() != State::Connected).await);

    // While NATS is down: a clear, immediate "unavailable".
    let t = Instant::now();
    let err = side
        .countries
        .execute("FR", CountryCommand::UpdateGdp { gdp_usd: usd(7) }, &CommandContext::system())
        .await
        .expect_err("NATS is down");
    assert!(matches!(err, CommandError::Unavailable { .. }), "got {err:?}");
    assert!(err.to_string().starts_with("unavailable"), "message: {err}");
    assert!(t.elapsed() < Duration::from_millis(500), "failed after {:?}, not fast", t.elapsed());

    tokio::time::sleep(Duration::from_millis(500)).await;
    server.start().await.expect("restart nats-server on the same store and port");
    assert!(
        eventually(Duration::from_secs(15), async || nc.connection_state() == State::Connected).await,
        "client reconnected by itself"
    );
    let after_restart = acked.lock().expect("lock").len();
    assert!(
        eventually(Duration::from_secs(15), async || acked.lock().expect("lock").len() > after_restart + 10).await,
        "commands flow again after the restart without restarting the process"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }

    let events = all_events(&side.log).await;
    let stored: HashSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let acked = acked.lock().expect("lock").clone();
    for (j, ids) in &acked {
        for id in ids {
            assert!(stored.contains(id), "acknowledged command {j} lost event {id}");
        }
    }
    assert_eq!(stored.len(), events.len(), "no event id stored twice");
    // Group stored updates by the command that wrote them: all of a batch or none.
    let mut per_command: HashMap<u64, u64> = HashMap::new();
    for e in events.iter().filter(|e| e.event_type == "country.update") {
        let u: CountryGdpUpdated = serde_json::from_slice(&e.payload).expect("payload");
        *per_command.entry(u.new_gdp_usd.get() / 100).or_default() += 1;
    }
    for (j, n) in per_command {
        let want = if j.is_multiple_of(2) { 1 } else { HISTORY };
        assert_eq!(n, want, "command {j} stored {n} of its {want} events");
    }
    for code in COUNTRIES {
        let subject = side.log.subject("country", code);
        let versions: Vec<u64> = events.iter().filter(|e| e.subject == subject).map(|e| e.version).collect();
        assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>(), "{code}: contiguous versions");
    }
}

#[tokio::test]
async fn commands_fail_fast_with_unavailable_when_nats_never_comes_back() {
    let mut server = nats().await;
    let nc = client(&server.url()).await;
    let side = CommandSide::open(nc.clone(), log_config()).await.expect("open");
    server.kill();
    assert!(eventually(Duration::from_secs(5), async || nc.connection_state() != State::Connected).await);
    for _ in 0..3 {
        let t = Instant::now();
        let cmd = CountryCommand::Register {
            code: CountryCode::parse("FR").expect("code"),
            name: Name::parse("France").expect("name"),
            gdp_usd: usd(5),
        };
        let err = side.countries.execute("FR", cmd, &CommandContext::system()).await.expect_err("down");
        assert!(matches!(err, CommandError::Unavailable { outcome_unknown: false, .. }), "{err:?}");
        assert!(t.elapsed() < Duration::from_millis(200));
    }
}
