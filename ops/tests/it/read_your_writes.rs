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
