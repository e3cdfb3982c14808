//! A hole in what the stream delivered (as when messages of a pull in flight are lost with
//! a dying stream leader) never moves a checkpoint past it: the batch is applied up to the
//! hole, the hole is reported, and once the missing events arrive the read models equal a
//! fresh fold of the stream, every event applied exactly once.

use covenant_projections::Tables;
use covenant_projections::apply::apply_batch;
use covenant_projections::event::ProjectedEvent;
use covenant_projections::projection::Gap;

use crate::harness::{database, fold_until, log_config, nats, pg, read_models};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_hole_applies_up_to_it_and_the_refetch_completes_it_exactly_once() {
    let server = nats().await;
    let (cluster, pool) = pg().await;
    let cfg = log_config();
    let side = crate::harness::side(&server.url(), &cfg).await;
    let ctx = covenant_commands::CommandContext::system();
    for (code, name, gdp) in [("FR", "France", 10), ("JP", "Japan", 20), ("GH", "Ghana", 30)] {
        crate::harness::register_country(&side, code, name, gdp).await;
    }
    for gdp in [11, 12, 13] {
        let cmd = covenant_domain::CountryCommand::UpdateGdp { gdp_usd: covenant_domain::Usd::new(gdp).expect("usd") };
        side.countries.execute("FR", cmd, &ctx).await.expect("update");
    }
    let js = side.log.jetstream().clone();
    let last = side.log.last_sequence().await.expect("info");
    assert_eq!(last, 6);
    let mut all: Vec<ProjectedEvent> = Vec::new();
    covenant_projections::rebuild::read_range(&js, &cfg.stream, 1, last, true, async |b| {
        all.extend(b);
        Ok(())
    })
    .await
    .expect("read the stream");

    for projection in covenant_projections::all() {
        let name = projection.name();
        // Delivered: 1, 2, 4, 5 (3 lost in flight).
        let holed: Vec<ProjectedEvent> = all.iter().filter(|e| e.seq != 3).cloned().collect();
        let (cp, applied) = apply_batch(&pool, projection.as_ref(), Tables::LIVE, &holed, None).await.expect("apply");
        assert_eq!((cp, applied.gap), (2, Some(Gap { missing: 3, next: 4 })), "{name}");
        assert_eq!(covenant_projections::checkpoint::get(&pool, name).await.expect("cp"), 2, "{name}");
        // The re-fetch from the checkpoint delivers 3.. again.
        let (cp, applied) =
            apply_batch(&pool, projection.as_ref(), Tables::LIVE, &all[2..], None).await.expect("apply");
        assert_eq!((cp, applied.gap), (6, None), "{name}");
    }
    let fund = covenant_projections::views::fund(&pool).await.expect("fund");
    assert_eq!((fund.total_usd, fund.countries), (13 + 20 + 30, 3), "FR's last GDP, each event once");

    // Row for row what a fresh fold of the stream holds.
    let fresh = database(&cluster, "fresh").await;
    fold_until(&js, &cfg.stream, &fresh, last).await;
    assert_eq!(read_models(&pool).await, read_models(&fresh).await);
}
