//! The SQL side of the `ledger` projection: one batch's row changes as column vectors,
//! written with one `INSERT … SELECT FROM UNNEST` and one `UPDATE … FROM UNNEST` per table.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::projection::Tables;

/// One row's accumulated change within a batch (columns `a`, `b`, `c`, `n`, `t`, `t2` mean
/// what each table's writer says).
#[derive(Default)]
pub(crate) struct Row {
    pub(crate) new: bool,
    pub(crate) version: i64,
    pub(crate) last_seq: i64,
    pub(crate) at: DateTime<Utc>,
    pub(crate) created_at: Option<DateTime<Utc>>,
    pub(crate) a: Option<String>,
    pub(crate) b: Option<String>,
    pub(crate) c: Option<String>,
    pub(crate) n: Option<i64>,
    pub(crate) t: Option<DateTime<Utc>>,
    pub(crate) t2: Option<DateTime<Utc>>,
}

/// One GDP figure of a country (registration or update).
pub(crate) struct HistoryRow {
    pub(crate) code: String,
    pub(crate) version: i64,
    pub(crate) seq: i64,
    pub(crate) gdp: i64,
    pub(crate) delta: Option<i64>,
    pub(crate) at: DateTime<Utc>,
}

/// Column vectors of a set of rows, for `UNNEST`.
struct Cols<K> {
    key: Vec<K>,
    version: Vec<i64>,
    last_seq: Vec<i64>,
    at: Vec<DateTime<Utc>>,
    created_at: Vec<Option<DateTime<Utc>>>,
    a: Vec<Option<String>>,
    b: Vec<Option<String>>,
    c: Vec<Option<String>>,
    n: Vec<Option<i64>>,
    t: Vec<Option<DateTime<Utc>>>,
    t2: Vec<Option<DateTime<Utc>>>,
}

impl<K> Default for Cols<K> {
    fn default() -> Self {
        Self {
            key: Vec::new(),
            version: Vec::new(),
            last_seq: Vec::new(),
            at: Vec::new(),
            created_at: Vec::new(),
            a: Vec::new(),
            b: Vec::new(),
            c: Vec::new(),
            n: Vec::new(),
            t: Vec::new(),
            t2: Vec::new(),
        }
    }
}

/// Splits rows into (new, existing) column sets.
fn columns<K: Clone>(rows: BTreeMap<K, Row>) -> (Cols<K>, Cols<K>) {
    let (mut ins, mut upd) = (Cols::default(), Cols::default());
    for (k, r) in rows {
        let c: &mut Cols<K> = if r.new { &mut ins } else { &mut upd };
        c.key.push(k);
        c.version.push(r.version);
        c.last_seq.push(r.last_seq);
        c.at.push(r.at);
        c.created_at.push(r.created_at);
        c.a.push(r.a);
        c.b.push(r.b);
        c.c.push(r.c);
        c.n.push(r.n);
        c.t.push(r.t);
        c.t2.push(r.t2);
    }
    (ins, upd)
}

pub(crate) async fn write_countries(
    conn: &mut PgConnection,
    t: Tables,
    rows: BTreeMap<String, Row>,
) -> Result<(), sqlx::Error> {
    let (ins, upd) = columns(rows);
    let table = t.name("countries");
    if !ins.key.is_empty() {
        let sql = format!(
            "INSERT INTO {table} (code, name, gdp_usd, version, last_seq, registered_at, updated_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::timestamptz[], $7::timestamptz[])"
        );
        sqlx::query(&sql)
            .bind(ins.key)
            .bind(ins.a)
            .bind(ins.n)
            .bind(ins.version)
            .bind(ins.last_seq)
            .bind(ins.created_at)
            .bind(ins.at)
            .execute(&mut *conn)
            .await?;
    }
    if !upd.key.is_empty() {
        let sql = format!(
            "UPDATE {table} c SET name = COALESCE(u.name, c.name), gdp_usd = COALESCE(u.gdp, c.gdp_usd), version = u.version, last_seq = u.last_seq, updated_at = u.at
             FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::timestamptz[]) AS u(code, name, gdp, version, last_seq, at)
             WHERE c.code = u.code"
        );
        sqlx::query(&sql)
            .bind(upd.key)
            .bind(upd.a)
            .bind(upd.n)
            .bind(upd.version)
            .bind(upd.last_seq)
            .bind(upd.at)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(crate) async fn write_history(
    conn: &mut PgConnection,
    t: Tables,
    rows: Vec<HistoryRow>,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let code: Vec<String> = rows.iter().map(|r| r.code.clone()).collect();
    let version: Vec<i64> = rows.iter().map(|r| r.version).collect();
    let seq: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let gdp: Vec<i64> = rows.iter().map(|r| r.gdp).collect();
    let delta: Vec<Option<i64>> = rows.iter().map(|r| r.delta).collect();
    let at: Vec<DateTime<Utc>> = rows.iter().map(|r| r.at).collect();
    let sql = format!(
        "INSERT INTO {} (code, version, seq, gdp_usd, delta_bp, occurred_at)
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::timestamptz[])",
        t.name("country_gdp_history")
    );
    sqlx::query(&sql).bind(code).bind(version).bind(seq).bind(gdp).bind(delta).bind(at).execute(conn).await?;
    Ok(())
}

