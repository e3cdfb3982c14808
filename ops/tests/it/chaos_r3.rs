//! Chaos: a 3-node cluster with an R3 stream, the stream leader SIGKILLed under a mixed
//! write load three times (restarted after each election), projections running all along.
//! Afterwards every acknowledged event is in the stream, each aggregate's chain is linear,
//! no consumer is left beyond the projections' own, and the read models equal a fresh fold
//! of the stream row by row: no projection moved its
//! checkpoint over an event it never applied (the skip seen in 2 of 7 such runs before
//! runners refused to advance over a hole in delivered sequences).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use covenant_commands::{CommandError, LogConfig};
use covenant_ops::managed::nats::{NatsCluster, SyncPolicy};
use covenant_projections::checkpoint::{PROJECTIONS, wait_for_sequence};

use crate::harness::{all_events, database, fold_until, log_config, pg, read_models};
use crate::workload;

const WRITERS: u64 = 4;
const KILLS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r3_leader_kills_under_load_lose_nothing_and_projections_skip_nothing() {
    let mut cluster = NatsCluster::start(SyncPolicy::Default).await.expect("3-node cluster");
    let cfg = LogConfig { replicas: 3, request_timeout: Duration::from_secs(3), ..log_config() };
    let side = Arc::new(crate::cluster::open_with_retry(&cluster.url(), &cfg).await);
    let js = side.log.jetstream().clone();
    // A just-formed cluster may take a moment to route the stream's subjects.
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(mut s) = js.get_stream(&cfg.stream).await
            && let Ok(info) = s.info().await
            && info.cluster.as_ref().is_some_and(|c| c.leader.is_some())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "the R3 stream has a leader");
    let w = Arc::new(workload::setup(&side).await);
    crate::harness::metrics();
    let (pg_cluster, pool) = pg().await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = crate::harness::run_projections(&js, &cfg.stream, &pool, &stop_rx, Duration::from_millis(200));

    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let last_ok = Arc::new(std::sync::Mutex::new(Instant::now()));
    let errors = Arc::new(std::sync::Mutex::new(BTreeMap::<String, u64>::new()));
    let acked = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let acked_at = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (side, w, next, done, last_ok, errors, acked, acked_at) = (
                side.clone(),
                w.clone(),
                next.clone(),
                done.clone(),
                last_ok.clone(),
                errors.clone(),
                acked.clone(),
                acked_at.clone(),
            );
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    match workload::step(&side, &w, i).await {
                        Ok(seq) => {
                            *last_ok.lock().expect("lock") = Instant::now();
                            acked_at.lock().expect("lock").push(Instant::now());
                            acked.lock().expect("lock").extend(seq);
                        }
                        Err(e) => {
                            let kind = match e {
                                CommandError::Unavailable { .. } => "unavailable".to_owned(),
                                CommandError::Conflict { .. } => "conflict".to_owned(),
                                other => format!("{other}"),
                            };
                            *errors.lock().expect("lock").entry(kind).or_default() += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
        .collect();

    let mut recoveries = Vec::new();
    for round in 0..KILLS {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let leader = stream_leader(&js, &cfg.stream).await;
        let node = cluster.nodes.iter_mut().position(|n| n.name() == leader).expect("the leader is one of ours");
        let killed_at = Instant::now();
        cluster.nodes[node].kill();
        // Recovery: the first command acknowledged after the kill.
        let recovered = loop {
            if *last_ok.lock().expect("lock") > killed_at {
                break killed_at.elapsed();
            }
            assert!(killed_at.elapsed() < Duration::from_secs(60), "no command succeeded for 60 s after kill {round}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // When the survivors had elected a new leader (asked with short time-outs).
        let elected = loop {
            let info = async { js.get_stream(&cfg.stream).await.ok()?.info().await.ok()?.cluster.clone()?.leader };
            if let Ok(Some(l)) = tokio::time::timeout(Duration::from_millis(300), info).await
                && l != leader
            {
                break killed_at.elapsed();
            }
            assert!(killed_at.elapsed() < Duration::from_secs(60), "no new leader 60 s after kill {round}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        // The write outage: the longest time without an acknowledged command from the kill
        // on, and how long after the election writes flowed again.
        let acks: Vec<Instant> = acked_at.lock().expect("lock").iter().copied().filter(|t| *t >= killed_at).collect();
        let mut outage = Duration::ZERO;
        let mut prev = killed_at;
        let mut resumed = None;
        for t in &acks {
            let gap = t.duration_since(prev);
            if gap > outage {
                outage = gap;
                resumed = Some(t.duration_since(killed_at));
            }
            prev = *t;
        }
        let after_election = resumed.map(|r| r.saturating_sub(elected));
        recoveries.push((recovered, elected, outage, after_election));
        cluster.nodes[node].start().await.expect("restart the killed node");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    done.store(true, Ordering::Relaxed);
    for t in writers {
        t.await.expect("writer");
    }

    // Bounded consumers: the two projections' durables, nothing left by loads or reloads.
    let consumers = js.get_stream(&cfg.stream).await.expect("stream").info().await.expect("info").state.consumer_count;
    assert!(consumers <= 2, "{consumers} consumers on the stream after the load (projections: 2)");
    let events = all_events(&side.log).await;
    let last = events.last().map_or(0, |e| e.seq);
    let stored: HashSet<u64> = events.iter().map(|e| e.seq).collect();
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.iter().all(|s| stored.contains(s)), "every acknowledged command's events are in the stream");
    // Linear chains: each aggregate's versions are 1, 2, 3, … in stream order.
    let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &events {
        let v = versions.entry(e.subject.as_str()).or_default();
        assert_eq!(e.version, *v + 1, "{} at sequence {}", e.subject, e.seq);
        *v = e.version;
    }
    wait_for_sequence(&pool, &PROJECTIONS, last, Duration::from_secs(60)).await.expect("projections catch up");
    let (code, out) =
        crate::harness::covenant_cli(&["projections", "verify"], &cluster.url(), &pg_cluster.url("covenant"), &cfg);
    assert_eq!(code, Some(0), "projections verify after leader kills: {out}");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let fresh = database(&pg_cluster, "fresh").await;
    fold_until(&js, &cfg.stream, &fresh, last).await;
    let live = read_models(&pool).await;
    let folded = read_models(&fresh).await;
    for ((table, a), (_, b)) in live.iter().zip(&folded) {
        assert!(a == b, "read model {table} differs from a fresh fold of the stream after leader kills");
    }
    let gaps: f64 = ["ledger", "audit"]
        .iter()
        .map(|p| {
            crate::harness::metric_value("covenant_projection_sequence_gaps_total", &[&format!("projection=\"{p}\"")])
                .unwrap_or(0.0)
        })
        .sum();
    let fmt = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    for (i, (first, elected, outage, after)) in recoveries.iter().enumerate() {
        println!(
            "chaos r3 kill {}: new leader elected after {}, longest time without an acknowledged command {}, \
             writes flowing again {} after the election (first ack after the kill: {})",
            i + 1,
            fmt(*elected),
            fmt(*outage),
            after.map_or_else(|| "-".into(), fmt),
            fmt(*first)
        );
    }
    println!(
        "chaos r3: {} acknowledged commands, {} events, {KILLS} leader kills, errors {:?}, \
         delivery holes re-fetched by the runners (this process) {gaps}",
        acked.len(),
        events.len(),
        errors.lock().expect("lock")
    );
}

/// The stream leader's server name, asked until the cluster answers (after a restart it
/// may still be electing, or the client reconnecting).
async fn stream_leader(js: &async_nats::jetstream::Context, stream: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = js.get_stream(stream).await
            && let Ok(info) = s.info().await
            && let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone())
        {
            return leader;
        }
        assert!(Instant::now() < deadline, "the stream has no leader after 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
