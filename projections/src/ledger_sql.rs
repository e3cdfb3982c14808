//! The SQL side of the `ledger` projection: one batch's row changes as column vectors,
//! written with one `INSERT … SELECT FROM UNNEST` and one `UPDATE … FROM UNNEST` per table.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::projection::Tables;

/// One row's accumulated change within a batch: what every table keeps (whether the batch
/// created the row, its version, last sequence and times) and the table's own columns.
/// A `None` column is left as it is.
#[derive(Default)]
pub(crate) struct RowChange<C> {
    pub(crate) created_in_batch: bool,
    pub(crate) version: i64,
    pub(crate) last_seq: i64,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) created_at: Option<DateTime<Utc>>,
    pub(crate) columns: C,
}

/// The `countries` columns an event may change.
#[derive(Default)]
pub(crate) struct CountryColumns {
    pub(crate) name: Option<String>,
    pub(crate) gdp_usd: Option<i64>,
}

/// The `projects` columns an event may change.
#[derive(Default)]
pub(crate) struct ProjectColumns {
    pub(crate) country_code: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) budget_usd: Option<i64>,
    pub(crate) deleted_at: Option<DateTime<Utc>>,
}

/// The `users` columns an event may change.
#[derive(Default)]
pub(crate) struct UserColumns {
    pub(crate) email: Option<String>,
    pub(crate) role: Option<String>,
    pub(crate) last_login_ip: Option<String>,
    pub(crate) last_login_at: Option<DateTime<Utc>>,
    pub(crate) last_logout_at: Option<DateTime<Utc>>,
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

/// The rows the batch created and the rows it changed, each as (key, change).
type Split<K, C> = (Vec<(K, RowChange<C>)>, Vec<(K, RowChange<C>)>);

fn split<K, C>(rows: BTreeMap<K, RowChange<C>>) -> Split<K, C> {
    rows.into_iter().partition(|(_, r)| r.created_in_batch)
}

/// One column of `rows`, for an `UNNEST` argument.
fn col<K, C, T>(rows: &[(K, RowChange<C>)], f: impl Fn(&K, &RowChange<C>) -> T) -> Vec<T> {
    rows.iter().map(|(k, r)| f(k, r)).collect()
}

pub(crate) async fn write_countries(
    conn: &mut PgConnection,
    t: Tables,
    rows: BTreeMap<String, RowChange<CountryColumns>>,
) -> Result<(), sqlx::Error> {
    let (ins, upd) = split(rows);
    let table = t.name("countries");
    if !ins.is_empty() {
        let sql = format!(
            "INSERT INTO {table} (code, name, gdp_usd, version, last_seq, registered_at, updated_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::timestamptz[], $7::timestamptz[])"
        );
        sqlx::query(&sql)
            .bind(col(&ins, |k, _| k.clone()))
            .bind(col(&ins, |_, r| r.columns.name.clone()))
            .bind(col(&ins, |_, r| r.columns.gdp_usd))
            .bind(col(&ins, |_, r| r.version))
            .bind(col(&ins, |_, r| r.last_seq))
            .bind(col(&ins, |_, r| r.created_at))
            .bind(col(&ins, |_, r| r.updated_at))
            .execute(&mut *conn)
            .await?;
    }
    if !upd.is_empty() {
        let sql = format!(
            "UPDATE {table} c SET name = COALESCE(u.name, c.name), gdp_usd = COALESCE(u.gdp, c.gdp_usd), version = u.version, last_seq = u.last_seq, updated_at = u.at
             FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::timestamptz[]) AS u(code, name, gdp, version, last_seq, at)
             WHERE c.code = u.code"
        );
        sqlx::query(&sql)
            .bind(col(&upd, |k, _| k.clone()))
            .bind(col(&upd, |_, r| r.columns.name.clone()))
            .bind(col(&upd, |_, r| r.columns.gdp_usd))
            .bind(col(&upd, |_, r| r.version))
            .bind(col(&upd, |_, r| r.last_seq))
            .bind(col(&upd, |_, r| r.updated_at))
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
    rows: BTreeMap<uuid::Uuid, RowChange<ProjectColumns>>,
) -> Result<(), sqlx::Error> {
    let (ins, upd) = split(rows);
    let table = t.name("projects");
    if !ins.is_empty() {
        let sql = format!(
            "INSERT INTO {table} (id, country_code, name, status, budget_usd, version, last_seq, created_at, updated_at, deleted_at)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[])"
        );
        sqlx::query(&sql)
            .bind(col(&ins, |k, _| *k))
            .bind(col(&ins, |_, r| r.columns.country_code.clone()))
            .bind(col(&ins, |_, r| r.columns.name.clone()))
            .bind(col(&ins, |_, r| r.columns.status.clone()))
            .bind(col(&ins, |_, r| r.columns.budget_usd))
            .bind(col(&ins, |_, r| r.version))
            .bind(col(&ins, |_, r| r.last_seq))
            .bind(col(&ins, |_, r| r.created_at))
            .bind(col(&ins, |_, r| r.updated_at))
            .bind(col(&ins, |_, r| r.columns.deleted_at))
            .execute(&mut *conn)
            .await?;
    }
    if !upd.is_empty() {
        let sql = format!(
            "UPDATE {table} p SET name = COALESCE(u.name, p.name), status = COALESCE(u.status, p.status),
                 budget_usd = COALESCE(u.budget, p.budget_usd), deleted_at = COALESCE(u.deleted_at, p.deleted_at),
                 version = u.version, last_seq = u.last_seq, updated_at = u.at
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::timestamptz[], $8::timestamptz[])
                 AS u(id, name, status, budget, version, last_seq, at, deleted_at)
             WHERE p.id = u.id"
        );
        sqlx::query(&sql)
            .bind(col(&upd, |k, _| *k))
            .bind(col(&upd, |_, r| r.columns.name.clone()))
            .bind(col(&upd, |_, r| r.columns.status.clone()))
            .bind(col(&upd, |_, r| r.columns.budget_usd))
            .bind(col(&upd, |_, r| r.version))
            .bind(col(&upd, |_, r| r.last_seq))
            .bind(col(&upd, |_, r| r.updated_at))
            .bind(col(&upd, |_, r| r.columns.deleted_at))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(crate) async fn write_users(
    conn: &mut PgConnection,
    t: Tables,
    rows: BTreeMap<uuid::Uuid, RowChange<UserColumns>>,
) -> Result<(), sqlx::Error> {
    let (ins, upd) = split(rows);
    let table = t.name("users");
    if !ins.is_empty() {
        let sql = format!(
            "INSERT INTO {table} (id, email, role, last_login_ip, version, last_seq, registered_at, last_login_at, last_logout_at)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])"
        );
        sqlx::query(&sql)
            .bind(col(&ins, |k, _| *k))
            .bind(col(&ins, |_, r| r.columns.email.clone()))
            .bind(col(&ins, |_, r| r.columns.role.clone()))
            .bind(col(&ins, |_, r| r.columns.last_login_ip.clone()))
            .bind(col(&ins, |_, r| r.version))
            .bind(col(&ins, |_, r| r.last_seq))
            .bind(col(&ins, |_, r| r.created_at))
            .bind(col(&ins, |_, r| r.columns.last_login_at))
            .bind(col(&ins, |_, r| r.columns.last_logout_at))
            .execute(&mut *conn)
            .await?;
    }
    if !upd.is_empty() {
        let sql = format!(
            // A forgotten user's address becomes the placeholder only where there was one.
            "UPDATE {table} x SET role = COALESCE(u.role, x.role), email = COALESCE(u.email, x.email),
                 last_login_ip = CASE WHEN x.last_login_ip IS NULL AND u.ip = $8 THEN NULL ELSE COALESCE(u.ip, x.last_login_ip) END,
                 last_login_at = COALESCE(u.login_at, x.last_login_at), last_logout_at = COALESCE(u.logout_at, x.last_logout_at),
                 version = u.version, last_seq = u.last_seq
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::timestamptz[], $7::timestamptz[], $9::text[])
                 AS u(id, role, ip, version, last_seq, login_at, logout_at, email)
             WHERE x.id = u.id"
        );
        sqlx::query(&sql)
            .bind(col(&upd, |k, _| *k))
            .bind(col(&upd, |_, r| r.columns.role.clone()))
            .bind(col(&upd, |_, r| r.columns.last_login_ip.clone()))
            .bind(col(&upd, |_, r| r.version))
            .bind(col(&upd, |_, r| r.last_seq))
            .bind(col(&upd, |_, r| r.columns.last_login_at))
            .bind(col(&upd, |_, r| r.columns.last_logout_at))
            .bind(covenant_personal::FORGOTTEN)
            .bind(col(&upd, |_, r| r.columns.email.clone()))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
