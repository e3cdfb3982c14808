//! Events as they travel: a [`NewEvent`] to append, the [`ChainTip`] it extends, and a
//! [`StoredEvent`] read back with its audit headers parsed.

use async_nats::HeaderMap;
use bytes::Bytes;
use covenant_audit::entry::headers as h;
use covenant_audit::{EntryFields, Hash, entry_hash, genesis, payload_hash};
use covenant_audit::{hash_from_b64, hash_to_b64};

use crate::error::LogError;

/// Operational header: the idempotency key of the command that produced the event.
pub const IDEMPOTENCY_KEY: &str = "Covenant-Idempotency-Key";

/// An event ready to be appended (its audit headers are computed at append time).
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Unique id (UUID v4).
    pub event_id: uuid::Uuid,
    /// Stored type name.
    pub event_type: String,
    /// RFC 3339 UTC with nanoseconds, as the audit vectors write it.
    pub occurred_at: String,
    /// User id or `system`.
    pub actor: String,
    /// Payload media type.
    pub content_type: String,
    /// Payload bytes, hashed exactly as stored.
    pub payload: Bytes,
}

impl NewEvent {
    /// A JSON event decided now by `actor`.
    pub fn json(event_type: impl Into<String>, actor: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            event_id: uuid::Uuid::new_v4(),
            event_type: event_type.into(),
            occurred_at: now_rfc3339(),
            actor: actor.into(),
            content_type: "application/json".into(),
            payload: payload.into(),
        }
    }
}

/// The current time as `2026-11-22T10:00:00.000000000Z`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The end of one aggregate's chain: what the next append must extend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainTip {
    /// Stream sequence of the subject's last message (0 = no message yet).
    pub last_seq: u64,
    /// Aggregate version of that message (0 = none).
    pub version: u64,
    /// Its `Audit-Hash` (`h_0` when empty).
    pub hash: Hash,
}

impl ChainTip {
    /// The tip of an empty subject.
    ///
    /// # Errors
    /// [`LogError::Invalid`] when the subject is too long to hash.
    pub fn genesis(origin: &str, subject: &str) -> Result<Self, LogError> {
        let hash = genesis(origin, subject).map_err(|e| LogError::Invalid(e.to_string()))?;
        Ok(Self { last_seq: 0, version: 0, hash })
    }

    /// The tip after `event`.
    pub fn after(event: &StoredEvent) -> Self {
        Self { last_seq: event.seq, version: event.version, hash: event.hash }
    }
}

/// An event read back from the stream, its audit headers parsed (not yet verified).
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Stream sequence.
    pub seq: u64,
    /// Subject.
    pub subject: String,
    /// Aggregate version (k).
    pub version: u64,
    /// `Event-Id`.
    pub event_id: String,
    /// `Event-Type`.
    pub event_type: String,
    /// `Occurred-At`.
    pub occurred_at: String,
    /// `Actor`.
    pub actor: String,
    /// `Content-Type`.
    pub content_type: String,
    /// `Audit-Prev`.
    pub prev: Hash,
    /// `Audit-Hash`.
    pub hash: Hash,
    /// Payload bytes as stored.
    pub payload: Bytes,
    /// All headers, operational ones included.
    pub headers: HeaderMap,
}

impl StoredEvent {
    /// Parses a raw stream message.
    ///
    /// # Errors
    /// [`LogError::Corrupt`] naming the missing or malformed header.
    pub fn parse(seq: u64, subject: &str, headers: HeaderMap, payload: Bytes) -> Result<Self, LogError> {
        let get = |name: &str| -> Result<String, LogError> {
            headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .ok_or_else(|| LogError::Corrupt { seq, reason: format!("missing header {name}") })
        };
        let hash_of = |name: &str| -> Result<Hash, LogError> {
            hash_from_b64(&get(name)?).map_err(|e| LogError::Corrupt { seq, reason: format!("{name}: {e}") })
        };
        let version = get(h::AGGREGATE_VERSION)?
            .parse()
            .map_err(|_| LogError::Corrupt { seq, reason: "Aggregate-Version is not a number".into() })?;
        Ok(Self {
            seq,
            subject: subject.to_owned(),
            version,
            event_id: get(h::EVENT_ID)?,
            event_type: get(h::EVENT_TYPE)?,
            occurred_at: get(h::OCCURRED_AT)?,
            actor: get(h::ACTOR)?,
            content_type: get(h::CONTENT_TYPE)?,
            prev: hash_of(h::AUDIT_PREV)?,
            hash: hash_of(h::AUDIT_HASH)?,
            payload,
            headers,
        })
    }

    /// The hashed fields of this event.
    pub fn fields<'a>(&'a self, origin: &'a str) -> EntryFields<'a> {
        EntryFields {
            origin,
            subject: &self.subject,
            version: self.version,
            event_id: &self.event_id,
            event_type: &self.event_type,
            occurred_at: &self.occurred_at,
            actor: &self.actor,
            content_type: &self.content_type,
        }
    }

    /// Recomputes `h_k` from the stored fields, `Audit-Prev` and payload bytes.
    ///
    /// # Errors
    /// [`LogError::Corrupt`] when a field is too long to hash.
    pub fn recompute_hash(&self, origin: &str) -> Result<Hash, LogError> {
        entry_hash(&self.fields(origin), &self.prev, &payload_hash(&self.payload))
            .map_err(|e| LogError::Corrupt { seq: self.seq, reason: e.to_string() })
    }
}

/// Computes the chain for `events` after `tip` and returns, per event, its headers (the
/// audit set plus `extra`) and its hash.
///
/// # Errors
/// [`LogError::Invalid`] when a field is too long to hash.
pub fn chain_headers(
    origin: &str,
    subject: &str,
    tip: &ChainTip,
    events: &[NewEvent],
    extra: &[(String, String)],
) -> Result<Vec<(HeaderMap, Hash)>, LogError> {
    let mut prev = tip.hash;
    let mut out = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let version = tip.version + 1 + i as u64;
        let event_id = e.event_id.to_string();
        let fields = EntryFields {
            origin,
            subject,
            version,
            event_id: &event_id,
            event_type: &e.event_type,
            occurred_at: &e.occurred_at,
            actor: &e.actor,
            content_type: &e.content_type,
        };
        let payload_sha256 = payload_hash(&e.payload);
        let hash = entry_hash(&fields, &prev, &payload_sha256).map_err(|err| LogError::Invalid(err.to_string()))?;
        let mut hm = HeaderMap::new();
        hm.insert(h::AUDIT_V, h::VERSION_1);
        hm.insert(h::AUDIT_PREV, hash_to_b64(&prev).as_str());
        hm.insert(h::AUDIT_HASH, hash_to_b64(&hash).as_str());
        hm.insert(h::EVENT_ID, event_id.as_str());
        hm.insert(h::EVENT_TYPE, e.event_type.as_str());
        hm.insert(h::AGGREGATE_VERSION, version.to_string().as_str());
        hm.insert(h::OCCURRED_AT, e.occurred_at.as_str());
        hm.insert(h::ACTOR, e.actor.as_str());
        hm.insert(h::CONTENT_TYPE, e.content_type.as_str());
        hm.insert(h::AUDIT_PAYLOAD, hash_to_b64(&payload_sha256).as_str());
        for (k, v) in extra {
            hm.insert(k.as_str(), v.as_str());
        }
        out.push((hm, hash));
        prev = hash;
    }
    Ok(out)
}
