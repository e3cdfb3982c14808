//! One stored event as the verifier reads it ([`Record`] owned, [`Fields`] borrowed), and
//! [`check`]: its headers parsed and its hashes worked out, on any thread, before the
//! verifier's sequential checks take it in stream order.

use uuid::Uuid;

use crate::entry::{EntryFields, entry_hash, genesis, headers as h};
use crate::hash::{Hash, hash_from_b64};

/// One stored event as the verifier reads it: its stream position, subject, audit headers
/// as stored, and its payload's SHA-256 (computed from the payload, or the value an export
/// kept for a redacted payload).
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Stream sequence.
    pub seq: u64,
    /// Subject.
    pub subject: String,
    /// `Audit-V`.
    pub audit_v: Option<String>,
    /// `Audit-Prev`.
    pub prev: Option<String>,
    /// `Audit-Hash`.
    pub hash: Option<String>,
    /// `Event-Id`.
    pub event_id: Option<String>,
    /// `Event-Type`.
    pub event_type: Option<String>,
    /// `Aggregate-Version`.
    pub version: Option<String>,
    /// `Occurred-At`.
    pub occurred_at: Option<String>,
    /// `Actor`.
    pub actor: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// SHA-256 of the payload.
    pub payload_sha256: Hash,
    /// The payload hash written beside it (`Audit-Payload-Sha256`, or the bundle's field
    /// for a payload that is present), if any: a disagreement means the payload changed.
    pub written_payload_sha256: Option<Hash>,
}

