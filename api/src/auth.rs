//! Authentication: argon2 password hashes and HS256 JWTs with a `kid`, keys kept in
//! PostgreSQL (`jwt_keys`). Rotating retires every older key, so tokens signed before a
//! rotation are refused after it. A token's role is not trusted: the current role is looked
//! up on every request. Keys, roles and revocations are held in memory by
//! [`crate::principals::Principals`], so a signed-in user keeps writing while PostgreSQL is
//! down.

use std::sync::Arc;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Utc};
use covenant_domain::Role;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::principals::Principals;

/// How long a token lives.
pub const TOKEN_TTL_SECS: i64 = 3600;
/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 10;

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// User id.
    pub user_id: uuid::Uuid,
    /// Current role.
    pub role: Role,
    /// Token id (for logout).
    pub jti: uuid::Uuid,
    /// Token expiry.
    pub expires_at: DateTime<Utc>,
}

/// Why a request is not authenticated (the message never says which check failed).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed, forged, expired, revoked or signed by a retired key.
    #[error("invalid or expired token")]
    InvalidToken,
    /// Wrong email or password.
    #[error("invalid email or password")]
    BadCredentials,
    /// The database failed.
    #[error("authentication unavailable")]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    jti: String,
    iat: i64,
    exp: i64,
}

/// Hashes a password with argon2id and a fresh salt.
///
/// # Errors
/// A message when the password is outside 10..=256 bytes.
pub fn hash_password(password: &str) -> Result<String, String> {
    if password.len() < MIN_PASSWORD || password.len() > 256 {
        return Err(format!("password must be {MIN_PASSWORD} to 256 characters"));
    }
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Checks a password against a stored hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), hash).is_ok()
}

/// A random key id.
pub fn new_kid() -> String {
    format!("k{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The signing key in force, creating the first one (from `seed` if given) when none exists.
///
/// # Errors
/// Database errors.
pub async fn current_key(pool: &PgPool, seed: Option<&[u8]>) -> Result<(String, Vec<u8>), sqlx::Error> {
    if let Some(k) = sqlx::query_as::<_, (String, Vec<u8>)>(
        "SELECT kid, secret FROM jwt_keys WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?
    {
        return Ok(k);
    }
    let secret = seed.map(<[u8]>::to_vec).unwrap_or_else(new_secret);
    let kid = new_kid();
    install_key(pool, &kid, &secret).await?;
    Ok((kid, secret))
}

/// Makes `kid` the only key in force (every older key is retired).
///
/// # Errors
/// Database errors.
pub async fn install_key(pool: &PgPool, kid: &str, secret: &[u8]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE jwt_keys SET retired_at = now() WHERE retired_at IS NULL").execute(&mut *tx).await?;
    sqlx::query("INSERT INTO jwt_keys (kid, secret) VALUES ($1, $2)").bind(kid).bind(secret).execute(&mut *tx).await?;
    tx.commit().await
}

/// A fresh random secret for a rotation.
pub fn new_secret() -> Vec<u8> {
    rand::rng().random::<[u8; 32]>().to_vec()
}

/// Issues a token for `user_id` signed by the key in force.
///
/// # Errors
/// Database errors (only when no key was ever loaded).
pub async fn issue(principals: &Principals, user_id: uuid::Uuid) -> Result<(String, DateTime<Utc>), AuthError> {
    let (kid, secret) = principals.signing_key().await?;
    let now = Utc::now();
    let exp = now + chrono::Duration::seconds(TOKEN_TTL_SECS);
    let claims = Claims {
        sub: user_id.to_string(),
        jti: uuid::Uuid::new_v4().to_string(),
        iat: now.timestamp(),
        exp: exp.timestamp(),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid);
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret))
        .map_err(|_| AuthError::InvalidToken)?;
    Ok((token, exp))
}

/// Checks a bearer token: HS256 only, a `kid` in force, signature, expiry, not revoked,
/// and a registered user whose current role is returned.
///
/// A token whose header, signature and claims were checked once is kept, by its exact
/// text, in [`Principals::verified`]; later requests with it skip the decoding and the
/// HMAC (53k instructions per request under callgrind, a seventh of a signed-in request's
/// server and client work together; 2k on a hit). What can change after that first
/// check is checked on every request, cached or not: that its key is still in force with
/// the same secret, that it has not expired, that it was not revoked, and the user's role.
///
/// # Errors
/// [`AuthError::InvalidToken`] for any failed check; [`AuthError::Database`] when a fact
/// not held in memory could not be read.
pub async fn authenticate(principals: &Principals, token: &str) -> Result<Principal, AuthError> {
    let verified = match principals.verified(token) {
        Some(v) => {
            let secret = principals.key(&v.kid).await?.ok_or(AuthError::InvalidToken)?;
            if secret != v.secret {
                return Err(AuthError::InvalidToken);
            }
            v
        }
        None => {
            let v = Arc::new(verify(principals, token).await?);
            principals.remember_verified(token, v.clone());
            v
        }
    };
    // As `jsonwebtoken` checks it with no leeway: expired once `exp` is in the past.
    if verified.exp < jsonwebtoken::get_current_timestamp() as i64 {
        return Err(AuthError::InvalidToken);
    }
    if principals.revoked(verified.jti).await? {
        return Err(AuthError::InvalidToken);
    }
    let role = principals.role(verified.user_id).await?.ok_or(AuthError::InvalidToken)?;
    let expires_at = DateTime::from_timestamp(verified.exp, 0).unwrap_or_default();
    Ok(Principal { user_id: verified.user_id, role, jti: verified.jti, expires_at })
}

/// What a token's text proves once its signature is checked: kept by
/// [`Principals::remember_verified`].
#[derive(Debug)]
pub struct Verified {
    /// The key that signed it, and that key's secret when it was checked.
    kid: String,
    secret: Vec<u8>,
    user_id: uuid::Uuid,
    jti: uuid::Uuid,
    /// Expiry, in seconds since the epoch.
    exp: i64,
}

/// The checks of a token's text: header (HS256, a `kid` in force), signature, required
/// claims, expiry.
async fn verify(principals: &Principals, token: &str) -> Result<Verified, AuthError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
    if header.alg != Algorithm::HS256 {
        return Err(AuthError::InvalidToken);
    }
    let kid = header.kid.ok_or(AuthError::InvalidToken)?;
    // Bound what a forged header can make us look up.
    if kid.len() > 64 {
        return Err(AuthError::InvalidToken);
    }
    let secret = principals.key(&kid).await?.ok_or(AuthError::InvalidToken)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&secret), &validation)
        .map_err(|_| AuthError::InvalidToken)?;
    let user_id = uuid::Uuid::parse_str(&data.claims.sub).map_err(|_| AuthError::InvalidToken)?;
    let jti = uuid::Uuid::parse_str(&data.claims.jti).map_err(|_| AuthError::InvalidToken)?;
    Ok(Verified { kid, secret, user_id, jti, exp: data.claims.exp })
}

