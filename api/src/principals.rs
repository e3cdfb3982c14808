//! Who may do what, held in memory so that writes do not depend on PostgreSQL.
//!
//! Every authenticated request needs three facts: the JWT keys in force, the caller's
//! current role and whether the token was revoked. Reading them from PostgreSQL on each
//! request made every write fail while PostgreSQL was down, although the stream (the source
//! of truth) was up. This directory keeps them in memory:
//!
//! - **Roles and revocations** are folded from the event stream itself (`user.registered`,
//!   `user.role_change`, `user.logout` carrying the token id, `user.forgotten`) by one
//!   ordered consumer. A role change, a logout or a forget on any instance reaches every
//!   instance in milliseconds, with PostgreSQL up or down.
//! - **JWT keys** (secrets never enter the stream) are loaded from `jwt_keys` at start,
//!   reloaded every [`KEY_REFRESH`] and at once when a `security.secret_rotated` event
//!   arrives (until the new key id is seen). While PostgreSQL is down the keys last loaded
//!   stay in force.
//!
//! A user the directory has not seen yet (registered a moment ago, before the follower got
//! the event) is looked up in the `users` read model; only that can fail with PostgreSQL
//! down. Password logins need the `credentials` table and do fail while it is down.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use covenant_domain::Role;
use sqlx::PgPool;
use tokio::sync::{Notify, watch};

mod follow;

/// Checked tokens kept by their text: a few MB at most (a token is about 300 bytes). Only a
/// token this service signed gets in, so a client cannot fill it with forgeries; beyond
/// the bound, the least used are checked again when they come back.
pub const VERIFIED_TOKENS: usize = 16_384;

/// How often the JWT keys are reloaded from PostgreSQL (a rotation's event also reloads them).
pub const KEY_REFRESH: Duration = Duration::from_secs(5);

#[derive(Default)]
struct State {
    /// Keys in force, by `kid`.
    keys: HashMap<String, Vec<u8>>,
    /// The newest key in force (what new tokens are signed with).
    current: Option<(String, Vec<u8>)>,
    /// A rotation's key id not loaded yet, and since when it is awaited.
    awaited_kid: Option<String>,
    awaited_since: Option<std::time::Instant>,
    /// Whether the keys were loaded at least once.
    keys_loaded: bool,
    /// Current role of every user the stream has registered; `None` once forgotten
    /// (`user.forgotten`), whatever a read model still says.
    roles: HashMap<uuid::Uuid, Option<Role>>,
    /// Tokens ended by a logout, with the time after which they are expired anyway.
    revoked: HashMap<uuid::Uuid, DateTime<Utc>>,
    /// The last stream sequence folded in (0: not following, or nothing yet).
    applied: u64,
    /// Whether the follower has read everything the stream held when it started.
    following: bool,
    /// Whether `revoked_tokens` (revocations from before logouts carried their token) was
    /// loaded once.
    legacy_loaded: bool,
}

/// The in-memory directory of keys, roles and revoked tokens; see the module docs.
pub struct Principals {
    pool: PgPool,
    state: RwLock<State>,
    rotated: Notify,
    /// The last folded sequence, for waiters.
    applied: watch::Sender<u64>,
    /// When an unknown `kid` last made the keys reload (held while that reload runs).
    miss_reload: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// Held by each reload of the keys, so reloads apply in the order they read.
    reload_lock: tokio::sync::Mutex<()>,
    /// Tokens whose text was checked, by that text (see [`crate::auth::authenticate`]).
    verified: quick_cache::sync::Cache<Box<str>, Arc<crate::auth::Verified>>,
}

