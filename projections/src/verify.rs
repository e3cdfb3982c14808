//! Proof that a read model is the fold of the log: recompute a projection from the stream up
//! to its checkpoint and compare the result with PostgreSQL, row by row.
//!
//! 1. In one `REPEATABLE READ` transaction, read the checkpoint `C` and copy the live tables
//!    (`<table>__vlive`): a consistent picture of the model at `C` while the runner goes on.
//! 2. Fold stream sequences `1..=C` into fresh tables (`<table>__verify`) with the
//!    projection's own code, one batch per transaction, exactly as a rebuild does.
//! 3. Compare each pair in PostgreSQL by primary key (`FULL JOIN … USING (key)`, rows as
//!    `jsonb`), keep the first differences and count them all.
//!
//! The copies are dropped at the end. Nothing live is locked or written except the
//! `projection_verifications` row that records the outcome, which the monitor turns into
//! `covenant_projection_divergence{projection}` (and the `ProjectionDivergence` alert).
//! One verification per projection at a time (an advisory lock).

use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::Value;
use sqlx::{PgPool, Row};

use crate::apply::apply_batch;
use crate::checkpoint;
use crate::projection::{Projection, Tables};
use crate::rebuild::{RebuildError, prepare_copy, read_range};

/// Differences kept (and printed) per table; all are counted.
pub const SHOWN_PER_TABLE: i64 = 20;

/// Suffix of the snapshot of the live tables.
const LIVE_COPY: &str = "__vlive";

/// One row that differs.
#[derive(Debug, Clone)]
pub struct Difference {
    /// Table (base name).
    pub table: String,
    /// The row's primary key, as `column=value` pairs.
    pub key: String,
    /// The row in PostgreSQL (`None`: missing there).
    pub live: Option<Value>,
    /// The row the fold computed (`None`: PostgreSQL has a row the log does not explain).
    pub fold: Option<Value>,
}

impl Difference {
    /// Columns whose values differ (every column when a side is missing).
    pub fn columns(&self) -> Vec<(String, Value, Value)> {
        let (empty, null) = (serde_json::Map::new(), Value::Null);
        let live = self.live.as_ref().and_then(Value::as_object).unwrap_or(&empty);
        let fold = self.fold.as_ref().and_then(Value::as_object).unwrap_or(&empty);
        let mut names: Vec<&String> = live.keys().chain(fold.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|c| {
                let (l, f) = (live.get(c).unwrap_or(&null), fold.get(c).unwrap_or(&null));
                (l != f).then(|| (c.clone(), l.clone(), f.clone()))
            })
            .collect()
    }
}

/// One table compared.
#[derive(Debug, Clone)]
pub struct TableReport {
    /// Table (base name).
    pub table: String,
    /// Rows in PostgreSQL at the checkpoint.
    pub live_rows: u64,
    /// Rows the fold computed.
    pub fold_rows: u64,
    /// Rows that differ (missing on either side, or with another value).
    pub differing: u64,
}

/// What a verification found.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// Projection name.
    pub projection: String,
    /// The checkpoint the model was compared at.
    pub checkpoint: u64,
    /// Rows compared and rows differing, per table of the projection.
    pub tables: Vec<TableReport>,
    /// The first [`SHOWN_PER_TABLE`] differences of each table.
    pub differences: Vec<Difference>,
    /// Wall time.
    pub elapsed: Duration,
}

impl VerifyReport {
    /// Rows that differ, over every table.
    pub fn differing(&self) -> u64 {
        self.tables.iter().map(|t| t.differing).sum()
    }

    /// Whether PostgreSQL holds exactly the fold of the log.
    pub fn equal(&self) -> bool {
        self.differing() == 0
    }
}

/// Why a verification could not be carried out (which says nothing about equality).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Reading the stream or folding it failed.
    #[error(transparent)]
    Fold(#[from] RebuildError),
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Another verification of the projection holds the lock.
    #[error("another verification of {0} is running")]
    Busy(String),
}

/// Verifies `projection`, calling `progress(folded_seq, checkpoint)` while folding, and
/// records the outcome in `projection_verifications`.
///
/// # Errors
/// [`VerifyError`]: the comparison did not happen (and nothing was recorded).
pub async fn verify(
    js: &jetstream::Context,
    stream: &str,
    pool: &PgPool,
    projection: &dyn Projection,
    progress: impl Fn(u64, u64),
) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    let name = projection.name();
    // A session lock on a connection held to the end.
    let mut lock = pool.acquire().await?;
    let key = format!("covenant projections verify {name}");
    let got: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))").bind(&key).fetch_one(&mut *lock).await?;
    if !got {
        return Err(VerifyError::Busy(name.into()));
    }
    let result = compare(js, stream, pool, projection, &progress).await;
    cleanup(pool, projection).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))").bind(&key).execute(&mut *lock).await;
    let (checkpoint, tables, differences) = result?;
    let report = VerifyReport { projection: name.into(), checkpoint, tables, differences, elapsed: started.elapsed() };
    sqlx::query(
        "INSERT INTO projection_verifications (projection, checkpoint, differing, verified_at) \
         VALUES ($1, $2, $3, now()) \
         ON CONFLICT (projection) DO UPDATE SET checkpoint = $2, differing = $3, verified_at = now()",
    )
    .bind(name)
    .bind(checkpoint as i64)
    .bind(report.differing() as i64)
    .execute(pool)
    .await?;
    metrics::gauge!("covenant_projection_divergence", "projection" => name).set(report.differing() as f64);
    Ok(report)
}

