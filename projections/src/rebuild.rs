//! Shadow rebuilds: replay the stream into fresh copies of a projection's tables while the
//! live ones keep serving, then swap them in one transaction.
//!
//! The swap locks the live checkpoint row (which the runner also locks for every batch),
//! applies the few events the shadow still lacks, renames the tables and commits: readers
//! see the old tables or the new, never an error or a half state. Interrupting a rebuild
//! leaves only shadow tables behind; rerunning starts them afresh.

use std::time::Duration;

use async_nats::jetstream::stream::ConsumerErrorKind;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use sqlx::{PgConnection, PgPool};

use crate::apply::apply_batch;
use crate::checkpoint;
use crate::event::ProjectedEvent;
use crate::projection::{Projection, Tables};

/// Events per rebuild transaction.
const REBUILD_BATCH: usize = 2000;

/// Why a rebuild stopped.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// NATS could not be read.
    #[error("JetStream: {0}")]
    Nats(String),
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The stream did not deliver a sequence the rebuild needs (a rebuild never moves
    /// over one, as the runner never does).
    #[error("sequence {missing} was not delivered (the next was {next}); the rebuild stopped before the swap")]
    Hole {
        /// The first sequence missing.
        missing: u64,
        /// The next one delivered.
        next: u64,
    },
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct RebuildReport {
    /// Events replayed into the shadow tables.
    pub events: u64,
    /// The checkpoint at the swap.
    pub swapped_at: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Rebuilds `projection` from the stream, calling `progress(applied_seq, target_seq)`.
///
/// # Errors
/// [`RebuildError`]; the live tables are untouched unless the swap committed.
pub async fn rebuild(
    js: &jetstream::Context,
    stream: &str,
    pool: &PgPool,
    projection: &dyn Projection,
    progress: impl Fn(u64, u64),
) -> Result<RebuildReport, RebuildError> {
    let started = std::time::Instant::now();
    prepare_copy(pool, projection, Tables::SHADOW).await?;
    let shadow_cp = Tables::SHADOW.checkpoint(projection.name());
    let mut done = 0u64;
    let mut events = 0u64;
    loop {
        let target = stream_last_seq(js, stream).await?.max(checkpoint::get(pool, projection.name()).await?);
        if target.saturating_sub(done) <= REBUILD_BATCH as u64 && done > 0 {
            break;
        }
        if target == 0 {
            break;
        }
        read_range(js, stream, done + 1, target, projection.opens_personal_fields(), async |batch| {
            let (cp, applied) = apply_batch(pool, projection, Tables::SHADOW, &batch, None).await?;
            if let Some(g) = applied.gap {
                return Err(RebuildError::Hole { missing: g.missing, next: g.next });
            }
            events += batch.len() as u64;
            done = cp;
            progress(done, target);
            Ok(())
        })
        .await?;
    }
    let swapped_at = swap(js, stream, pool, projection, &shadow_cp).await?;
    progress(swapped_at, swapped_at);
    Ok(RebuildReport { events, swapped_at, elapsed: started.elapsed() })
}

/// Creates fresh, empty copies of `projection`'s tables under `tables`' names (dropping
/// any left over) and resets that copy's checkpoint.
pub(crate) async fn prepare_copy(
    pool: &PgPool,
    projection: &dyn Projection,
    tables: Tables,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for t in projection.tables() {
        let copy = tables.name(t);
        sqlx::query(&format!("DROP TABLE IF EXISTS {copy}")).execute(&mut *tx).await?;
        sqlx::query(&format!("CREATE TABLE {copy} (LIKE {t} INCLUDING ALL)")).execute(&mut *tx).await?;
    }
    for sql in projection.init_sql(tables) {
        sqlx::query(&sql).execute(&mut *tx).await?;
    }
    let cp = tables.checkpoint(projection.name());
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1").bind(&cp).execute(&mut *tx).await?;
    tx.commit().await
}

/// Locks the live checkpoint, brings the shadow up to it, renames, commits.
async fn swap(
    js: &jetstream::Context,
    stream: &str,
    pool: &PgPool,
    projection: &dyn Projection,
    shadow_cp: &str,
) -> Result<u64, RebuildError> {
    let mut tx = pool.begin().await?;
    let live = checkpoint::lock(&mut tx, projection.name()).await?;
    let have = checkpoint::lock(&mut tx, shadow_cp).await?;
    if live > have {
        let mut batches = Vec::new();
        read_range(js, stream, have + 1, live, projection.opens_personal_fields(), async |b| {
            batches.push(b);
            Ok(())
        })
        .await?;
        let mut expected = have + 1;
        for b in batches {
            for e in &b {
                if e.seq != expected {
                    return Err(RebuildError::Hole { missing: expected, next: e.seq });
                }
                expected += 1;
            }
            projection.apply(&mut tx, Tables::SHADOW, &b).await?;
        }
    }
    rename_all(&mut tx, projection).await?;
    // The swapped-in tables hold everything up to the shadow's position, which may be ahead
    // of the live runner: the checkpoint moves there, so nothing is applied twice.
    let at = live.max(have);
    checkpoint::advance(&mut tx, projection.name(), at).await?;
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1").bind(shadow_cp).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(at)
}

async fn rename_all(conn: &mut PgConnection, projection: &dyn Projection) -> Result<(), sqlx::Error> {
    for t in projection.tables() {
        let (shadow, old) = (Tables::SHADOW.name(t), format!("{t}__old"));
        sqlx::query(&format!("DROP TABLE IF EXISTS {old}")).execute(&mut *conn).await?;
        sqlx::query(&format!("ALTER TABLE {t} RENAME TO {old}")).execute(&mut *conn).await?;
        sqlx::query(&format!("ALTER TABLE {shadow} RENAME TO {t}")).execute(&mut *conn).await?;
        sqlx::query(&format!("DROP TABLE {old}")).execute(&mut *conn).await?;
    }
    Ok(())
}

async fn stream_last_seq(js: &jetstream::Context, stream: &str) -> Result<u64, RebuildError> {
    // The lookup answers with the stream's state.
    Ok(lookup(js, stream).await?.cached_info().state.last_sequence)
}

/// The stream, looked up [`patiently`].
async fn lookup(js: &jetstream::Context, stream: &str) -> Result<jetstream::stream::Stream, RebuildError> {
    patiently(
        "stream lookup",
        async || js.get_stream(stream).await,
        |e| matches!(e.kind(), jetstream::context::GetStreamErrorKind::Request),
    )
    .await
}

/// How long a rebuild keeps asking JetStream a question that goes unanswered: as long as
/// it waits for the next message of a read.
const PATIENCE: Duration = Duration::from_secs(30);

/// Asks `request` again while its error is `transient` (a timeout, no responders), with
/// backoff, for up to [`PATIENCE`]; any other error (no such stream) fails at once.
///
/// A rebuild runs for minutes and its requests are safe to repeat: a stream lookup changes
/// nothing, and an ordered consumer whose creation answer was lost is ephemeral (the
/// server removes it once idle). One answer that came after the client's request timeout
/// (a leader election, a server busy syncing) must not throw the replay away. Each retry
/// is logged.
async fn patiently<T, E: std::fmt::Display>(
    what: &str,
    mut request: impl AsyncFnMut() -> Result<T, E>,
    transient: impl Fn(&E) -> bool,
) -> Result<T, RebuildError> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut backoff = Duration::from_millis(100);
    loop {
        match request().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) && tokio::time::Instant::now() + backoff < deadline => {
                tracing::warn!(error = %e, retry_in = ?backoff, "rebuild: {what} went unanswered; asking again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(RebuildError::Nats(format!("{what}: {e}"))),
        }
    }
}

/// Reads stream sequences `from..=to` with an ordered consumer, handing batches of up to
/// 2000 events, their personal fields opened ([`crate::personal`]) when `open`, to `each`.
///
/// # Errors
/// NATS errors, or what `each` returns.
pub async fn read_range(
    js: &jetstream::Context,
    stream: &str,
    from: u64,
    to: u64,
    open: bool,
    mut each: impl AsyncFnMut(Vec<ProjectedEvent>) -> Result<(), RebuildError>,
) -> Result<(), RebuildError> {
    if to < from {
        return Ok(());
    }
    let nats = |e: &dyn std::fmt::Display| RebuildError::Nats(e.to_string());
    let s = lookup(js, stream).await?;
    let config = consumer::pull::OrderedConfig {
        deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from.max(1) },
        ..Default::default()
    };
    let c = patiently(
        "ordered consumer creation",
        async || s.create_consumer(config.clone()).await,
        |e| matches!(e.kind(), ConsumerErrorKind::TimedOut | ConsumerErrorKind::Request),
    )
    .await?;
    let mut messages = c.messages().await.map_err(|e| nats(&e))?;
    let mut batch = Vec::with_capacity(REBUILD_BATCH);
    let keys = covenant_personal::KeyStore::attach(js.clone(), stream);
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .map_err(|_| RebuildError::Nats("stream read timed out".into()))?;
        let m = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(nats(&e)),
            None => return Err(RebuildError::Nats("ordered consumer closed".into())),
        };
        let e = ProjectedEvent::from_message(&m).map_err(|e| nats(&e))?;
        let seq = e.seq;
        batch.push(e);
        if seq >= to || batch.len() >= REBUILD_BATCH {
            crate::personal::open_events(&keys, &mut batch, open)
                .await
                .map_err(|e| RebuildError::Nats(crate::personal::describe(&e)))?;
            each(std::mem::take(&mut batch)).await?;
        }
        if seq >= to {
            return Ok(());
        }
    }
}
