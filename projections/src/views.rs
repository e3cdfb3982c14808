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

/// A country as the read model holds it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct CountryRow {
    /// ISO code.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Current GDP, whole USD.
    pub gdp_usd: i64,
    /// Aggregate version.
    pub version: i64,
    /// When it was registered.
    pub registered_at: chrono::DateTime<chrono::Utc>,
    /// When it last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Sort orders of the country list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountryOrder {
    /// By ISO code, ascending.
    Code,
    /// By GDP, largest first (ties by code).
    GdpDesc,
}

/// The page query's two statements (by code, by GDP), its columns followed by `$extra`.
macro_rules! country_page_sql {
    ($extra:literal) => {
        (
            concat!(
                "SELECT code, name, gdp_usd, version, registered_at, updated_at",
                $extra,
                " FROM countries WHERE ($1::text IS NULL OR code > $1) ORDER BY code LIMIT $2"
            ),
            concat!(
                "SELECT code, name, gdp_usd, version, registered_at, updated_at",
                $extra,
                " FROM countries WHERE ($1::bigint IS NULL OR (gdp_usd, code) < ($1, $2)) \
                 ORDER BY gdp_usd DESC, code DESC LIMIT $3"
            ),
        )
    };
}

/// A page of countries after the keyset cursor `after` (the last row of the previous
/// page), `first + 1` rows so the caller knows whether another page follows.
///
/// # Errors
/// Database errors.
pub async fn countries(
    pool: &PgPool,
    order: CountryOrder,
    first: i64,
    after: Option<&CountryRow>,
) -> Result<Vec<CountryRow>, sqlx::Error> {
    page_query(country_page_sql!(""), order, first, after).fetch_all(pool).await
}

/// [`countries`] with the number of registered countries in all, read by the same
/// statement: one round trip instead of two, and the count and the page from one
/// snapshot. The count is `None` when the page is empty (no row carries it; ask
/// [`country_count`]).
///
/// # Errors
/// Database errors.
pub async fn countries_counted(
    pool: &PgPool,
    order: CountryOrder,
    first: i64,
    after: Option<&CountryRow>,
) -> Result<(Vec<CountryRow>, Option<i64>), sqlx::Error> {
    let sql = country_page_sql!(", (SELECT count(*) FROM countries) AS total_count");
    let rows: Vec<CountedRow> = page_query(sql, order, first, after).fetch_all(pool).await?;
    let total = rows.first().map(|r| r.total_count);
    Ok((rows.into_iter().map(|r| r.row).collect(), total))
}

/// A row of [`countries_counted`].
#[derive(sqlx::FromRow)]
struct CountedRow {
    #[sqlx(flatten)]
    row: CountryRow,
    total_count: i64,
}

/// The page query of [`countries`] in `order`, of the statements `sql` (by code, by GDP).
fn page_query<R>(
    (by_code, by_gdp): (&'static str, &'static str),
    order: CountryOrder,
    first: i64,
    after: Option<&CountryRow>,
) -> sqlx::query::QueryAs<'static, sqlx::Postgres, R, sqlx::postgres::PgArguments>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    let limit = first.clamp(0, 500) + 1;
    match order {
        CountryOrder::Code => sqlx::query_as(by_code).bind(after.map(|a| a.code.clone())).bind(limit),
        CountryOrder::GdpDesc => {
            sqlx::query_as(by_gdp).bind(after.map(|a| a.gdp_usd)).bind(after.map(|a| a.code.clone())).bind(limit)
        }
    }
}

/// One country by code.
///
/// # Errors
/// Database errors.
pub async fn country(pool: &PgPool, code: &str) -> Result<Option<CountryRow>, sqlx::Error> {
    sqlx::query_as("SELECT code, name, gdp_usd, version, registered_at, updated_at FROM countries WHERE code = $1")
        .bind(code)
        .fetch_optional(pool)
        .await
}

/// Registered countries.
///
/// # Errors
/// Database errors.
pub async fn country_count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM countries").fetch_one(pool).await
}

/// One GDP figure of a country's history.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct GdpPoint {
    /// Aggregate version that recorded it.
    pub version: i64,
    /// Stream sequence.
    pub seq: i64,
    /// GDP, whole USD.
    pub gdp_usd: i64,
    /// Change from the previous figure in basis points (none at registration).
    pub delta_bp: Option<i64>,
    /// When it was recorded.
    pub occurred_at: chrono::DateTime<chrono::Utc>,
}

/// A country's GDP history, oldest first.
///
/// # Errors
/// Database errors.
pub async fn gdp_history(pool: &PgPool, code: &str) -> Result<Vec<GdpPoint>, sqlx::Error> {
    sqlx::query_as(
        "SELECT version, seq, gdp_usd, delta_bp, occurred_at FROM country_gdp_history WHERE code = $1 ORDER BY version",
    )
    .bind(code)
    .fetch_all(pool)
    .await
}

/// A project as the read model holds it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ProjectRow {
    /// Project id.
    pub id: uuid::Uuid,
    /// Country code.
    pub country_code: String,
    /// Display name.
    pub name: String,
    /// Budget, whole USD.
    pub budget_usd: i64,
    /// `proposed`, `active` or `completed`.
    pub status: String,
    /// Aggregate version.
    pub version: i64,
    /// Creation time.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Last change.
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Soft-delete time.
    pub deleted_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A page of live (not deleted) projects by id, optionally by country and status,
/// `first + 1` rows after `after`.
///
/// # Errors
/// Database errors.
pub async fn projects(
    pool: &PgPool,
    country: Option<&str>,
    status: Option<&str>,
    first: i64,
    after: Option<uuid::Uuid>,
) -> Result<Vec<ProjectRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, country_code, name, budget_usd, status, version, created_at, updated_at, deleted_at FROM projects
         WHERE deleted_at IS NULL AND ($1::text IS NULL OR country_code = $1) AND ($2::text IS NULL OR status = $2)
           AND ($3::uuid IS NULL OR id > $3)
         ORDER BY id LIMIT $4",
    )
    .bind(country)
    .bind(status)
    .bind(after)
    .bind(first.clamp(0, 500) + 1)
    .fetch_all(pool)
    .await
}

/// One project by id (deleted ones included, with `deleted_at`).
///
/// # Errors
/// Database errors.
pub async fn project(pool: &PgPool, id: uuid::Uuid) -> Result<Option<ProjectRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, country_code, name, budget_usd, status, version, created_at, updated_at, deleted_at FROM projects WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}
