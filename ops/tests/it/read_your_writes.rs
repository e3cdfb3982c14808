//! Read-your-writes: a command's receipt sequence, waited for, makes the write visible;
//! a sequence that is never reached times out with a clear error.

use std::time::Duration;

use covenant_commands::CommandContext;
use covenant_domain::{CountryCommand, Usd};
use covenant_projections::checkpoint::{PROJECTIONS, WaitError, wait_for_sequence};

use crate::harness::{log_config, nats, pg};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_visible_once_its_sequence_is_reached_every_time() {
    let server = nats().await;
    let (_cluster, pool) = pg().await;
    let cfg = log_config();
    let side = crate::harness::side(&server.url(), &cfg).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks =
        crate::harness::run_projections(side.log.jetstream(), &cfg.stream, &pool, &stop_rx, Duration::from_secs(1));
    let ctx = CommandContext::system();
    let usd = |v| Usd::new(v).expect("usd");
    crate::harness::register_country(&side, "NO", "Norway", 1).await;
    for i in 0..200u64 {
        let r = side
            .countries
            .execute("NO", CountryCommand::UpdateGdp { gdp_usd: usd(100 + i) }, &ctx)
            .await
            .expect("update");
        wait_for_sequence(&pool, &PROJECTIONS, r.sequence, Duration::from_secs(10)).await.expect("reached");
        let gdp: i64 =
            sqlx::query_scalar("SELECT gdp_usd FROM countries WHERE code = 'NO'").fetch_one(&pool).await.expect("row");
        assert_eq!(gdp as u64, 100 + i, "write {i} visible");
    }
    let err =
        wait_for_sequence(&pool, &PROJECTIONS, 10_000, Duration::from_millis(200)).await.expect_err("never reached");
    assert!(matches!(err, WaitError::Timeout { wanted: 10_000, reached: 201, .. }), "{err:?}");
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.expect("stopped");
    }
}

/// A mutation that selects its entity waits for the ledger projection, which holds it, and
/// not for the audit trail's: with the audit projection held (its checkpoint row locked, as
/// a long rebuild swap would), the answer still carries the country, while
/// `Covenant-Min-Sequence` (every read model) still waits for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_reads_its_entity_back_once_the_ledger_has_it() {
    let app = crate::harness::spawn_app().await;
    let admin = app.user_token("admin@example.org", covenant_domain::Role::Admin).await;
    crate::harness::register_country(&app.side, "NO", "Norway", 1).await;
    let seq = app.side.log.last_sequence().await.expect("info");
    wait_for_sequence(&app.pool, &PROJECTIONS, seq, Duration::from_secs(10)).await.expect("caught up");

    let mut held = app.pool.begin().await.expect("begin");
    sqlx::query("SELECT seq FROM projection_checkpoints WHERE name = 'audit' FOR UPDATE")
        .execute(&mut *held)
        .await
        .expect("hold the audit checkpoint");
    let started = std::time::Instant::now();
    let (status, body) = app
        .graphql(r#"mutation { updateGdp(code: "NO", gdpUsd: "777") { sequence country { gdpUsd } } }"#, Some(&admin))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["updateGdp"]["country"]["gdpUsd"], "777", "{body}");
    assert!(body.get("extensions").is_none(), "no read-model note: {body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered without the audit projection: {:?}",
        started.elapsed()
    );
    let written: u64 = body["data"]["updateGdp"]["sequence"].as_str().expect("sequence").parse().expect("n");
    let audit = covenant_projections::checkpoint::get(&app.pool, "audit").await.expect("checkpoint");
    assert!(audit < written, "the audit projection was held ({audit} < {written})");
    let every = wait_for_sequence(&app.pool, &PROJECTIONS, written, Duration::from_millis(300)).await;
    assert!(matches!(every, Err(WaitError::Timeout { .. })), "every read model waits for the audit: {every:?}");

    held.rollback().await.expect("release");
    wait_for_sequence(&app.pool, &PROJECTIONS, written, Duration::from_secs(10)).await.expect("audit caught up");
    app.stop().await;
}
