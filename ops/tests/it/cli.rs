//! The operator commands run against a live stream and database and say what they should.

use crate::harness::{log_config, nats, pg, register_country};

fn covenant(args: &[&str], nats_url: &str, db_url: &str, cfg: &covenant_commands::LogConfig) -> (bool, String) {
    let (code, out) = crate::harness::covenant_cli(args, nats_url, db_url, cfg);
    (code == Some(0), out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_info_projections_status_and_rebuild_report_the_live_state() {
    let server = nats().await;
    let (cluster, pool) = pg().await;
    let cfg = log_config();
    let side = crate::harness::side(&server.url(), &cfg).await;
    register_country(&side, "PE", "Peru", 10).await;
    register_country(&side, "CL", "Chile", 20).await;
    let (url, db) = (server.url(), cluster.url("covenant"));

    let (ok, out) = covenant(&["projections", "rebuild", "ledger"], &url, &db, &cfg);
    assert!(ok, "{out}");
    assert!(out.contains("rebuilt ledger: 2 events") && out.contains("swapped at sequence 2"), "{out}");
    let fund = covenant_projections::views::fund(&pool).await.expect("fund");
    assert_eq!((fund.total_usd, fund.countries), (30, 2));

    let (ok, out) = covenant(&["projections", "status"], &url, &db, &cfg);
    assert!(ok, "{out}");
    let ledger = out.lines().find(|l| l.starts_with("ledger")).unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = ledger.split_whitespace().collect();
    assert_eq!(&cols[1..4], ["2", "2", "0"], "checkpoint, stream last, lag: {ledger}");
    let audit = out.lines().find(|l| l.starts_with("audit")).unwrap_or_else(|| panic!("{out}"));
    assert_eq!(audit.split_whitespace().nth(3), Some("2"), "audit never ran, so its lag is 2: {audit}");

    let (ok, out) = covenant(&["streams", "info"], &url, &db, &cfg);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("stream {}", cfg.stream)) && out.contains("messages 2"), "{out}");
    assert!(out.contains("configuration: OK"), "{out}");

    // Running the projections after the rebuild applies nothing twice.
    crate::harness::fold_until(side.log.jetstream(), &cfg.stream, &pool, 2).await;
    let fund = covenant_projections::views::fund(&pool).await.expect("fund");
    assert_eq!((fund.total_usd, fund.countries), (30, 2), "no double application after the swap");

    let (ok, out) = covenant(&["projections", "rebuild", "nonsense"], &url, &db, &cfg);
    assert!(!ok && out.contains("unknown projection `nonsense` (known: ledger, audit)"), "{out}");
}
