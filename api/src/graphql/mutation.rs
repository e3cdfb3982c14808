//! The mutation root: commands through the command side, gated by role, returning the
//! stream `sequence` of their last event (the read-your-writes token).

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, ID, Object};
use covenant_commands::{CommandContext, CommandError, CommandSide, Receipt};
use covenant_domain::{
    Actor, CountryCode, CountryCommand, Email, Name, ProjectCommand, Role, SecurityCommand, SecurityError, UserCommand,
    UserError,
};
use covenant_projections::checkpoint::{LEDGER, WaitError, wait_for_sequence};
use covenant_projections::views;
use sqlx::PgPool;

use super::errors::{command_error, err};
use super::results::*;
use super::types::*;
use crate::auth::{self, Principal};
use crate::error::{ApiResult, gql};

mod read_back;
pub use read_back::ReadModelNotes;
use read_back::entity;

/// The client's address, for `user.login` events.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// How long a mutation waits for its write to reach the read models before answering
/// with the entity (it answers with the sequence either way).
const ENTITY_WAIT: Duration = Duration::from_secs(2);

/// The caller, who must hold one of `roles` (admins may do everything).
fn require(ctx: &Context<'_>, roles: &[Role]) -> ApiResult<Principal> {
    let Some(p) = ctx.data_opt::<Option<Principal>>().copied().flatten() else {
        return Err(err(
            crate::error::Code::Unauthenticated,
            "sign in first (login mutation, then Authorization: Bearer <token>)",
        ));
    };
    if p.role == Role::Admin || roles.contains(&p.role) {
        Ok(p)
    } else {
        Err(err(crate::error::Code::Forbidden, format!("role {} may not do this", p.role.as_str())))
    }
}

fn actor(p: &Principal) -> Actor {
    Actor::User { id: p.user_id, role: p.role }
}

fn context(p: Option<&Principal>, key: Option<String>) -> CommandContext {
    CommandContext {
        actor: p.map_or_else(|| "system".to_owned(), |p| p.user_id.to_string()),
        idempotency_key: key,
        headers: Vec::new(),
    }
}

fn side<'a>(ctx: &Context<'a>) -> ApiResult<&'a Arc<CommandSide>> {
    ctx.data_opt::<Arc<CommandSide>>()
        .ok_or_else(|| err(crate::error::Code::Unavailable, "this process does not accept commands"))
}

fn pool<'a>(ctx: &Context<'a>) -> &'a PgPool {
    ctx.data_unchecked::<PgPool>()
}

fn principals<'a>(ctx: &Context<'a>) -> &'a crate::principals::Principals {
    ctx.data_unchecked::<Arc<crate::principals::Principals>>()
}

fn bad<E: std::fmt::Display>(e: E) -> async_graphql::Error {
    err(crate::error::Code::BadUserInput, e.to_string())
}

/// Whole US dollars from the scalar, within the domain's bounds.
fn dollars(u: Usd) -> ApiResult<covenant_domain::Usd> {
    covenant_domain::Usd::new(u.0).map_err(bad)
}

/// A stream sequence as a decimal string (sequences outgrow GraphQL's 32-bit `Int`).
fn seq(r: &Receipt) -> String {
    r.sequence.to_string()
}

/// Mutations.
pub struct Mutation;

