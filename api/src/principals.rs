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

use async_nats::jetstream::{self, consumer};
use chrono::{DateTime, Utc};
use covenant_domain::{Role, SecurityEvent, UserEvent, user::UserRegistered, user::UserRoleChanged};
use covenant_projections::event::{DomainEvent, ProjectedEvent};
use futures::StreamExt;
use sqlx::PgPool;
use tokio::sync::{Notify, watch};

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

    /// Loads the keys, then follows `stream`'s user and security subjects under `prefix`
    /// until `shutdown`; waits (at most 10 s) until the stream's history is folded in.
    pub async fn start(
        self: &Arc<Self>,
        js: jetstream::Context,
        stream: String,
        prefix: String,
        shutdown: watch::Receiver<bool>,
    ) {
        if let Err(e) = self.reload_keys().await {
            tracing::warn!(error = %e, "JWT keys not loaded at start (PostgreSQL down?); retrying in the background");
        }
        let _ = self.load_legacy_revocations().await;
        let (ready_tx, mut ready_rx) = watch::channel(false);
        tokio::spawn(self.clone().refresh_keys(shutdown.clone()));
        tokio::spawn(self.clone().follow(js, stream, prefix, shutdown, ready_tx));
        let _ = tokio::time::timeout(Duration::from_secs(10), ready_rx.wait_for(|r| *r)).await;
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

    async fn refresh_keys(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut failing = false;
        loop {
            // A rotation's new key is polled for quickly, for a while (the rotating instance
            // stores it just after appending the event); then at the usual pace.
            let awaited = awaiting(&self.read());
            let wait = if awaited { Duration::from_millis(100) } else { KEY_REFRESH };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.rotated.notified() => {}
                _ = shutdown.changed() => return,
            }
            let _ = self.load_legacy_revocations().await;
            match self.reload_keys().await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("JWT keys reloaded from PostgreSQL again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "JWT keys cannot be reloaded; the keys loaded before stay in force");
                }
                Err(_) => {}
            }
        }
    }

    /// Follows the user and security subjects with an ordered consumer, resuming after the
    /// last folded sequence whenever the consumer fails (NATS restarts, leader changes).
    /// One consumer per instance; a SIGKILLed instance's expires 30 s later (async-nats's
    /// inactivity threshold for ordered consumers).
    async fn follow(
        self: Arc<Self>,
        js: jetstream::Context,
        stream: String,
        prefix: String,
        mut shutdown: watch::Receiver<bool>,
        ready: watch::Sender<bool>,
    ) {
        let subjects = vec![format!("{prefix}.user.>"), format!("{prefix}.security.>")];
        let mut backoff = Duration::from_millis(100);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let from = self.read().applied + 1;
            let run = async {
                let s = js.get_stream(&stream).await.map_err(|e| e.to_string())?;
                let target = s.cached_info().state.last_sequence;
                if target < from {
                    self.mark_following(&ready);
                }
                let c = s
                    .create_consumer(consumer::pull::OrderedConfig {
                        filter_subjects: subjects.clone(),
                        deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from },
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                // Nothing on these subjects between `from` and the tip: caught up at once.
                let pending = c.cached_info().num_pending;
                if pending == 0 {
                    self.mark_following(&ready);
                }
                let mut messages = c.messages().await.map_err(|e| e.to_string())?;
                let mut left = pending;
                while let Some(m) = messages.next().await {
                    let m = m.map_err(|e| e.to_string())?;
                    let e = ProjectedEvent::from_message(&m)?;
                    self.fold(&e);
                    left = left.saturating_sub(1);
                    if left == 0 {
                        self.mark_following(&ready);
                    }
                }
                Err::<(), String>("the ordered consumer ended".into())
            };
            tokio::select! {
                r = run => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "following users and keys in the stream paused; resuming");
                    }
                }
                _ = shutdown.changed() => return,
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Waits (at most `timeout`) until the stream is folded in up to `seq`, so a role change
    /// or logout this instance just stored governs the caller's next request. Returns at
    /// once when the stream is not followed.
    pub async fn wait_applied(&self, seq: u64, timeout: Duration) {
        if !self.read().following {
            return;
        }
        let mut rx = self.applied.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|a| *a >= seq)).await;
    }

    fn mark_following(&self, ready: &watch::Sender<bool>) {
        self.write().following = true;
        let _ = ready.send(true);
    }

    /// Folds one event in.
    fn fold(&self, e: &ProjectedEvent) {
        let decoded = e.decode();
        let mut s = self.write();
        s.applied = s.applied.max(e.seq);
        self.applied.send_replace(s.applied);
        match decoded {
            Ok(DomainEvent::User(u)) => {
                let Ok(id) = uuid::Uuid::parse_str(&e.aggregate_id) else { return };
                match u {
                    UserEvent::Registered(UserRegistered { role, .. })
                    | UserEvent::RoleChanged(UserRoleChanged { new_role: role, .. }) => {
                        s.roles.insert(id, Some(role));
                    }
                    UserEvent::LoggedOut(l) => {
                        if let Some(jti) = l.token_id {
                            let until = e.occurred_at + chrono::Duration::seconds(crate::auth::TOKEN_TTL_SECS);
                            if until > Utc::now() {
                                s.revoked.insert(jti, until);
                            }
                        }
                    }
                    UserEvent::LoggedIn(_) => {}
                    UserEvent::Forgotten(_) => _ = s.roles.insert(id, None),
                }
            }
            // Rotation retires every older key: reload until the new one is seen.
            Ok(DomainEvent::Security(SecurityEvent::SecretRotated(r))) if !s.keys.contains_key(&r.key_id) => {
                s.awaited_kid = Some(r.key_id);
                s.awaited_since = Some(std::time::Instant::now());
                drop(s);
                self.rotated.notify_one();
            }
            _ => {}
        }
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
