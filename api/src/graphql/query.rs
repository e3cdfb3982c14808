//! The query root: reads of the PostgreSQL read models.

use async_graphql::{ComplexObject, Context, ID, Object};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use covenant_projections::views;
use sqlx::PgPool;

use super::types::*;
use crate::error::{ApiError, ApiResult, gql};

/// [`select`] of a read model named by a literal: the span's name is made at compile time.
macro_rules! db {
    ($ctx:expr, $operation:literal, $query:expr $(,)?) => {
        select($ctx, $operation, concat!("SELECT ", $operation), $query)
    };
}

/// Largest page a list query returns.
pub const MAX_PAGE: i32 = 200;

fn pool<'a>(ctx: &Context<'a>) -> &'a PgPool {
    ctx.data_unchecked::<PgPool>()
}

fn page_size(first: i32) -> ApiResult<i64> {
    if !(0..=MAX_PAGE).contains(&first) {
        return Err(gql(ApiError::BadInput(format!("`first` must be between 0 and {MAX_PAGE}"))));
    }
    Ok(i64::from(first))
}

fn encode_cursor(parts: &[String]) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(parts).unwrap_or_default())
}

fn decode_cursor(cursor: &str) -> ApiResult<Vec<String>> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| gql(ApiError::BadInput("`after` is not a cursor this API issued".into())))
}

/// Queries.
pub struct Query;

#[Object]
impl Query {
    /// Countries, a page at a time (keyset pagination: pass `pageInfo.endCursor` as `after`).
    async fn countries(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
        #[graphql(default_with = "CountryOrder::Code")] order_by: CountryOrder,
    ) -> ApiResult<CountryConnection> {
        let n = page_size(first)?;
        let after_row = match after {
            Some(c) => {
                let p = decode_cursor(&c)?;
                let (code, gdp) =
                    (p.first().cloned().unwrap_or_default(), p.get(1).and_then(|g| g.parse().ok()).unwrap_or(0));
                Some(views::CountryRow {
                    code,
                    name: String::new(),
                    gdp_usd: gdp,
                    version: 0,
                    registered_at: Default::default(),
                    updated_at: Default::default(),
                })
            }
            None => None,
        };
        let order = match order_by {
            CountryOrder::Code => views::CountryOrder::Code,
            CountryOrder::GdpDesc => views::CountryOrder::GdpDesc,
        };
        // A selected `totalCount` is read by the page's own statement.
        let (mut rows, total_count) = if ctx.look_ahead().field("totalCount").exists() {
            db!(ctx, "countries_counted", views::countries_counted(pool(ctx), order, n, after_row.as_ref()))
                .await
                .map_err(gql)?
        } else {
            (db!(ctx, "countries", views::countries(pool(ctx), order, n, after_row.as_ref())).await.map_err(gql)?, None)
        };
        let has_next_page = rows.len() as i64 > n;
        rows.truncate(n as usize);
        let end_cursor = rows.last().map(|r| encode_cursor(&[r.code.clone(), r.gdp_usd.to_string()]));
        Ok(CountryConnection {
            nodes: rows.into_iter().map(Into::into).collect(),
            page_info: PageInfo { has_next_page, end_cursor },
            total_count,
        })
    }

    /// One country by ISO code, or null.
    async fn country(&self, ctx: &Context<'_>, code: String) -> ApiResult<Option<Country>> {
        covenant_domain::CountryCode::parse(&code).map_err(|e| gql(ApiError::BadInput(e.to_string())))?;
        Ok(db!(ctx, "country", views::country(pool(ctx), &code)).await.map_err(gql)?.map(Into::into))
    }

    /// Live projects, optionally of one country and status, a page at a time.
    async fn projects(
        &self,
        ctx: &Context<'_>,
        country_code: Option<String>,
        status: Option<ProjectStatus>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
    ) -> ApiResult<ProjectConnection> {
        let n = page_size(first)?;
        let after = match after {
            Some(c) => Some(
                decode_cursor(&c)?
                    .first()
                    .and_then(|s| uuid::Uuid::parse_str(s).ok())
                    .ok_or_else(|| gql(ApiError::BadInput("bad cursor".into())))?,
            ),
            None => None,
        };
        let mut rows = db!(
            ctx,
            "projects",
            views::projects(pool(ctx), country_code.as_deref(), status.map(ProjectStatus::as_str), n, after),
        )
        .await
        .map_err(gql)?;
        let has_next_page = rows.len() as i64 > n;
        rows.truncate(n as usize);
        let end_cursor = rows.last().map(|r| encode_cursor(&[r.id.to_string()]));
        Ok(ProjectConnection {
            nodes: rows.into_iter().map(Into::into).collect(),
            page_info: PageInfo { has_next_page, end_cursor },
        })
    }

