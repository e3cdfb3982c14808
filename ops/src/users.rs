//! Bootstrapping users and rotating secrets from the CLI (as the `system` actor).

use anyhow::{Context, Result, bail};
use covenant_api::auth;
use covenant_commands::{CommandContext, CommandSide};
use covenant_domain::{Actor, Email, Role, UserCommand};
use rand::Rng;
use sqlx::PgPool;

/// The demo administrator's login.
pub const DEMO_ADMIN: &str = "admin@covenant.local";

/// Registers a user (event `user.registered`, credentials in PostgreSQL).
///
/// # Errors
/// Invalid email or password, an existing email, or a failed command.
pub async fn create(side: &CommandSide, pool: &PgPool, email: &str, role: Role, password: &str) -> Result<uuid::Uuid> {
    let email = Email::parse(email)?;
    let hash = auth::hash_password(password).map_err(anyhow::Error::msg)?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM credentials WHERE email = $1")
        .bind(email.as_str())
        .fetch_optional(pool)
        .await?;
    if exists.is_some() {
        bail!("a user with email {} already exists", email.as_str());
    }
    let id = uuid::Uuid::new_v4();
    let cmd = UserCommand::Register { email: email.clone(), role, actor: Actor::System };
    side.users
        .execute(&id.to_string(), cmd, &CommandContext::system())
        .await
        .map_err(|e| anyhow::anyhow!("registering the user: {e}"))?;
    auth::store_credentials(pool, id, email.as_str(), &hash).await.context("storing credentials")?;
    Ok(id)
}

/// Creates the demo admin with a random password unless it exists; returns the password
/// when it was created.
///
/// # Errors
/// As [`create`].
pub async fn ensure_demo_admin(side: &CommandSide, pool: &PgPool) -> Result<Option<String>> {
    let exists: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM credentials WHERE email = $1").bind(DEMO_ADMIN).fetch_optional(pool).await?;
    if exists.is_some() {
        return Ok(None);
    }
    let password: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(20).map(char::from).collect();
    create(side, pool, DEMO_ADMIN, Role::Admin, &password).await?;
    Ok(Some(password))
}

/// Forgets user `id` (DESIGN section 11): `user.forgotten`, its key erased, its credentials
/// deleted. Running it again finishes an interrupted forget.
///
/// # Errors
/// An unknown user, or a failed command, key store or database.
pub async fn forget(side: &CommandSide, pool: &PgPool, id: uuid::Uuid) -> Result<covenant_commands::Forgotten> {
    let done = side
        .forget_user(&id.to_string(), Actor::System, &CommandContext::system())
        .await
        .map_err(|e| anyhow::anyhow!("forgetting user {id}: {e}"))?;
    auth::forget_credentials(pool, id).await.context("deleting the credentials")?;
    Ok(done)
}

/// Rotates the JWT secret (event `security.secret_rotated`); returns the new key id.
///
/// # Errors
/// When the event cannot be appended or the key stored.
pub async fn rotate_secret(side: &CommandSide, pool: &PgPool) -> Result<String> {
    covenant_api::graphql::mutation::rotate(side, pool, Actor::System, &CommandContext::system())
        .await
        .map_err(|e| anyhow::anyhow!("rotating the secret: {e}"))
}