type Compared = (u64, Vec<TableReport>, Vec<Difference>);

async fn compare(
    js: &jetstream::Context,
    stream: &str,
    pool: &PgPool,
    projection: &dyn Projection,
    progress: &impl Fn(u64, u64),
) -> Result<Compared, VerifyError> {
    let at = snapshot(pool, projection).await?;
    prepare_copy(pool, projection, Tables::VERIFY).await?;
    read_range(js, stream, 1, at, projection.opens_personal_fields(), async |batch| {
        let (cp, applied) = apply_batch(pool, projection, Tables::VERIFY, &batch, None).await?;
        if let Some(g) = applied.gap {
            return Err(RebuildError::Hole { missing: g.missing, next: g.next });
        }
        progress(cp, at);
        Ok(())
    })
    .await?;
    let mut tables = Vec::new();
    let mut differences = Vec::new();
    for t in projection.tables() {
        let (report, mut diffs) = compare_table(pool, t).await?;
        tables.push(report);
        differences.append(&mut diffs);
    }
    Ok((at, tables, differences))
}

/// Copies the live tables as of their checkpoint, which it returns.
async fn snapshot(pool: &PgPool, projection: &dyn Projection) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
    // The first query fixes the snapshot every copy below reads.
    let at = checkpoint::get_in(&mut tx, projection.name()).await?;
    for t in projection.tables() {
        let copy = format!("{t}{LIVE_COPY}");
        sqlx::query(&format!("DROP TABLE IF EXISTS {copy}")).execute(&mut *tx).await?;
        sqlx::query(&format!("CREATE UNLOGGED TABLE {copy} AS SELECT * FROM {t}")).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(at)
}

/// The primary key columns of `table`, in key order (names come from the catalog).
async fn primary_key(pool: &PgPool, table: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
         WHERE i.indrelid = $1::regclass AND i.indisprimary \
         ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(table)
    .fetch_all(pool)
    .await
}

async fn compare_table(pool: &PgPool, table: &str) -> Result<(TableReport, Vec<Difference>), sqlx::Error> {
    let key = primary_key(pool, table).await?;
    let (live, fold) = (format!("{table}{LIVE_COPY}"), Tables::VERIFY.name(table));
    let using = key.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
    let count = |t: &str| format!("SELECT count(*) FROM {t}");
    let live_rows: i64 = sqlx::query_scalar(&count(&live)).fetch_one(pool).await?;
    let fold_rows: i64 = sqlx::query_scalar(&count(&fold)).fetch_one(pool).await?;
    let join =
        format!("FROM {live} l FULL JOIN {fold} f USING ({using}) WHERE to_jsonb(l) IS DISTINCT FROM to_jsonb(f)");
    let differing: i64 = sqlx::query_scalar(&format!("SELECT count(*) {join}")).fetch_one(pool).await?;
    let rows = sqlx::query(&format!(
        "SELECT to_jsonb(l) AS live, to_jsonb(f) AS fold {join} ORDER BY {using} LIMIT {SHOWN_PER_TABLE}"
    ))
    .fetch_all(pool)
    .await?;
    let differences = rows
        .iter()
        .map(|r| {
            let (live, fold): (Option<Value>, Option<Value>) = (r.get("live"), r.get("fold"));
            let side = live.as_ref().or(fold.as_ref());
            let key = key
                .iter()
                .map(|c| {
                    let v = side.and_then(|s| s.get(c)).map_or_else(String::new, |v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                    format!("{c}={v}")
                })
                .collect::<Vec<_>>()
                .join(",");
            Difference { table: table.into(), key, live, fold }
        })
        .collect();
    let report = TableReport {
        table: table.into(),
        live_rows: live_rows as u64,
        fold_rows: fold_rows as u64,
        differing: differing as u64,
    };
    Ok((report, differences))
}

/// Drops the copies (best effort: a later verification drops leftovers first).
async fn cleanup(pool: &PgPool, projection: &dyn Projection) {
    for t in projection.tables() {
        for copy in [format!("{t}{LIVE_COPY}"), Tables::VERIFY.name(t)] {
            let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {copy}")).execute(pool).await;
        }
    }
    let _ = sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1")
        .bind(Tables::VERIFY.checkpoint(projection.name()))
        .execute(pool)
        .await;
}
