//! Long aggregates load from a snapshot plus the later events, and reach the same state as
//! a full-history fold.

use std::time::Duration;

use covenant_commands::snapshot::{SNAPSHOT_EVERY, Snapshots};
use covenant_commands::{CommandContext, JetStreamStore};
use covenant_domain::{Country, CountryCode, CountryCommand, Name, Usd};

use crate::harness::{eventually, log_config, nats, side};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_aggregate_loads_from_its_snapshot_to_the_same_state() {
    let server = nats().await;
    let s = side(&server.url(), &log_config()).await;
    let ctx = CommandContext::system();
    let usd = |v| Usd::new(v).expect("usd");
    let register = CountryCommand::Register {
        code: CountryCode::parse("BR").expect("code"),
        name: Name::parse("Brazil").expect("name"),
        gdp_usd: usd(1),
    };
    s.countries.execute("BR", register, &ctx).await.expect("register");
    for chunk in 0..5u64 {
        let figures = (1..=50).map(|k| usd(chunk * 1000 + k + 1)).collect();
        s.countries.execute("BR", CountryCommand::RecordGdpHistory { gdp_usd: figures }, &ctx).await.expect("history");
    }
    s.countries.execute("BR", CountryCommand::UpdateGdp { gdp_usd: usd(777) }, &ctx).await.expect("update");
    let snapshots = Snapshots::open(&s.log).await.expect("bucket");
    assert!(
        eventually(Duration::from_secs(5), async || {
            matches!(snapshots.get::<Country>("country.BR").await, Ok(Some((_, tip))) if tip.version == 2 * SNAPSHOT_EVERY + 1)
        })
        .await,
        "a snapshot is written when the version crosses {}",
        2 * SNAPSHOT_EVERY
    );
    let full = JetStreamStore::<Country>::new(s.log.clone(), 4).load("BR").await.expect("full fold");
    let from_snapshot = JetStreamStore::<Country>::new(s.log.clone(), 4)
        .with_snapshots(snapshots.clone())
        .load("BR")
        .await
        .expect("snapshot + tail");
    assert_eq!(full.tip, from_snapshot.tip);
    assert_eq!(full.aggregate, from_snapshot.aggregate);
    assert_eq!(from_snapshot.aggregate.gdp_usd(), usd(777));
    assert_eq!(from_snapshot.tip.version, 252);

    // Snapshots are a cache: when their bucket cannot be read (deleted here; between
    // leaders in a failover), a load folds the full history instead of failing.
    let bucket = format!("{}_SNAPSHOTS", s.log.config().stream);
    s.log.jetstream().delete_key_value(&bucket).await.expect("deleting the snapshot bucket");
    let without = JetStreamStore::<Country>::new(s.log.clone(), 4)
        .with_snapshots(snapshots)
        .load("BR")
        .await
        .expect("the full history when the snapshot cannot be read");
    assert_eq!(without.tip, full.tip);
    assert_eq!(without.aggregate, full.aggregate);
}
