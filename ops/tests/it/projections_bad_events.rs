//! Bad or unknown events in the stream do not stop the projections silently: each is
//! skipped, recorded with its sequence and reason, and counted; the events around it apply.

use std::time::Duration;

use async_nats::HeaderMap;
use covenant_commands::CommandContext;
use covenant_domain::{CountryCode, CountryCommand, Name, Usd};

use crate::harness::{fold_until, log_config, metric_value, metrics, nats, pg};

fn headers(event_type: &str, version: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("Event-Id", uuid::Uuid::new_v4().to_string().as_str());
    h.insert("Event-Type", event_type);
    h.insert("Aggregate-Version", version.to_string().as_str());
    h.insert("Occurred-At", "2026-11-22T10:00:00.000000000Z");
    h.insert("Actor", "system");
    h.insert("Content-Type", "application/json");
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_types_bad_payloads_and_bad_headers_are_skipped_and_recorded() {
    metrics();
    let server = nats().await;
    let (_cluster, pool) = pg().await;
    let cfg = log_config();
    let side = crate::harness::side(&server.url(), &cfg).await;
    let ctx = CommandContext::system();
    let usd = |v| Usd::new(v).expect("usd");
    crate::harness::register_country(&side, "GH", "Ghana", 5).await;
    side.countries.execute("GH", CountryCommand::UpdateGdp { gdp_usd: usd(9) }, &ctx).await.expect("update");
    // Written around the command side, as a buggy or foreign writer would.
    let js = side.log.jetstream().clone();
    let subject = |id: &str| format!("{}.country.{id}", cfg.subject_prefix);
    let bad: Vec<(String, HeaderMap, &str)> = vec![
        (subject("GH"), headers("country.exploded", 3), "{}"),
        (subject("GH"), headers("country.update", 4), "{not json"),
        (subject("GH"), HeaderMap::new(), "{}"),
        (format!("{}.galaxy.X1", cfg.subject_prefix), headers("galaxy.created", 1), "{}"),
    ];
    for (s, h, p) in bad {
        js.publish_with_headers(s, h, p.into()).await.expect("publish").await.expect("ack");
    }
    // The command side refuses to extend GH's now broken chain; other aggregates go on.
    let err = side
        .countries
        .execute("GH", CountryCommand::UpdateGdp { gdp_usd: usd(10) }, &ctx)
        .await
        .expect_err("corrupt chain");
    assert!(
        matches!(err, covenant_commands::CommandError::Internal(ref m) if m.to_string().contains("malformed")),
        "{err:?}"
    );
    let register_tg = CountryCommand::Register {
        code: CountryCode::parse("TG").expect("code"),
        name: Name::parse("Togo").expect("name"),
        gdp_usd: usd(4),
    };
    side.countries.execute("TG", register_tg, &ctx).await.expect("register after the bad events");
    let last = side.log.last_sequence().await.expect("info");
    assert_eq!(last, 7);

    tokio::time::timeout(Duration::from_secs(60), fold_until(&js, &cfg.stream, &pool, last))
        .await
        .expect("projections get past the bad events");
    let skipped: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, reason FROM projection_skipped_events WHERE projection = 'ledger' ORDER BY seq")
            .fetch_all(&pool)
            .await
            .expect("skipped");
    let seqs: Vec<i64> = skipped.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [3, 4, 5, 6], "{skipped:?}");
    assert!(skipped[0].1.contains("unknown event type"), "{skipped:?}");
    assert!(skipped[1].1.contains("does not parse"), "{skipped:?}");
    assert!(skipped[2].1.contains("missing"), "{skipped:?}");
    let fund = covenant_projections::views::fund(&pool).await.expect("fund");
    assert_eq!(
        (fund.total_usd, fund.countries, fund.as_of_seq),
        (13, 2, 7),
        "good events on both sides of the bad ones applied"
    );
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events").fetch_one(&pool).await.expect("count");
    assert_eq!(audit, 7, "the audit model lists every event, bad ones included");
    assert!(metric_value("covenant_projection_skipped_events_total", &["projection=\"ledger\""]).unwrap_or(0.0) >= 4.0);
}
