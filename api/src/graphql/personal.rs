//! How `auditEvents` and the event feed show personal fields (DESIGN section 11).
//!
//! The audit read model and the stream hold them sealed. An admin sees them opened while
//! the user's key exists; any other signed-in caller sees `[sealed]`; once the user was
//! forgotten (its key erased) everyone sees `[forgotten]`. A key store that does not answer
//! shows `[sealed]`: never the plaintext by another way.

use std::collections::HashMap;

use async_graphql::Context;
use covenant_domain::{Role, personal_fields};
use covenant_personal::{DataKey, FORGOTTEN, KeyStore, Place, seal};
use serde_json::Value;

use super::types::AuditEvent;

/// What a caller who may not open a personal field sees in its place.
pub const SEALED: &str = "[sealed]";

/// Whether the caller is a signed-in admin.
pub fn is_admin(ctx: &Context<'_>) -> bool {
    ctx.data_opt::<Option<crate::auth::Principal>>().copied().flatten().is_some_and(|p| p.role == Role::Admin)
}

/// A user's key as far as this request knows it.
#[derive(Clone)]
enum Key {
    /// The key exists.
    Present(DataKey),
    /// No key: the user was forgotten.
    Erased,
    /// The key store did not answer.
    Unknown,
}

/// Replaces the sealed personal fields of `events` by what the caller may see.
pub async fn present(keys: &KeyStore, admin: bool, events: &mut [AuditEvent]) {
    let mut known: HashMap<String, Key> = HashMap::new();
    for e in events.iter_mut() {
        let mut tokens = e.subject.rsplitn(3, '.');
        let (Some(owner), Some(aggregate)) = (tokens.next(), tokens.next()) else { continue };
        let fields = personal_fields(aggregate, &e.event_type);
        let Some(payload) = e.payload.as_mut() else { continue };
        if fields.is_empty() || !fields.iter().any(|f| payload.0.get(*f).is_some_and(is_envelope)) {
            continue;
        }
        let key = match known.get(owner) {
            Some(k) => k.clone(),
            None => {
                let k = match keys.get(owner).await {
                    Ok(Some(k)) => Key::Present(k),
                    Ok(None) => Key::Erased,
                    Err(err) => {
                        tracing::warn!(error = %err, "personal fields shown sealed: the key store did not answer");
                        Key::Unknown
                    }
                };
                known.insert(owner.to_owned(), k.clone());
                k
            }
        };
        let opened = match (&key, admin) {
            (Key::Present(key), true) => serde_json::to_vec(&payload.0)
                .ok()
                .and_then(|bytes| {
                    seal::open(&bytes, fields, Place { owner, event_type: &e.event_type }, Some(key)).ok()
                })
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok()),
            _ => None,
        };
        match opened {
            Some(v) => payload.0 = v,
            None => {
                let shown = if matches!(key, Key::Erased) { FORGOTTEN } else { SEALED };
                for f in fields {
                    if let Some(v) = payload.0.get_mut(*f).filter(|v| is_envelope(v)) {
                        *v = Value::String(shown.to_owned());
                    }
                }
            }
        }
    }
}

fn is_envelope(v: &Value) -> bool {
    v.get("sealed").is_some()
}