/// Ends a token before its expiry.
///
/// # Errors
/// Database errors.
pub async fn revoke(pool: &PgPool, p: &Principal) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(p.jti)
        .bind(p.expires_at)
        .execute(pool)
        .await?;
    Ok(())
}

/// Checks `email` / `password` and returns the user id.
///
/// # Errors
/// [`AuthError::BadCredentials`] for an unknown email or a wrong password (same message).
pub async fn check_credentials(pool: &PgPool, email: &str, password: &str) -> Result<uuid::Uuid, AuthError> {
    let row: Option<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT user_id, password_hash FROM credentials WHERE email = $1")
            .bind(email.trim().to_lowercase())
            .fetch_optional(pool)
            .await?;
    // An unknown account costs the same password check as a known one (against a hash
    // no password matches), so the answer's timing does not reveal which accounts exist.
    // The check (tens of milliseconds of argon2) runs off the async workers.
    let (id, hash) = row.map_or((None, None), |(id, hash)| (Some(id), Some(hash)));
    let password = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || {
        verify_password(&password, hash.as_deref().unwrap_or(DUMMY_HASH.as_str())) && hash.is_some()
    })
    .await
    .unwrap_or(false);
    match id {
        Some(id) if matches => Ok(id),
        _ => Err(AuthError::BadCredentials),
    }
}

/// A hash with the same parameters as real ones, of a random password no one knows:
/// what an unknown account's password is checked against.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let password = uuid::Uuid::new_v4().simple().to_string();
    hash_password(&password).unwrap_or_default()
});

/// Computes the dummy hash now (one argon2 hash, tens of milliseconds), so the first
/// login for an unknown account does not take twice as long as any other.
pub fn prepare_dummy_hash() {
    std::sync::LazyLock::force(&DUMMY_HASH);
}

/// Stores a user's credentials.
///
/// # Errors
/// Database errors (a duplicate email included).
pub async fn store_credentials(pool: &PgPool, user_id: uuid::Uuid, email: &str, hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO credentials (user_id, email, password_hash) VALUES ($1, $2, $3)")
        .bind(user_id)
        .bind(email)
        .bind(hash)
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes a forgotten user's credentials (email and password hash): the user can no longer
/// sign in, and the email is gone from PostgreSQL.
///
/// # Errors
/// Database errors.
pub async fn forget_credentials(pool: &PgPool, user_id: uuid::Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM credentials WHERE user_id = $1").bind(user_id).execute(pool).await?;
    Ok(())
}