#[Object]
impl Mutation {
    /// Signs in: returns a bearer token and records `user.login` with the client address.
    /// At most the configured attempts (5 per 15 minutes) per client address and
    /// account; then `RATE_LIMITED`, HTTP 429 with `Retry-After`.
    async fn login(&self, ctx: &Context<'_>, email: String, password: String) -> ApiResult<Session> {
        let ip = ctx.data_opt::<ClientIp>().map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0);
        if let Some(limits) = ctx.data_opt::<std::sync::Arc<crate::limits::RateLimits>>()
            && let Err(wait) = limits.login.check(&(crate::limits::client_key(ip), email.trim().to_lowercase()))
        {
            let secs = crate::limits::retry_after_secs(wait);
            ctx.insert_http_header(axum::http::header::RETRY_AFTER, secs.to_string());
            return Err(err(crate::error::Code::RateLimited, format!("too many login attempts; retry in {secs} s")));
        }
        let id = auth::check_credentials(pool(ctx), &email, &password).await.map_err(|e| match e {
            auth::AuthError::Database(_) => err(crate::error::Code::Unavailable, "authentication unavailable"),
            other => err(crate::error::Code::Unauthenticated, other.to_string()),
        })?;
        let s = side(ctx)?;
        s.users.execute(&id.to_string(), UserCommand::RecordLogin { ip }, &context(None, None)).await.map_err(|e| {
            match e {
                // Forgotten while its credentials were still being deleted.
                CommandError::Refused(UserError::Forgotten) => {
                    err(crate::error::Code::Unauthenticated, auth::AuthError::BadCredentials.to_string())
                }
                other => command_error(other),
            }
        })?;
        let (token, expires_at) = auth::issue(principals(ctx), id)
            .await
            .map_err(|_| err(crate::error::Code::Unavailable, "authentication unavailable"))?;
        let role = principals(ctx).role(id).await.ok().flatten().unwrap_or(Role::Viewer);
        Ok(Session {
            token,
            expires_at,
            user: User { id: ID(id.to_string()), email: email.trim().to_lowercase(), role: role.into() },
        })
    }

    /// Signs out: ends the token and records `user.logout`.
    async fn logout(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let p = require(ctx, &[Role::Viewer, Role::Steward])?;
        let r = side(ctx)?
            .users
            .execute(&p.user_id.to_string(), UserCommand::RecordLogout { token: Some(p.jti) }, &context(Some(&p), None))
            .await
            .map_err(command_error)?;
        principals(ctx).wait_applied(r.sequence, Duration::from_secs(1)).await;
        // The event carries the token: every instance refuses it from now on. The table
        // serves instances that do not follow the stream; it may be down (the logout stands).
        principals(ctx).revoke_here(p.jti, p.expires_at);
        if let Err(e) = auth::revoke(pool(ctx), &p).await {
            tracing::warn!(error = %e, "revoked_tokens not written; the logout event revokes the token");
        }
        Ok(true)
    }

    /// Registers a user (admin).
    async fn register_user(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
        role: RoleGql,
    ) -> ApiResult<UserResult> {
        let p = require(ctx, &[])?;
        let email = Email::parse(&email).map_err(bad)?;
        let hash = auth::hash_password(&password).map_err(bad)?;
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM credentials WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(pool(ctx))
            .await
            .map_err(gql)?;
        if exists.is_some() {
            return Err(err(crate::error::Code::BadUserInput, "a user with this email exists"));
        }
        let id = uuid::Uuid::new_v4();
        // Credentials first: a registration the stream holds always has them. If the event
        // cannot be stored, they are removed again (an account without its event cannot log in
        // anyway: its login event is refused).
        auth::store_credentials(pool(ctx), id, email.as_str(), &hash).await.map_err(gql)?;
        let cmd = UserCommand::Register { email: email.clone(), role: role.into(), actor: actor(&p) };
        let r = match side(ctx)?.users.execute(&id.to_string(), cmd, &context(Some(&p), None)).await {
            Ok(r) => r,
            Err(e) => {
                let _ = sqlx::query("DELETE FROM credentials WHERE user_id = $1").bind(id).execute(pool(ctx)).await;
                return Err(command_error(e));
            }
        };
        principals(ctx).wait_applied(r.sequence, Duration::from_secs(1)).await;
        Ok(UserResult {
            user: User { id: ID(id.to_string()), email: email.as_str().to_owned(), role },
            sequence: seq(&r),
        })
    }

    /// Changes a user's role (admin).
    async fn change_role(&self, ctx: &Context<'_>, user_id: ID, role: RoleGql) -> ApiResult<UserResult> {
        let p = require(ctx, &[])?;
        let id = uuid::Uuid::parse_str(&user_id).map_err(|_| bad("user id must be a UUID"))?;
        let cmd = UserCommand::ChangeRole { role: role.into(), actor: actor(&p) };
        let r =
            side(ctx)?.users.execute(&id.to_string(), cmd, &context(Some(&p), None)).await.map_err(command_error)?;
        principals(ctx).wait_applied(r.sequence, Duration::from_secs(1)).await;
        // The email from the user's registration in the stream, opened with its key: the
        // aggregate keeps no personal data, the read model may lag, and a stored write
        // must not fail for want of PostgreSQL.
        let email = match side(ctx)?.registered_email(&id.to_string()).await {
            Ok(Some(email)) => email,
            Ok(None) => covenant_personal::FORGOTTEN.to_owned(),
            Err(e) => {
                tracing::warn!(error = %covenant_commands::error::chain(&e), user_id = %id, "the email of a role change's answer is shown sealed");
                super::personal::SEALED.to_owned()
            }
        };
        Ok(UserResult { user: User { id: ID(id.to_string()), email, role }, sequence: seq(&r) })
    }

    /// Forgets a user (admin; DESIGN section 11): appends `user.forgotten`, erases the
    /// user's key (its email and login addresses in the stream can no longer be read by
    /// anyone), deletes its credentials (it can no longer sign in) and the read models show
    /// `[forgotten]` in place of its personal data. The audit chain still verifies. Forgetting
    /// a forgotten user finishes what an interrupted forget left undone.
    async fn forget_user(&self, ctx: &Context<'_>, user_id: ID) -> ApiResult<bool> {
        let p = require(ctx, &[])?;
        let id = uuid::Uuid::parse_str(&user_id).map_err(|_| bad("user id must be a UUID"))?;
        let done = side(ctx)?
            .forget_user(&id.to_string(), actor(&p), &context(Some(&p), None))
            .await
            .map_err(command_error)?;
        auth::forget_credentials(pool(ctx), id).await.map_err(gql)?;
        if let Some(sequence) = done.sequence {
            principals(ctx).wait_applied(sequence, Duration::from_secs(1)).await;
        }
        Ok(true)
    }

    /// Registers a country (admin).
    async fn register_country(
        &self,
        ctx: &Context<'_>,
        code: String,
        name: String,
        gdp_usd: Usd,
        idempotency_key: Option<String>,
    ) -> ApiResult<CountryResult> {
        let p = require(ctx, &[])?;
        let code = CountryCode::parse(&code).map_err(bad)?;
        let cmd = CountryCommand::Register {
            code: code.clone(),
            name: Name::parse(&name).map_err(bad)?,
            gdp_usd: dollars(gdp_usd)?,
        };
        country_command(ctx, &p, &code, cmd, idempotency_key).await
    }

    /// Records a new GDP figure (steward).
    async fn update_gdp(
        &self,
        ctx: &Context<'_>,
        code: String,
        gdp_usd: Usd,
        idempotency_key: Option<String>,
    ) -> ApiResult<CountryResult> {
        let p = require(ctx, &[Role::Steward])?;
        let code = CountryCode::parse(&code).map_err(bad)?;
        let cmd = CountryCommand::UpdateGdp { gdp_usd: dollars(gdp_usd)? };
        country_command(ctx, &p, &code, cmd, idempotency_key).await
    }

    /// Creates a project in a registered country (steward).
    async fn create_project(
        &self,
        ctx: &Context<'_>,
        country_code: String,
        name: String,
        budget_usd: Usd,
        idempotency_key: Option<String>,
    ) -> ApiResult<ProjectResult> {
        let p = require(ctx, &[Role::Steward])?;
        let cmd = ProjectCommand::Create {
            country_code: CountryCode::parse(&country_code).map_err(bad)?,
            name: Name::parse(&name).map_err(bad)?,
            budget_usd: dollars(budget_usd)?,
        };
        // With an idempotency key the id must be stable across retries: derive it from the key.
        let id = match &idempotency_key {
            Some(k) => uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{}:{k}", p.user_id).as_bytes()),
            None => uuid::Uuid::new_v4(),
        };
        project_command(ctx, &p, id, cmd, idempotency_key).await
    }

    /// Changes a project's name, budget or status (steward).
    async fn update_project(
        &self,
        ctx: &Context<'_>,
        id: ID,
        name: Option<String>,
        budget_usd: Option<Usd>,
        status: Option<ProjectStatus>,
        idempotency_key: Option<String>,
    ) -> ApiResult<ProjectResult> {
        let p = require(ctx, &[Role::Steward])?;
        let id = uuid::Uuid::parse_str(&id).map_err(|_| bad("project id must be a UUID"))?;
        let cmd = ProjectCommand::Update {
            name: name.map(|n| Name::parse(&n)).transpose().map_err(bad)?,
            budget_usd: budget_usd.map(dollars).transpose()?,
            status: status.map(Into::into),
        };
        project_command(ctx, &p, id, cmd, idempotency_key).await
    }

    /// Soft-deletes a project (steward).
    async fn delete_project(
        &self,
        ctx: &Context<'_>,
        id: ID,
        idempotency_key: Option<String>,
    ) -> ApiResult<ProjectResult> {
        let p = require(ctx, &[Role::Steward])?;
        let id = uuid::Uuid::parse_str(&id).map_err(|_| bad("project id must be a UUID"))?;
        project_command(ctx, &p, id, ProjectCommand::Delete, idempotency_key).await
    }

    /// Rotates the JWT signing secret (admin): every token issued before is refused after.
    async fn rotate_secret(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let p = require(ctx, &[])?;
        // The new key is stored in PostgreSQL after its event: check it answers first.
        principals(ctx).reload_keys().await.map_err(gql)?;
        rotate(side(ctx)?, pool(ctx), actor(&p), &context(Some(&p), None)).await.map_err(|e| match e {
            RotateError::Command(c) => command_error(c),
            RotateError::Database(d) => gql(d),
        })?;
        principals(ctx).reload_keys().await.map_err(gql)?;
        Ok(true)
    }
}