pub(crate) async fn write_projects(
    conn: &mut PgConnection,
    t: Tables,
    rows: BTreeMap<uuid::Uuid, Row>,
) -> Result<(), sqlx::Error> {
    let (ins, upd) = columns(rows);
    let table = t.name("projects");
    if !ins.key.is_empty() {
        let sql = format!(
            "INSERT INTO {table} (id, country_code, name, status, budget_usd, version, last_seq, created_at, updated_at, deleted_at)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[])"
        );
        sqlx::query(&sql)
            .bind(ins.key)
            .bind(ins.a)
            .bind(ins.b)
            .bind(ins.c)
            .bind(ins.n)
            .bind(ins.version)
            .bind(ins.last_seq)
            .bind(ins.created_at)
            .bind(ins.at)
            .bind(ins.t)
            .execute(&mut *conn)
            .await?;
    }
    if !upd.key.is_empty() {
        let sql = format!(
            "UPDATE {table} p SET name = COALESCE(u.name, p.name), status = COALESCE(u.status, p.status),
                 budget_usd = COALESCE(u.budget, p.budget_usd), deleted_at = COALESCE(u.deleted_at, p.deleted_at),
                 version = u.version, last_seq = u.last_seq, updated_at = u.at
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::timestamptz[], $8::timestamptz[])
                 AS u(id, name, status, budget, version, last_seq, at, deleted_at)
             WHERE p.id = u.id"
        );
        sqlx::query(&sql)
            .bind(upd.key)
            .bind(upd.b)
            .bind(upd.c)
            .bind(upd.n)
            .bind(upd.version)
            .bind(upd.last_seq)
            .bind(upd.at)
            .bind(upd.t)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(crate) async fn write_users(
    conn: &mut PgConnection,
    t: Tables,
    rows: BTreeMap<uuid::Uuid, Row>,
) -> Result<(), sqlx::Error> {
    let (ins, upd) = columns(rows);
    let table = t.name("users");
    if !ins.key.is_empty() {
        let sql = format!(
            "INSERT INTO {table} (id, email, role, last_login_ip, version, last_seq, registered_at, last_login_at, last_logout_at)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])"
        );
        sqlx::query(&sql)
            .bind(ins.key)
            .bind(ins.a)
            .bind(ins.b)
            .bind(ins.c)
            .bind(ins.version)
            .bind(ins.last_seq)
            .bind(ins.created_at)
            .bind(ins.t)
            .bind(ins.t2)
            .execute(&mut *conn)
            .await?;
    }
    if !upd.key.is_empty() {
        let sql = format!(
            "UPDATE {table} x SET role = COALESCE(u.role, x.role), last_login_ip = COALESCE(u.ip, x.last_login_ip),
                 last_login_at = COALESCE(u.login_at, x.last_login_at), last_logout_at = COALESCE(u.logout_at, x.last_logout_at),
                 version = u.version, last_seq = u.last_seq
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::timestamptz[], $7::timestamptz[])
                 AS u(id, role, ip, version, last_seq, login_at, logout_at)
             WHERE x.id = u.id"
        );
        sqlx::query(&sql)
            .bind(upd.key)
            .bind(upd.b)
            .bind(upd.c)
            .bind(upd.version)
            .bind(upd.last_seq)
            .bind(upd.t)
            .bind(upd.t2)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
