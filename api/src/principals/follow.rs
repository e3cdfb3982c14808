//! Following the stream: the user and security subjects folded into the directory, and
//! the JWT keys reloaded on a timer and after a rotation.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use chrono::Utc;
use covenant_domain::{SecurityEvent, UserEvent, user::UserRegistered, user::UserRoleChanged};
use covenant_projections::event::{DomainEvent, ProjectedEvent};
use futures::StreamExt;
use tokio::sync::watch;

use super::{KEY_REFRESH, Principals, awaiting};

impl Principals {
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
}
