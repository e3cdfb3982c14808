//! Two instances running the projections against the same stream and database: one runner
//! per projection is active (a lease), the other stands by, so neither deletes and
//! recreates the other's durable consumer; when the active instance dies without releasing
//! its leases, the standby takes over within the lease's time to live, and the read models
//! equal a fresh fold of the stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use covenant_projections::checkpoint::{PROJECTIONS, wait_for_sequence};

use crate::harness::{database, fold_until, log_config, nats, pg, read_models};
use crate::workload;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_run_each_projection_once_and_the_standby_takes_over_a_dead_instance() {
    let server = nats().await;
    let (cluster, pool) = pg().await;
    let cfg = log_config();
    let side = Arc::new(crate::harness::side(&server.url(), &cfg).await);
    let w = workload::setup(&side).await;
    let js = side.log.jetstream().clone();
    let (stop_a, rx_a) = tokio::sync::watch::channel(false);
    let (stop_b, rx_b) = tokio::sync::watch::channel(false);
    let every = Duration::from_millis(200);
    let a = crate::harness::run_projections(&js, &cfg.stream, &pool, &rx_a, every);
    let b = crate::harness::run_projections(&js, &cfg.stream, &pool, &rx_b, every);
    let last = side.log.last_sequence().await.expect("info");
    wait_for_sequence(&pool, &PROJECTIONS, last, Duration::from_secs(30)).await.expect("caught up");
    let stream = js.get_stream(&cfg.stream).await.expect("stream");
    let created = |name: &'static str| {
        let stream = stream.clone();
        async move { stream.consumer_info(format!("projection-{name}")).await.expect("consumer").created }
    };
    let (ledger, audit) = (created("ledger").await, created("audit").await);

    for i in 0..1500 {
        workload::step(&side, &w, i).await.expect("command");
    }
    let last = side.log.last_sequence().await.expect("info");
    wait_for_sequence(&pool, &PROJECTIONS, last, Duration::from_secs(60)).await.expect("caught up");
    assert_eq!((created("ledger").await, created("audit").await), (ledger, audit), "no consumer was recreated");
    let consumers = js.get_stream(&cfg.stream).await.expect("stream").info().await.expect("info").state.consumer_count;
    assert_eq!(consumers, 2, "one durable consumer per projection");

    // The active instance dies (its tasks stop without releasing anything): which one is
    // active does not matter, both are killed in turn of who holds what.
    let holders: Vec<String> = {
        let kv = js.get_key_value(format!("{}_LEASES", cfg.stream)).await.expect("lease bucket");
        let mut out = Vec::new();
        for p in PROJECTIONS {
            let e = kv.entry(format!("projection.{p}")).await.expect("entry").expect("held");
            out.push(String::from_utf8_lossy(&e.value).into_owned());
        }
        out
    };
    for t in &a {
        t.abort();
    }
    let died = Instant::now();
    for i in 1500..1700 {
        workload::step(&side, &w, i).await.expect("command");
    }
    let last = side.log.last_sequence().await.expect("info");
    wait_for_sequence(&pool, &PROJECTIONS, last, Duration::from_secs(30))
        .await
        .expect("the surviving instance runs every projection");
    println!("leases before the kill: {holders:?}; caught up {:?} after instance A died", died.elapsed());
    let _ = stop_b.send(true);
    let _ = stop_a.send(true);
    for t in b {
        let _ = t.await;
    }
    let fresh = database(&cluster, "fresh").await;
    fold_until(&js, &cfg.stream, &fresh, last).await;
    assert!(read_models(&pool).await == read_models(&fresh).await, "read models equal a fresh fold");
}
