//! The parallel side of verification: each stored event's audit headers read and its
//! hashes worked out ([`Checked`]), on any thread, before the sequential checks.

use super::tables::{Subject, parse_uuid, subject_key};
use crate::encoding::hash_from_b64;
use crate::entry::{EntryFields, Hash, entry_input, genesis, headers as h};
use crate::sha::{Assembly, sha256, sha256_n};

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

/// The audit headers of one message, borrowed (the verifier's hot path allocates only
/// the subject).
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
    /// The slot of audit header `name` (exact name) with its position (0..9, distinct per
    /// header, for callers that refuse repeats); `None` for any other name.
    pub fn slot(&mut self, name: &str) -> Option<(u8, &mut Option<&'a str>)> {
        Some(match name {
            h::AUDIT_V => (0, &mut self.audit_v),
            h::AUDIT_PREV => (1, &mut self.prev),
            h::AUDIT_HASH => (2, &mut self.hash),
            h::EVENT_ID => (3, &mut self.event_id),
            h::EVENT_TYPE => (4, &mut self.event_type),
            h::AGGREGATE_VERSION => (5, &mut self.version),
            h::OCCURRED_AT => (6, &mut self.occurred_at),
            h::ACTOR => (7, &mut self.actor),
            h::CONTENT_TYPE => (8, &mut self.content_type),
            _ => return None,
        })
    }

    /// Takes `value` when `name` is an audit header, for a source that walks its headers
    /// once rather than looking each one up; `false` for any other name.
    pub fn set(&mut self, name: &str, value: &'a str) -> bool {
        self.slot(name).map(|(_, slot)| *slot = Some(value)).is_some()
    }
}

impl Record {
    /// The record's headers, borrowed.
    pub fn fields(&self) -> Fields<'_> {
        Fields {
            audit_v: self.audit_v.as_deref(),
            prev: self.prev.as_deref(),
            hash: self.hash.as_deref(),
            event_id: self.event_id.as_deref(),
            event_type: self.event_type.as_deref(),
            version: self.version.as_deref(),
            occurred_at: self.occurred_at.as_deref(),
            actor: self.actor.as_deref(),
            content_type: self.content_type.as_deref(),
        }
    }
}

/// A message with its hashes worked out (the part that runs in parallel): only what the
/// sequential checks need. The default is an empty slot for [`check_start`].
#[derive(Debug)]
pub struct Checked {
    pub(super) seq: u64,
    pub(super) subject: Subject,
    /// The subject's key in the verifier's aggregate table.
    pub(super) key: [u64; 2],
    /// `h_0` of the subject, worked out here for a first event (version 1).
    pub(super) genesis: Option<Hash>,
    /// The parsed claims, or why they do not parse.
    pub(super) claims: Result<Claims, String>,
    /// Whether `Audit-Hash` recomputes from the headers and payload.
    pub(super) content_ok: bool,
    /// Whether the payload's hash differs from the one written beside it.
    pub(super) payload_differs: bool,
}

impl Default for Checked {
    fn default() -> Self {
        Self {
            seq: 0,
            subject: Subject::default(),
            key: [0; 2],
            genesis: None,
            claims: Err(String::new()),
            content_ok: false,
            payload_differs: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Claims {
    pub(super) prev: Hash,
    pub(super) hash: Hash,
    pub(super) version: u64,
    pub(super) event_id: u128,
}

/// Works out a record's hashes (pure; [`Verifier::push`](super::Verifier::push) calls it, and callers with many
/// records may call it on several threads and pass the results to [`Verifier::push_checked`](super::Verifier::push_checked)).
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

/// [`check`] on borrowed headers: `payload_sha256` is the payload's hash, `written` the
/// hash stored beside it, if any.
pub fn check_fields(
    origin: &str,
    seq: u64,
    subject: &str,
    f: &Fields<'_>,
    payload_sha256: Hash,
    written: Option<Hash>,
) -> Checked {
    let mut out = Checked::default();
    thread_local! {
        static INPUT: std::cell::RefCell<Assembly> = std::cell::RefCell::new(Assembly::default());
    }
    INPUT.with_borrow_mut(|input| {
        let started = check_start(&mut out, input, origin, seq, subject, f);
        check_finish([&mut out], [input], [started], [payload_sha256], [written]);
    });
    out
}

/// The first half of [`check_fields`], for a caller that hashes two messages side by
/// side: fills `out` with all but the content check, and assembles into `input` the entry
/// hash's input but its last 32 bytes (the payload's hash, which the caller may not have
/// worked out yet). Returns whether there is an entry hash to work out (the claims parse).
pub fn check_start(
    out: &mut Checked,
    input: &mut Assembly,
    origin: &str,
    seq: u64,
    subject: &str,
    f: &Fields<'_>,
) -> bool {
    let claims = parse_claims(f);
    input.clear();
    let started = claims.as_ref().is_ok_and(|c| {
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
        entry_input(&fields, &c.prev, input).is_ok()
    });
    out.genesis = match &claims {
        Ok(c) if c.version == 1 => genesis(origin, subject).ok(),
        _ => None,
    };
    out.seq = seq;
    out.key = subject_key(subject);
    out.subject.set(subject);
    out.claims = claims;
    out.content_ok = false;
    started
}

/// The second half: for messages [`check_start`] began (one or two), appends each
/// payload's hash to its input, hashes the inputs side by side (see
/// [`crate::sha::sha256_n`]) and sets the content check; `written` is the payload hash
/// stored beside each, if any.
pub fn check_finish<const N: usize>(
    outs: [&mut Checked; N],
    inputs: [&mut Assembly; N],
    started: [bool; N],
    payload_sha256: [Hash; N],
    written: [Option<Hash>; N],
) {
    for k in 0..N {
        if started[k] {
            inputs[k].extend(&[&payload_sha256[k]]);
        }
    }
    let mut computed: [Option<Hash>; N] = [None; N];
    if started.iter().all(|s| *s) {
        let hashes: [Hash; N] = sha256_n(std::array::from_fn(|k| inputs[k].bytes()));
        for (c, h) in computed.iter_mut().zip(hashes) {
            *c = Some(h);
        }
    } else {
        for k in 0..N {
            computed[k] = started[k].then(|| sha256(inputs[k].bytes()));
        }
    }
    for (k, out) in outs.into_iter().enumerate() {
        out.content_ok = matches!((&out.claims, computed[k]), (Ok(c), Some(h)) if h == c.hash);
        out.payload_differs = written[k].is_some_and(|w| w != payload_sha256[k]);
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
    let event_id =
        f.event_id.and_then(parse_uuid).ok_or_else(|| format!("{} is missing or not a UUID", h::EVENT_ID))?;
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
