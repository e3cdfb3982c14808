//! Projection checkpoints and read-your-writes.

mod watch;

use std::time::Duration;

pub use watch::{CHANNEL, announce};

use sqlx::{PgConnection, PgPool};

/// Every projection this crate runs; read-your-writes waits for all of them by default.
pub const PROJECTIONS: [&str; 2] = ["ledger", "audit"];

/// The projection holding the entities a mutation answers with (countries, projects,
/// users): reading one back waits for it alone, not for the audit trail's read model.
pub const LEDGER: [&str; 1] = ["ledger"];

/// Locks and reads a checkpoint row inside a transaction (creating it at 0). The lock is
/// what serialises a rebuild's swap with the runner's batches.
///
/// # Errors
/// Database errors.
pub async fn lock(conn: &mut PgConnection, name: &str) -> Result<u64, sqlx::Error> {
    sqlx::query("INSERT INTO projection_checkpoints (name, seq) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
    Ok(seq as u64)
}

/// Advances a locked checkpoint, and announces it on [`CHANNEL`] (PostgreSQL delivers the
/// notification when the transaction commits, to every instance listening).
///
/// # Errors
/// Database errors.
pub async fn advance(conn: &mut PgConnection, name: &str, seq: u64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH moved AS (UPDATE projection_checkpoints SET seq = $2, updated_at = now() WHERE name = $1 RETURNING name, seq) \
         SELECT pg_notify($3, name || ' ' || seq) FROM moved",
    )
    .bind(name)
    .bind(seq as i64)
    .bind(CHANNEL)
    .execute(conn)
    .await?;
    Ok(())
}

/// The checkpoint of `name` (0 if it never ran).
///
/// # Errors
/// Database errors.
pub async fn get(pool: &PgPool, name: &str) -> Result<u64, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM projection_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(seq.unwrap_or(0) as u64)
}

/// The checkpoint of `name` read on `conn` (0 if it never ran), without locking it.
///
/// # Errors
/// Database errors.
pub async fn get_in(conn: &mut PgConnection, name: &str) -> Result<u64, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM projection_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?;
    Ok(seq.unwrap_or(0) as u64)
}

/// Why a read-your-writes wait ended without the sequence being reached.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The projections did not reach the sequence in time.
    #[error("projections have not reached sequence {wanted} after {waited:?} (at {reached})")]
    Timeout {
        /// The sequence asked for.
        wanted: u64,
        /// The lowest checkpoint among the projections waited for.
        reached: u64,
        /// How long it waited.
        waited: Duration,
    },
    /// The database could not be read.
    #[error("read models unavailable: {0}")]
    Database(#[from] sqlx::Error),
}

/// Waits until every projection in `names` has applied stream sequence `seq`, for at most
/// `timeout`. It wakes when a projection announces a commit ([`watch`]: in-process from the
/// runner, or PostgreSQL's NOTIFY from another instance), and reads the checkpoints itself
/// at first and then every 100 ms in case an announcement was lost (every 5 ms outside a
/// tokio runtime's reach of a listener).
///
/// # Errors
/// [`WaitError::Timeout`] with the reached sequence; [`WaitError::Database`].
pub async fn wait_for_sequence(pool: &PgPool, names: &[&str], seq: u64, timeout: Duration) -> Result<(), WaitError> {
    let start = tokio::time::Instant::now();
    let watch = watch::of(pool);
    // Subscribed before the first read, so a commit between the two still wakes us.
    let mut changed = watch.as_ref().map(|w| w.subscribe());
    let owned: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut last_read: Option<tokio::time::Instant> = None;
    loop {
        if watch.as_ref().is_some_and(|w| w.reached(names) >= seq) {
            return Ok(());
        }
        let recheck = if changed.is_some() { watch::RECHECK } else { Duration::from_millis(5) };
        let waited = start.elapsed();
        if waited >= timeout || last_read.is_none_or(|t| t.elapsed() >= recheck) {
            last_read = Some(tokio::time::Instant::now());
            let reached = lowest(pool, &owned).await?;
            if reached >= seq {
                return Ok(());
            }
            if waited >= timeout {
                return Err(WaitError::Timeout { wanted: seq, reached, waited });
            }
        }
        let nap = (timeout - waited).min(recheck);
        match &mut changed {
            Some(rx) => {
                let _ = tokio::time::timeout(nap, rx.changed()).await;
            }
            None => tokio::time::sleep(nap).await,
        }
    }
}

/// The lowest checkpoint among `names` (0 for one that never ran).
async fn lowest(pool: &PgPool, names: &[String]) -> Result<u64, sqlx::Error> {
    let reached: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(COALESCE(c.seq, 0)) FROM UNNEST($1::text[]) AS n(name) LEFT JOIN projection_checkpoints c ON c.name = n.name",
    )
    .bind(names)
    .fetch_one(pool)
    .await?;
    Ok(reached.unwrap_or(0) as u64)
}
