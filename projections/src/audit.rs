//! The `audit` projection: every event, newest first by type, subject or actor (the seed's
//! `get_recent_events`), one bulk insert per batch.

use std::io::Write as _;

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
/// # Errors
/// Database errors.
pub async fn insert_rows(conn: &mut PgConnection, table: &str, events: &[ProjectedEvent]) -> Result<(), sqlx::Error> {
    let mut csv = Vec::with_capacity(events.len() * 400);
    for e in events {
        let at = e.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        write!(&mut csv, "{},", e.seq).ok();
        for field in [&e.subject, &e.aggregate, &e.aggregate_id, &e.event_id, &e.event_type] {
            quote(&mut csv, field.as_bytes());
            csv.push(b',');
        }
        write!(&mut csv, "{},", e.version).ok();
        quote(&mut csv, e.actor.as_bytes());
        write!(&mut csv, ",{at},").ok();
        if serde_json::from_slice::<serde::de::IgnoredAny>(&e.payload).is_ok() {
            quote(&mut csv, &e.payload);
        }
        csv.push(b'\n');
    }
    let sql = format!(
        "COPY {table} (seq, subject, aggregate, aggregate_id, event_id, event_type, version, actor, occurred_at, payload) FROM STDIN WITH (FORMAT csv)"
    );
    let mut copy = conn.copy_in_raw(&sql).await?;
    copy.send(csv).await?;
    copy.finish().await?;
    Ok(())
}

/// A CSV field in double quotes (an unquoted empty field is NULL, a quoted one is text).
fn quote(out: &mut Vec<u8>, field: &[u8]) {
    out.push(b'"');
    for &b in field {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}
