//! The harness's own PostgreSQL cluster: started on a free port, a fresh database, stopped
//! (as a crash) and started again with its data intact.

use sqlx::Connection;

use covenant_ops::managed::postgres::PgCluster;

#[tokio::test]
async fn the_managed_cluster_survives_a_crash_and_restart() {
    let mut pg = PgCluster::start_temp()
        .await
        .expect("initdb + pg_ctl start (run the README's test command to install PostgreSQL)");
    let db = format!("t_{}", uuid::Uuid::new_v4().simple());
    pg.create_database(&db).await.expect("create database");
    let mut conn = sqlx::PgConnection::connect(&pg.url(&db)).await.expect("connect");
    sqlx::query("CREATE TABLE t (v int)").execute(&mut conn).await.expect("create");
    sqlx::query("INSERT INTO t VALUES (42)").execute(&mut conn).await.expect("insert");
    drop(conn);
    pg.stop(true);
    assert!(sqlx::PgConnection::connect(&pg.url(&db)).await.is_err(), "server is down");
    pg.start().await.expect("restart");
    let mut conn = sqlx::PgConnection::connect(&pg.url(&db)).await.expect("reconnect");
    let v: i32 = sqlx::query_scalar("SELECT v FROM t").fetch_one(&mut conn).await.expect("select");
    assert_eq!(v, 42);
}

/// The service's pool pings only a connection that sat idle (see `connect::pool`): after a
/// restart every pooled connection is dead, and the ping on the way out replaces it, so
/// no query fails.
#[tokio::test]
async fn the_pool_replaces_connections_a_restart_closed_without_failing_a_query() {
    let mut pg = PgCluster::start_temp().await.expect("initdb + pg_ctl start");
    let db = format!("t_{}", uuid::Uuid::new_v4().simple());
    pg.create_database(&db).await.expect("create database");
    let pool = covenant_ops::connect::pool(&pg.url(&db)).await.expect("pool");
    // Several connections open and back in the pool.
    let held: Vec<_> = futures::future::try_join_all((0..8).map(|_| pool.acquire())).await.expect("acquire");
    drop(held);
    // A connection goes back to the pool on a task of its own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while pool.num_idle() < 8 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(pool.num_idle() >= 8, "{} idle", pool.num_idle());
    pg.stop(true);
    pg.start().await.expect("restart");
    tokio::time::sleep(covenant_ops::connect::PING_IF_IDLE_FOR).await;
    for i in 0..16 {
        let v: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("query {i} after the restart: {e}"));
        assert_eq!(v, 1);
    }
}
