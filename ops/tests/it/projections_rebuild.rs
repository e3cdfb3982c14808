//! A rebuild while writes continue: readers see no error during it, and after the swap the
//! read models equal a fresh fold of the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use covenant_projections::checkpoint::{PROJECTIONS, wait_for_sequence};

use crate::harness::{database, fold_until, log_config, nats, pg, read_models};
use crate::workload;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_under_writes_swaps_without_query_errors_and_equals_the_fold() {
    let server = nats().await;
    let (cluster, pool) = pg().await;
    let cfg = log_config();
    let side = Arc::new(crate::harness::side(&server.url(), &cfg).await);
    let w = Arc::new(workload::setup(&side).await);
    for i in 0..1500 {
        workload::step(&side, &w, i).await.expect("command");
    }
    let js = side.log.jetstream().clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = crate::harness::run_projections(&js, &cfg.stream, &pool, &stop_rx, Duration::from_millis(200));

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (side, w, stop) = (side.clone(), w.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 1500;
            while !stop.load(Ordering::Relaxed) {
                workload::step(&side, &w, i).await.expect("command");
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let (queries, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = {
        let (pool, stop, queries, errors) = (pool.clone(), stop.clone(), queries.clone(), errors.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r1 = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM countries").fetch_one(&pool).await;
                let r2 = covenant_projections::views::fund(&pool).await;
                let r3 =
                    covenant_projections::views::recent_events(&pool, 20, Some("country.update"), None, None).await;
                let r4 = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM projects WHERE deleted_at IS NULL")
                    .fetch_one(&pool)
                    .await;
                for failed in [r1.is_err(), r2.is_err(), r3.is_err(), r4.is_err()] {
                    queries.fetch_add(1, Ordering::Relaxed);
                    if failed {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    for p in covenant_projections::all() {
        let report = covenant_projections::rebuild::rebuild(&js, &cfg.stream, &pool, p.as_ref(), |_, _| {})
            .await
            .expect("rebuild");
        assert!(report.events > 1000, "{}: replayed {}", p.name(), report.events);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    reader.await.expect("reader");
    assert!(queries.load(Ordering::Relaxed) > 50, "the reader ran during the rebuild");
    assert_eq!(errors.load(Ordering::Relaxed), 0, "no query failed during the rebuild and swap");

    let last = side.log.last_sequence().await.expect("info");
    wait_for_sequence(&pool, &PROJECTIONS, last, Duration::from_secs(60)).await.expect("caught up after the swap");
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.expect("task");
    }
    let shadows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%\\_\\_shadow' OR tablename LIKE '%\\_\\_old'",
    )
    .fetch_one(&pool)
    .await
    .expect("tables");
    assert_eq!(shadows, 0, "no shadow or old tables left behind");
    let fresh = database(&cluster, "fold").await;
    fold_until(&js, &cfg.stream, &fresh, last).await;
    let (got, want) = (read_models(&pool).await, read_models(&fresh).await);
    for ((table, g), (_, f)) in got.iter().zip(&want) {
        assert_eq!(g, f, "table {table} differs from a fresh fold after the swap");
    }
}

/// A rebuild asked for while NATS is down (a restart, a leader election) waits for it
/// instead of failing on the first unanswered request, then swaps in tables equal to the
/// fold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_started_while_nats_is_down_completes_once_it_is_back() {
    let mut server = nats().await;
    let (cluster, pool) = pg().await;
    let cfg = log_config();
    let side = crate::harness::side(&server.url(), &cfg).await;
    let w = workload::setup(&side).await;
    for i in 0..300 {
        workload::step(&side, &w, i).await.expect("command");
    }
    let last = side.log.last_sequence().await.expect("info");
    let js = side.log.jetstream().clone();

    server.kill();
    let rebuilds = async {
        let mut reports = Vec::new();
        for p in covenant_projections::all() {
            let r = covenant_projections::rebuild::rebuild(&js, &cfg.stream, &pool, p.as_ref(), |_, _| {}).await;
            reports.push(r.expect("the rebuild completes"));
        }
        (reports, Instant::now())
    };
    let restart = async {
        // Longer than the client's request timeout (2 s): the first requests go unanswered.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let at = Instant::now();
        server.start().await.expect("restart nats-server on the same store and port");
        at
    };
    let ((reports, done_at), restarted_at) =
        tokio::time::timeout(Duration::from_secs(90), async { tokio::join!(rebuilds, restart) })
            .await
            .expect("the rebuilds end once NATS is back");
    assert!(done_at > restarted_at, "the rebuilds waited for NATS");
    for r in reports {
        assert_eq!(r.swapped_at, last, "each rebuild replayed the whole stream");
    }

    let fresh = database(&cluster, "fold").await;
    fold_until(&js, &cfg.stream, &fresh, last).await;
    let (got, want) = (read_models(&pool).await, read_models(&fresh).await);
    for ((table, g), (_, f)) in got.iter().zip(&want) {
        assert_eq!(g, f, "table {table} differs from a fresh fold after the rebuild");
    }
}
