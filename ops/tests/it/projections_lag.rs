//! Lag gauges: with the projections stopped, `covenant_projection_lag_events` and
//! `nats_consumer_pending_messages` rise to exactly the number of events appended; after
//! the projections resume they return to 0.

use std::time::Duration;

use covenant_commands::CommandContext;
use covenant_domain::{CountryCommand, Usd};
use covenant_projections::monitor::Monitor;

use crate::harness::{eventually, log_config, metric_value, metrics, nats, pg};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_gauges_count_exactly_the_unapplied_events_and_return_to_zero() {
    metrics();
    let server = nats().await;
    let (_cluster, pool) = pg().await;
    let cfg = log_config();
    let side = crate::harness::side(&server.url(), &cfg).await;
    let js = side.log.jetstream().clone();
    let ctx = CommandContext::system();
    let usd = |v| Usd::new(v).expect("usd");
    crate::harness::register_country(&side, "KE", "Kenya", 1).await;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = crate::harness::run_projections(&js, &cfg.stream, &pool, &stop_rx, Duration::from_millis(100));
    covenant_projections::checkpoint::wait_for_sequence(&pool, &["ledger", "audit"], 1, Duration::from_secs(20))
        .await
        .expect("caught up");
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.expect("stopped");
    }

    for i in 0..25 {
        side.countries.execute("KE", CountryCommand::UpdateGdp { gdp_usd: usd(10 + i) }, &ctx).await.expect("update");
    }
    let monitor = Monitor::new(js.clone(), &cfg.stream, pool.clone());
    let status = monitor.tick().await.expect("tick");
    assert!(status.iter().all(|s| s.lag == 25), "{status:?}");
    let stream = format!("stream=\"{}\"", cfg.stream);
    for p in ["ledger", "audit"] {
        let lag = metric_value("covenant_projection_lag_events", &[&format!("projection=\"{p}\""), &stream]);
        assert_eq!(lag, Some(25.0), "lag gauge of {p}");
        let pending =
            metric_value("nats_consumer_pending_messages", &[&format!("consumer=\"projection-{p}\""), &stream]);
        assert_eq!(pending, Some(25.0), "pending gauge of {p}");
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = crate::harness::run_projections(&js, &cfg.stream, &pool, &stop_rx, Duration::from_millis(100));
    let back_to_zero = eventually(Duration::from_secs(20), async || {
        ["ledger", "audit"].iter().all(|p| {
            metric_value("covenant_projection_lag_events", &[&format!("projection=\"{p}\""), &stream]) == Some(0.0)
                && metric_value("nats_consumer_pending_messages", &[&format!("consumer=\"projection-{p}\""), &stream])
                    == Some(0.0)
        })
    })
    .await;
    assert!(back_to_zero, "gauges return to 0:\n{}", metrics().render());
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.expect("stopped");
    }
}
