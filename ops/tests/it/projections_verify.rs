//! `covenant projections verify` proves the read models are the fold of the log while the
//! runner keeps applying, and names every row changed by hand in PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use covenant_projections::checkpoint::{PROJECTIONS, wait_for_sequence};

use crate::harness::{log_config, nats, pg};
use crate::workload;

fn verify(args: &[&str], nats_url: &str, db_url: &str, cfg: &covenant_commands::LogConfig) -> (Option<i32>, String) {
    let args: Vec<&str> = ["projections", "verify"].into_iter().chain(args.iter().copied()).collect();
    crate::harness::covenant_cli(&args, nats_url, db_url, cfg)
}

async fn recorded(pool: &sqlx::PgPool) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT projection, differing FROM projection_verifications ORDER BY projection")
        .fetch_all(pool)
        .await
        .expect("verifications")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_is_exit_0_under_writes_and_names_rows_changed_by_hand() {
    let server = nats().await;
    let (cluster, pool) = pg().await;
    let cfg = log_config();
    let side = Arc::new(crate::harness::side(&server.url(), &cfg).await);
    let w = Arc::new(workload::setup(&side).await);
    for i in 0..800 {
        workload::step(&side, &w, i).await.expect("command");
    }
    let js = side.log.jetstream().clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = crate::harness::run_projections(&js, &cfg.stream, &pool, &stop_rx, Duration::from_millis(200));
    let (url, db) = (server.url(), cluster.url("covenant"));

    // Equal while writes go on and the runner keeps moving its checkpoint.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (side, w, stop) = (side.clone(), w.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 800;
            while !stop.load(Ordering::Relaxed) {
                workload::step(&side, &w, i).await.expect("command");
                i += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    wait_for_sequence(&pool, &PROJECTIONS, 700, Duration::from_secs(60)).await.expect("projections started");
    let (code, out) = tokio::task::spawn_blocking({
        let (url, db, cfg) = (url.clone(), db.clone(), cfg.clone());
        move || verify(&[], &url, &db, &cfg)
    })
    .await
    .expect("verify");
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ledger: equal to the fold of the log at sequence"), "{out}");
    assert!(out.contains("audit: equal to the fold of the log at sequence"), "{out}");
    assert_eq!(recorded(&pool).await, [("audit".into(), 0), ("ledger".into(), 0)]);

    // Hand edits: a changed value, a deleted row, a row the log never produced.
    let last = side.log.last_sequence().await.expect("last");
    wait_for_sequence(&pool, &PROJECTIONS, last, Duration::from_secs(60)).await.expect("caught up");
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.expect("runner");
    }
    let (code_c, gdp): (String, i64) =
        sqlx::query_as("SELECT code, gdp_usd FROM countries ORDER BY code LIMIT 1").fetch_one(&pool).await.expect("c");
    sqlx::query("UPDATE countries SET gdp_usd = gdp_usd + 1 WHERE code = $1")
        .bind(&code_c)
        .execute(&pool)
        .await
        .expect("edit");
    sqlx::query("DELETE FROM audit_events WHERE seq = 5").execute(&pool).await.expect("delete");
    sqlx::query("INSERT INTO audit_events SELECT seq + 1000000, subject, aggregate, aggregate_id, event_id, event_type, version, actor, occurred_at, payload FROM audit_events WHERE seq = 6")
        .execute(&pool)
        .await
        .expect("insert");

    let (code, out) = verify(&[], &url, &db, &cfg);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("ledger: 1 rows differ from the fold of the log"), "{out}");
    assert!(
        out.contains(&format!("countries code={code_c}: gdp_usd is {} in PostgreSQL, {gdp} in the fold", gdp + 1)),
        "{out}"
    );
    assert!(out.contains("audit: 2 rows differ"), "{out}");
    assert!(out.contains("audit_events seq=5: missing in PostgreSQL"), "{out}");
    assert!(out.contains("audit_events seq=1000006: in PostgreSQL, not in the fold of the log"), "{out}");
    assert!(out.contains("repair: `covenant projections rebuild ledger`"), "{out}");
    assert_eq!(recorded(&pool).await, [("audit".into(), 2), ("ledger".into(), 1)]);

    // One projection by name; an unknown name is a failure to verify, not a difference.
    let (code, out) = verify(&["ledger"], &url, &db, &cfg);
    assert_eq!(code, Some(1), "{out}");
    assert!(!out.contains("audit"), "{out}");
    let (code, out) = verify(&["nonsense"], &url, &db, &cfg);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("unknown projection `nonsense` (known: ledger, audit)"), "{out}");

    // Rebuilds repair; verify says so and the record clears.
    for p in covenant_projections::all() {
        covenant_projections::rebuild::rebuild(&js, &cfg.stream, &pool, p.as_ref(), |_, _| {}).await.expect("rebuild");
    }
    let (code, out) = verify(&[], &url, &db, &cfg);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(recorded(&pool).await, [("audit".into(), 0), ("ledger".into(), 0)]);
    let leftovers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%\\_\\_verify' OR tablename LIKE '%\\_\\_vlive'",
    )
    .fetch_one(&pool)
    .await
    .expect("tables");
    assert_eq!(leftovers, 0, "verification leaves no scratch tables");
}
