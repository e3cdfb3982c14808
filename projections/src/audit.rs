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

    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: Tables,
        events: &[ProjectedEvent],
    ) -> Result<Applied, sqlx::Error> {
        let n = events.len();
        let (
            mut seq,
            mut subject,
            mut aggregate,
            mut id,
            mut event_id,
            mut event_type,
            mut version,
            mut actor,
            mut at,
            mut payload,
        ) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for e in events {
            seq.push(e.seq as i64);
            subject.push(e.subject.clone());
            aggregate.push(e.aggregate.clone());
            id.push(e.aggregate_id.clone());
            event_id.push(e.event_id.clone());
            event_type.push(e.event_type.clone());
            version.push(e.version as i64);
            actor.push(e.actor.clone());
            at.push(e.occurred_at);
            // Non-JSON (or redacted) payloads are kept as NULL; the event itself is still listed.
            payload.push(serde_json::from_slice::<serde_json::Value>(&e.payload).ok());
        }
        let sql = format!(
            "INSERT INTO {} (seq, subject, aggregate, aggregate_id, event_id, event_type, version, actor, occurred_at, payload)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::timestamptz[], $10::jsonb[])",
            tables.name("audit_events")
        );
        sqlx::query(&sql)
            .bind(seq)
            .bind(subject)
            .bind(aggregate)
            .bind(id)
            .bind(event_id)
            .bind(event_type)
            .bind(version)
            .bind(actor)
            .bind(at)
            .bind(payload)
            .execute(conn)
            .await?;
        Ok(Applied::default())
    }
}