/// Why a rotation failed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The event could not be appended (nothing changed).
    #[error("{0}")]
    Command(CommandError<SecurityError>),
    /// The new key could not be stored (the event records a key that is not in force).
    #[error("{0}")]
    Database(#[from] sqlx::Error),
}

/// Appends `security.secret_rotated` with a new key id, then puts that key in force.
///
/// # Errors
/// [`RotateError`].
pub async fn rotate(side: &CommandSide, pool: &PgPool, by: Actor, ctx: &CommandContext) -> Result<String, RotateError> {
    let kid = auth::new_kid();
    let cmd = SecurityCommand::RotateSecret { key_id: kid.clone(), actor: by };
    side.security.execute(covenant_domain::SECURITY_ID, cmd, ctx).await.map_err(RotateError::Command)?;
    auth::install_key(pool, &kid, &auth::new_secret()).await?;
    Ok(kid)
}

/// Runs a country command for `p` and answers with the country.
async fn country_command(
    ctx: &Context<'_>,
    p: &Principal,
    code: &CountryCode,
    cmd: CountryCommand,
    idempotency_key: Option<String>,
) -> ApiResult<CountryResult> {
    let r = side(ctx)?
        .countries
        .execute(code.as_str(), cmd, &context(Some(p), idempotency_key))
        .await
        .map_err(command_error)?;
    country_result(ctx, code.as_str(), &r).await
}

async fn country_result(ctx: &Context<'_>, code: &str, r: &Receipt) -> ApiResult<CountryResult> {
    let country = entity(ctx, "country", r, views::country(pool(ctx), code)).await.map(Into::into);
    Ok(CountryResult { country, sequence: seq(r) })
}

/// Runs a project command for `p` and answers with the project (when selected) and the
/// sequence.
async fn project_command(
    ctx: &Context<'_>,
    p: &Principal,
    id: uuid::Uuid,
    cmd: ProjectCommand,
    idempotency_key: Option<String>,
) -> ApiResult<ProjectResult> {
    let r = side(ctx)?
        .projects
        .execute(&id.to_string(), cmd, &context(Some(p), idempotency_key))
        .await
        .map_err(command_error)?;
    let project = entity(ctx, "project", &r, views::project(pool(ctx), id)).await.map(Into::into);
    Ok(ProjectResult { project, sequence: seq(&r) })
}