impl Principals {
    /// An empty directory over `pool`. Until [`Principals::start`] runs, every fact comes
    /// from PostgreSQL.
    pub fn new(pool: PgPool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            state: RwLock::new(State::default()),
            rotated: Notify::new(),
            applied: watch::channel(0).0,
            miss_reload: tokio::sync::Mutex::new(None),
            reload_lock: tokio::sync::Mutex::new(()),
            verified: quick_cache::sync::Cache::new(VERIFIED_TOKENS),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reloads the keys in force from `jwt_keys`.
    ///
    /// # Errors
    /// When PostgreSQL cannot be read (the keys loaded before stay in force).
    pub async fn reload_keys(&self) -> Result<(), sqlx::Error> {
        // One reload at a time: a read that began before a rotation committed must not
        // overwrite one that began after it (a retired key would come back in force).
        let _one = self.reload_lock.lock().await;
        let rows: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT kid, secret FROM jwt_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid")
                .fetch_all(&self.pool)
                .await?;
        let mut s = self.write();
        s.current = rows.first().cloned();
        if s.awaited_kid.as_ref().is_some_and(|k| rows.iter().any(|(kid, _)| kid == k)) {
            s.awaited_kid = None;
            s.awaited_since = None;
        }
        s.keys = rows.into_iter().collect();
        s.keys_loaded = true;
        Ok(())
    }

    /// Loads the unexpired rows of `revoked_tokens` once.
    async fn load_legacy_revocations(&self) -> Result<(), sqlx::Error> {
        if self.read().legacy_loaded {
            return Ok(());
        }
        let rows: Vec<(uuid::Uuid, DateTime<Utc>)> =
            sqlx::query_as("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > now()")
                .fetch_all(&self.pool)
                .await?;
        let mut s = self.write();
        s.revoked.extend(rows);
        s.legacy_loaded = true;
        Ok(())
    }

    /// The secret of key `kid` if it is in force; `Ok(None)` if it is not.
    ///
    /// # Errors
    /// When the key is unknown here and PostgreSQL cannot be asked.
    pub async fn key(&self, kid: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        let settled = {
            let s = self.read();
            if let Some(k) = s.keys.get(kid) {
                return Ok(Some(k.clone()));
            }
            s.following && s.keys_loaded && !awaiting(&s)
        };
        if !settled {
            // Perhaps a rotation this instance has not heard of yet.
            self.reload_keys().await?;
            return Ok(self.read().keys.get(kid).cloned());
        }
        // Followed and loaded with no rotation pending, the key is most likely not in force
        // (forged or retired). It may still be new without an event (the first key, made by
        // whichever process needed one first): look again, at most once a second, so forged
        // `kid`s cannot make every request read the database. Misses wait for a reload in
        // progress and then see what it found.
        let mut last = self.miss_reload.lock().await;
        if let Some(k) = self.read().keys.get(kid) {
            return Ok(Some(k.clone()));
        }
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return Ok(None);
        }
        *last = Some(std::time::Instant::now());
        match self.reload_keys().await {
            Ok(()) => Ok(self.read().keys.get(kid).cloned()),
            // Keys are made only with PostgreSQL up: one unknown while it is down is not in force.
            Err(_) => Ok(None),
        }
    }

    /// The key new tokens are signed with.
    ///
    /// # Errors
    /// When no key was ever loaded and PostgreSQL cannot be read.
    pub async fn signing_key(&self) -> Result<(String, Vec<u8>), sqlx::Error> {
        if let Some(k) = self.read().current.clone() {
            return Ok(k);
        }
        let k = crate::auth::current_key(&self.pool, None).await?;
        let _ = self.reload_keys().await;
        Ok(k)
    }

    /// The current role of `user`, or `None` if no such user is registered (or forgotten).
    ///
    /// # Errors
    /// When the directory has not seen `user` and PostgreSQL cannot be asked.
    pub async fn role(&self, user: uuid::Uuid) -> Result<Option<Role>, sqlx::Error> {
        if let Some(r) = self.read().roles.get(&user) {
            return Ok(*r);
        }
        // A forgotten user's row keeps its role beside the placeholder email: not a user.
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = $1 AND email <> $2")
            .bind(user)
            .bind(covenant_personal::FORGOTTEN)
            .fetch_optional(&self.pool)
            .await?;
        Ok(role.and_then(|r| r.parse().ok()))
    }

    /// Whether token `jti` was revoked: from memory once the stream is followed and the
    /// older revocations are loaded; from `revoked_tokens` before that.
    ///
    /// # Errors
    /// When PostgreSQL must be asked and cannot be.
    pub async fn revoked(&self, jti: uuid::Uuid) -> Result<bool, sqlx::Error> {
        {
            let s = self.read();
            if s.revoked.contains_key(&jti) {
                return Ok(true);
            }
            if s.following && s.legacy_loaded {
                return Ok(false);
            }
        }
        let row: Option<i32> = sqlx::query_scalar("SELECT 1 FROM revoked_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// What an earlier check of `token`'s text found, if it is kept.
    pub fn verified(&self, token: &str) -> Option<Arc<crate::auth::Verified>> {
        self.verified.get(token)
    }

    /// Keeps what the check of `token`'s text found.
    pub fn remember_verified(&self, token: &str, verified: Arc<crate::auth::Verified>) {
        self.verified.insert(token.into(), verified);
    }

    /// Records a revocation here at once (the logout's event tells every instance).
    pub fn revoke_here(&self, jti: uuid::Uuid, until: DateTime<Utc>) {
        let mut s = self.write();
        let now = Utc::now();
        s.revoked.retain(|_, t| *t > now);
        s.revoked.insert(jti, until);
    }
}

/// Whether a rotation's new key has been awaited for less than 30 s.
fn awaiting(s: &State) -> bool {
    s.awaited_since.is_some_and(|t| t.elapsed() < Duration::from_secs(30))
}
