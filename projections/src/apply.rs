//! Applying a batch: one transaction that locks the checkpoint, applies only the run of
//! events contiguous with it, records skipped events and advances the checkpoint. The
//! runner, rebuilds and verifications all apply through it.

use std::time::Instant;

use sqlx::PgPool;
use tracing::Instrument as _;

use crate::checkpoint;
use crate::event::ProjectedEvent;
use crate::projection::{Applied, Gap, Projection, Tables};

/// One transaction: lock the checkpoint, apply the events above it, record skipped
/// events, advance the checkpoint. Returns the new checkpoint and what was applied. Under
/// `trace` (the batch's consumer span, when it has one), the transaction is a client span.
///
/// # Errors
/// Database errors (nothing is then committed).
pub async fn apply_batch(
    pool: &PgPool,
    projection: &dyn Projection,
    tables: Tables,
    events: &[ProjectedEvent],
    trace: Option<&tracing::Span>,
) -> Result<(u64, Applied), sqlx::Error> {
    let span = match trace {
        None => tracing::Span::none(),
        Some(trace) if trace.is_none() => tracing::Span::none(),
        Some(trace) => tracing::info_span!(
            parent: trace,
            "transaction",
            otel.name = %format_args!("{} transaction", projection.name()),
            otel.kind = "client",
            db.system.name = "postgresql",
            db.operation.name = "projection_batch",
            db.collection.name = projection.name(),
        ),
    };
    let started = Instant::now();
    let result = apply_batch_tx(pool, projection, tables, events).instrument(span).await;
    metrics::histogram!("db_client_operation_duration_seconds", "operation" => "projection_batch", "projection" => projection.name())
        .record(started.elapsed().as_secs_f64());
    result
}

/// The events above `cp` that follow it without a hole (`cp + 1`, `cp + 2`, …), and the
/// hole where that run ends, if it ends before the batch does.
fn contiguous_after(cp: u64, events: &[ProjectedEvent]) -> (Vec<ProjectedEvent>, Option<Gap>) {
    let mut run = Vec::with_capacity(events.len());
    for (expected, e) in (cp + 1..).zip(events.iter().filter(|e| e.seq > cp)) {
        if e.seq != expected {
            return (run, Some(Gap { missing: expected, next: e.seq }));
        }
        run.push(e.clone());
    }
    (run, None)
}

async fn apply_batch_tx(
    pool: &PgPool,
    projection: &dyn Projection,
    tables: Tables,
    events: &[ProjectedEvent],
) -> Result<(u64, Applied), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let name = tables.checkpoint(projection.name());
    let cp = checkpoint::lock(&mut tx, &name).await?;
    let redelivered = events.iter().filter(|e| e.seq <= cp).count();
    if redelivered > 0 {
        metrics::counter!("covenant_projection_redeliveries_total", "projection" => projection.name())
            .increment(redelivered as u64);
    }
    // Only the run contiguous with the checkpoint is applied: the checkpoint never moves
    // over a sequence that was not delivered.
    let (fresh, gap) = contiguous_after(cp, events);
    let Some(last) = fresh.last().map(|e| e.seq) else {
        tx.commit().await?;
        return Ok((cp, Applied { gap, ..Applied::default() }));
    };
    let mut applied = projection.apply(&mut tx, tables, &fresh).await?;
    applied.gap = gap;
    for s in &applied.skipped {
        sqlx::query("INSERT INTO projection_skipped_events (projection, seq, subject, event_type, reason) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
            .bind(projection.name())
            .bind(s.seq as i64)
            .bind(&s.subject)
            .bind(&s.event_type)
            .bind(&s.reason)
            .execute(&mut *tx)
            .await?;
    }
    checkpoint::advance(&mut tx, &name, last).await?;
    tx.commit().await?;
    // This process's read-your-writes waits wake now; other instances' on the NOTIFY.
    checkpoint::announce(pool, &name, last);
    Ok((last, applied))
}

#[cfg(test)]
mod tests {
    use super::{Gap, contiguous_after};
    use crate::event::ProjectedEvent;

    fn events(seqs: &[u64]) -> Vec<ProjectedEvent> {
        seqs.iter()
            .map(|&s| ProjectedEvent::parse(s, "e.country.FR", None, bytes::Bytes::new(), chrono::Utc::now()))
            .collect()
    }

    fn seqs(events: &[ProjectedEvent]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn only_the_run_contiguous_with_the_checkpoint_is_applied() {
        let (run, gap) = contiguous_after(3, &events(&[2, 3, 4, 5, 6]));
        assert_eq!((seqs(&run), gap), (vec![4, 5, 6], None), "redeliveries dropped, the rest applied");
        let (run, gap) = contiguous_after(3, &events(&[4, 5, 7, 8]));
        assert_eq!((seqs(&run), gap), (vec![4, 5], Some(Gap { missing: 6, next: 7 })), "stops at the hole");
        let (run, gap) = contiguous_after(3, &events(&[6, 7]));
        assert_eq!((seqs(&run), gap), (vec![], Some(Gap { missing: 4, next: 6 })), "a hole right after the checkpoint");
        let (run, gap) = contiguous_after(9, &events(&[4, 5]));
        assert_eq!((seqs(&run), gap), (vec![], None), "all redelivered");
    }
}
