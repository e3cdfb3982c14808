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
