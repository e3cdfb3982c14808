//! Reads of the read models (used by the API, the CLI and tests).

use sqlx::PgPool;

/// The covenant fund row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Fund {
    /// Sum of every registered country's current GDP, whole USD.
    pub total_usd: i64,
    /// Registered countries.
    pub countries: i64,
    /// Projects not deleted.
    pub projects: i64,
    /// Registered users.
    pub users: i64,
    /// Projects ever created.
    pub projects_created: i64,
    /// The ledger checkpoint this row reflects.
    pub as_of_seq: i64,
}

/// Reads the fund row.
///
/// # Errors
/// Database errors.
pub async fn fund(pool: &PgPool) -> Result<Fund, sqlx::Error> {
    sqlx::query_as(
        "SELECT total_usd, countries, projects, users, projects_created, as_of_seq FROM covenant_fund WHERE id = 1",
    )
    .fetch_one(pool)
    .await
}

/// One row of the recent audit events.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AuditEventRow {
    /// Stream sequence.
    pub seq: i64,
    /// Subject.
    pub subject: String,
    /// Event type.
    pub event_type: String,
    /// Actor.
    pub actor: String,
    /// When it was decided.
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    /// Payload (NULL when not JSON).
    pub payload: Option<serde_json::Value>,
}

/// The seed's `get_recent_events`: newest first, optionally by type, subject and actor.
///
/// # Errors
/// Database errors.
pub async fn recent_events(
    pool: &PgPool,
    limit: i64,
    event_type: Option<&str>,
    subject: Option<&str>,
    actor: Option<&str>,
) -> Result<Vec<AuditEventRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, subject, event_type, actor, occurred_at, payload FROM audit_events
         WHERE ($2::text IS NULL OR event_type = $2) AND ($3::text IS NULL OR subject = $3) AND ($4::text IS NULL OR actor = $4)
         ORDER BY seq DESC LIMIT $1",
    )
    .bind(limit.clamp(1, 1000))
    .bind(event_type)
    .bind(subject)
    .bind(actor)
    .fetch_all(pool)
    .await
}