    /// One project by id (deleted ones too, with `deletedAt`), or null.
    async fn project(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Project>> {
        let id = uuid::Uuid::parse_str(&id).map_err(|_| gql(ApiError::BadInput("project id must be a UUID".into())))?;
        Ok(db!(ctx, "project", views::project(pool(ctx), id)).await.map_err(gql)?.map(Into::into))
    }

    /// The signed-in user, or null.
    async fn me(&self, ctx: &Context<'_>) -> ApiResult<Option<super::results::User>> {
        let Some(p) = ctx.data_opt::<Option<crate::auth::Principal>>().copied().flatten() else { return Ok(None) };
        let email: Option<String> = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
            .bind(p.user_id)
            .fetch_optional(pool(ctx))
            .await
            .map_err(gql)?;
        Ok(email.map(|email| super::results::User { id: ID(p.user_id.to_string()), email, role: p.role.into() }))
    }

    /// The covenant fund: sum of GDP and counts, with the sequence they reflect.
    async fn covenant_fund(&self, ctx: &Context<'_>) -> ApiResult<CovenantFund> {
        Ok(db!(ctx, "fund", views::fund(pool(ctx))).await.map_err(gql)?.into())
    }

    /// The audit trail: the stream's last sequence, the latest signed checkpoint (what
    /// `covenant audit verify` checks) and how far `auditEvents` has read.
    async fn audit_status(&self, ctx: &Context<'_>) -> ApiResult<AuditStatus> {
        let feed = ctx.data_unchecked::<super::subscription::EventFeed>();
        let trail = crate::trail::read(&feed.js, &feed.stream).await.ok_or_else(|| unavailable(()))?;
        let projected = covenant_projections::checkpoint::get(pool(ctx), "audit").await.map_err(gql)?;
        let latest = trail.latest.map_err(|e| match e {
            crate::trail::CheckpointError::Unavailable => unavailable(()),
            crate::trail::CheckpointError::Malformed => gql(ApiError::Internal("malformed checkpoint".into())),
        })?;
        let last = trail.last_sequence;
        let size = latest.as_ref().map_or(0, |l| l.size);
        let status = AuditStatus {
            last_sequence: i64::try_from(last).unwrap_or(i64::MAX),
            projected_sequence: i64::try_from(projected).unwrap_or(i64::MAX),
            checkpoint_size: i64::try_from(size).unwrap_or(i64::MAX),
            checkpoint_root: latest.as_ref().map(|l| covenant_audit::hash_to_b64(&l.root)),
            checkpoint_at: latest.as_ref().map(|l| l.at),
            checkpoint_signers: latest.map(|l| l.signers).unwrap_or_default(),
            unsealed_tail: i64::try_from(last.saturating_sub(size)).unwrap_or(i64::MAX),
        };
        Ok(status)
    }

    /// The most recent events, newest first, optionally by type and subject. Needs a
    /// signed-in user. Personal fields (email, login address) show opened to admins,
    /// `[sealed]` to others, and `[forgotten]` to everyone once the user was forgotten.
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] last: i32,
        event_type: Option<String>,
        subject: Option<String>,
    ) -> ApiResult<Vec<AuditEvent>> {
        if ctx.data_opt::<Option<crate::auth::Principal>>().copied().flatten().is_none() {
            return Err(super::errors::err(crate::error::Code::Unauthenticated, "sign in to read the audit trail"));
        }
        let n = page_size(last)?;
        let rows = db!(
            ctx,
            "recent_events",
            views::recent_events(pool(ctx), n.max(1), event_type.as_deref(), subject.as_deref(), None),
        )
        .await
        .map_err(gql)?;
        let mut events: Vec<AuditEvent> = rows.into_iter().map(Into::into).collect();
        let feed = ctx.data_unchecked::<super::subscription::EventFeed>();
        super::personal::present(&feed.keys, super::personal::is_admin(ctx), &mut events).await;
        Ok(events)
    }
}

#[ComplexObject]
impl CountryConnection {
    /// Registered countries in all.
    async fn total_count(&self, ctx: &Context<'_>) -> ApiResult<i64> {
        if let Some(n) = self.total_count {
            return Ok(n);
        }
        db!(ctx, "country_count", views::country_count(pool(ctx))).await.map_err(gql)
    }
}

#[ComplexObject]
impl Country {
    /// Every GDP figure recorded, oldest first.
    async fn gdp_history(&self, ctx: &Context<'_>) -> ApiResult<Vec<GdpPoint>> {
        Ok(db!(ctx, "gdp_history", views::gdp_history(pool(ctx), &self.code))
            .await
            .map_err(gql)?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}

fn unavailable<E>(_: E) -> async_graphql::Error {
    super::errors::err(crate::error::Code::Unavailable, "the event stream is not reachable")
}

/// The handles of `db_client_operation_duration_seconds{operation}`, by operation (see
/// `covenant_telemetry::metrics`): schema data.
#[derive(Debug)]
pub(crate) struct SqlDurations(covenant_telemetry::metrics::Histograms<&'static str>);

impl Default for SqlDurations {
    fn default() -> Self {
        Self(covenant_telemetry::metrics::Histograms::new("db_client_operation_duration_seconds"))
    }
}

/// Awaits a read-model query, recording `db_client_operation_duration_seconds{operation}`
/// inside a client span (`name`, `SELECT <operation>`) when the request's trace is sampled.
async fn select<T>(
    ctx: &Context<'_>,
    operation: &'static str,
    name: &'static str,
    query: impl std::future::Future<Output = T>,
) -> T {
    let span = if covenant_telemetry::sampled() {
        tracing::info_span!(
            "sql",
            otel.name = name,
            otel.kind = "client",
            db.system.name = "postgresql",
            db.operation.name = operation,
        )
    } else {
        tracing::Span::none()
    };
    let started = std::time::Instant::now();
    let out = tracing::Instrument::instrument(query, span).await;
    ctx.data_unchecked::<SqlDurations>().0.record(
        operation,
        |operation| vec![metrics::Label::new("operation", *operation)],
        started.elapsed().as_secs_f64(),
    );
    out
}
