//! The `audit` projection: every event, newest first by type, subject or actor (the seed's
//! `get_recent_events`), one bulk insert per batch.

use sqlx::PgConnection;

use crate::event::ProjectedEvent;
use crate::projection::{Applied, Projection, Tables};

/// Projects every event into `audit_events`.
pub struct AuditProjection;

#[async_trait::async_trait]
impl Projection for AuditProjection {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_events"]
    }

    /// The rows keep each payload as stored, sealed fields included.
    fn opens_personal_fields(&self) -> bool {
        false
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: Tables,
        events: &[ProjectedEvent],
    ) -> Result<Applied, sqlx::Error> {
        insert_rows(conn, &tables.name("audit_events"), events).await?;
        Ok(Applied::default())
    }
}

/// Inserts `events` as rows of `table` (shaped like `audit_events`) with one `COPY`, the
/// fastest bulk path PostgreSQL has. Payloads that are not JSON are stored as NULL.
///
/// The rows are CSV written by the `csv` crate: an empty field is NULL only in `payload`
/// (`FORCE_NOT_NULL` makes an empty text column the empty string, as it was stored).
///
/// # Errors
/// Database errors.
pub async fn insert_rows(conn: &mut PgConnection, table: &str, events: &[ProjectedEvent]) -> Result<(), sqlx::Error> {
    let mut csv = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::with_capacity(events.len() * 400));
    for e in events {
        let at = e.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let payload: &[u8] =
            if serde_json::from_slice::<serde::de::IgnoredAny>(&e.payload).is_ok() { &e.payload } else { b"" };
        let (seq, version) = (e.seq.to_string(), e.version.to_string());
        let row: [&[u8]; 10] = [
            seq.as_bytes(),
            e.subject.as_bytes(),
            e.aggregate.as_bytes(),
            e.aggregate_id.as_bytes(),
            e.event_id.as_bytes(),
            e.event_type.as_bytes(),
            version.as_bytes(),
            e.actor.as_bytes(),
            at.as_bytes(),
            payload,
        ];
        csv.write_record(row).map_err(|e| sqlx::Error::Protocol(format!("writing the COPY rows: {e}")))?;
    }
    let csv = csv.into_inner().map_err(|e| sqlx::Error::Protocol(format!("writing the COPY rows: {e}")))?;
    let sql = format!(
        "COPY {table} (seq, subject, aggregate, aggregate_id, event_id, event_type, version, actor, occurred_at, payload) \
         FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL (subject, aggregate, aggregate_id, event_id, event_type, actor))"
    );
    let mut copy = conn.copy_in_raw(&sql).await?;
    copy.send(csv).await?;
    copy.finish().await?;
    Ok(())
}