impl Record {
    /// Reads the audit headers with `get` (a header lookup).
    pub fn from_headers<'a>(
        seq: u64,
        subject: &str,
        get: impl Fn(&str) -> Option<&'a str>,
        payload_sha256: Hash,
    ) -> Self {
        let s = |name: &str| get(name).map(str::to_owned);
        Self {
            seq,
            subject: subject.to_owned(),
            audit_v: s(h::AUDIT_V),
            prev: s(h::AUDIT_PREV),
            hash: s(h::AUDIT_HASH),
            event_id: s(h::EVENT_ID),
            event_type: s(h::EVENT_TYPE),
            version: s(h::AGGREGATE_VERSION),
            occurred_at: s(h::OCCURRED_AT),
            actor: s(h::ACTOR),
            content_type: s(h::CONTENT_TYPE),
            written_payload_sha256: get(h::AUDIT_PAYLOAD).and_then(|v| hash_from_b64(v).ok()),
            payload_sha256,
        }
    }

    /// The header pairs this record holds (an export writes them).
    pub fn header_pairs(&self) -> Vec<(&'static str, &str)> {
        [
            (h::AUDIT_V, &self.audit_v),
            (h::AUDIT_PREV, &self.prev),
            (h::AUDIT_HASH, &self.hash),
            (h::EVENT_ID, &self.event_id),
            (h::EVENT_TYPE, &self.event_type),
            (h::AGGREGATE_VERSION, &self.version),
            (h::OCCURRED_AT, &self.occurred_at),
            (h::ACTOR, &self.actor),
            (h::CONTENT_TYPE, &self.content_type),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

/// The audit headers of one message, borrowed from where they were read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    /// `Audit-V`.
    pub audit_v: Option<&'a str>,
    /// `Audit-Prev`.
    pub prev: Option<&'a str>,
    /// `Audit-Hash`.
    pub hash: Option<&'a str>,
    /// `Event-Id`.
    pub event_id: Option<&'a str>,
    /// `Event-Type`.
    pub event_type: Option<&'a str>,
    /// `Aggregate-Version`.
    pub version: Option<&'a str>,
    /// `Occurred-At`.
    pub occurred_at: Option<&'a str>,
    /// `Actor`.
    pub actor: Option<&'a str>,
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
}

impl<'a> Fields<'a> {
    /// Takes `value` when `name` is an audit header (exact name), for a source that walks
    /// its headers once rather than looking each one up; `false` for any other name.
    pub fn set(&mut self, name: &str, value: &'a str) -> bool {
        let slot = match name {
            h::AUDIT_V => &mut self.audit_v,
            h::AUDIT_PREV => &mut self.prev,
            h::AUDIT_HASH => &mut self.hash,
            h::EVENT_ID => &mut self.event_id,
            h::EVENT_TYPE => &mut self.event_type,
            h::AGGREGATE_VERSION => &mut self.version,
            h::OCCURRED_AT => &mut self.occurred_at,
            h::ACTOR => &mut self.actor,
            h::CONTENT_TYPE => &mut self.content_type,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

impl Record {
    /// The record's headers, borrowed.
    pub fn fields(&self) -> Fields<'_> {
        let mut fields = Fields::default();
        for (name, value) in self.header_pairs() {
            fields.set(name, value);
        }
        fields
    }
}

/// A record with its headers parsed and its hashes worked out: what the sequential checks
/// need of it.
#[derive(Debug, Clone)]
pub struct Checked {
    pub(super) seq: u64,
    pub(super) subject: String,
    /// `h_0` of the subject when this is a first event (version 1).
    pub(super) genesis: Option<Hash>,
    /// The parsed claims, or why they do not parse.
    pub(super) claims: Result<Claims, String>,
    /// Whether `Audit-Hash` recomputes from the headers and payload.
    pub(super) content_ok: bool,
    /// Whether the payload's hash differs from the one written beside it.
    pub(super) payload_differs: bool,
}

/// What an event's headers claim about its place in the chain.
#[derive(Debug, Clone, Copy)]
pub(super) struct Claims {
    pub(super) prev: Hash,
    pub(super) hash: Hash,
    pub(super) version: u64,
    pub(super) event_id: Uuid,
}

/// Parses and hashes `record` (pure: callers with many records may check them on several
/// threads and push the results in stream order).
pub fn check(origin: &str, record: &Record) -> Checked {
    check_fields(
        origin,
        record.seq,
        &record.subject,
        &record.fields(),
        record.payload_sha256,
        record.written_payload_sha256,
    )
}

/// [`check`] of borrowed headers: `payload_sha256` is the payload's hash, `written` the
/// hash stored beside it, if any.
pub fn check_fields(
    origin: &str,
    seq: u64,
    subject: &str,
    f: &Fields<'_>,
    payload_sha256: Hash,
    written: Option<Hash>,
) -> Checked {
    let claims = parse_claims(f);
    let content_ok = claims.as_ref().is_ok_and(|c| {
        let fields = EntryFields {
            origin,
            subject,
            version: c.version,
            event_id: f.event_id.unwrap_or_default(),
            event_type: f.event_type.unwrap_or_default(),
            occurred_at: f.occurred_at.unwrap_or_default(),
            actor: f.actor.unwrap_or_default(),
            content_type: f.content_type.unwrap_or_default(),
        };
        entry_hash(&fields, &c.prev, &payload_sha256).is_ok_and(|h| h == c.hash)
    });
    Checked {
        seq,
        subject: subject.to_owned(),
        genesis: match &claims {
            Ok(c) if c.version == 1 => genesis(origin, subject).ok(),
            _ => None,
        },
        claims,
        content_ok,
        payload_differs: written.is_some_and(|w| w != payload_sha256),
    }
}

fn parse_claims(f: &Fields<'_>) -> Result<Claims, String> {
    if f.audit_v != Some(h::VERSION_1) {
        return Err(format!("{} is {:?}, not {}", h::AUDIT_V, f.audit_v, h::VERSION_1));
    }
    let hash_of = |name: &str, v: Option<&str>| {
        v.and_then(|v| hash_from_b64(v).ok()).ok_or_else(|| format!("{name} is missing or not a hash"))
    };
    let prev = hash_of(h::AUDIT_PREV, f.prev)?;
    let hash = hash_of(h::AUDIT_HASH, f.hash)?;
    let version = f
        .version
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v >= 1)
        .ok_or_else(|| format!("{} is missing or not a version", h::AGGREGATE_VERSION))?;
    // The hyphenated form only, as the appender writes it (the crate also reads others).
    let event_id = f
        .event_id
        .filter(|v| v.len() == 36)
        .and_then(|v| Uuid::try_parse(v).ok())
        .ok_or_else(|| format!("{} is missing or not a UUID", h::EVENT_ID))?;
    for (name, v) in [
        (h::EVENT_TYPE, f.event_type),
        (h::OCCURRED_AT, f.occurred_at),
        (h::ACTOR, f.actor),
        (h::CONTENT_TYPE, f.content_type),
    ] {
        if v.is_none() {
            return Err(format!("{name} is missing"));
        }
    }
    Ok(Claims { prev, hash, version, event_id })
}
