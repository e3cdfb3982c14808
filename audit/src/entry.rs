//! The per-aggregate hash chain: `h_0` (genesis) and `h_k` (entry hash), byte for byte as
//! `DESIGN.md` section 5 states them.

use crate::hash::{Hash, sha256};

/// The origin of the event log: the first length-prefixed field of every hash.
pub const ORIGIN: &str = "covenant/COVENANT_EVENTS";

/// Domain-separation tag of the genesis hash.
const GENESIS_TAG: &[u8] = b"covenant-audit-genesis/v1\n";

/// Header names written by the appender (all of them hashed, except the hashes themselves).
pub mod headers {
    /// Format version, always `1`.
    pub const AUDIT_V: &str = "Audit-V";
    /// Base64 `h_{k-1}`.
    pub const AUDIT_PREV: &str = "Audit-Prev";
    /// Base64 `h_k`.
    pub const AUDIT_HASH: &str = "Audit-Hash";
    /// Event UUID.
    pub const EVENT_ID: &str = "Event-Id";
    /// Stored event type name, e.g. `country.registered`.
    pub const EVENT_TYPE: &str = "Event-Type";
    /// k, the aggregate version, from 1.
    pub const AGGREGATE_VERSION: &str = "Aggregate-Version";
    /// RFC 3339 UTC time the event was decided.
    pub const OCCURRED_AT: &str = "Occurred-At";
    /// User id or `system`.
    pub const ACTOR: &str = "Actor";
    /// Payload media type.
    pub const CONTENT_TYPE: &str = "Content-Type";
    /// Unhashed, advisory: base64 SHA-256 of the payload as written (the value `h_k`
    /// covers). It lets a verifier tell a payload edit from a header edit.
    pub const AUDIT_PAYLOAD: &str = "Audit-Payload-Sha256";
    /// The value of `Audit-V` this crate writes and verifies.
    pub const VERSION_1: &str = "1";
}

/// Why a hash could not be computed or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// A length-prefixed field is longer than `u16::MAX` bytes.
    #[error("field `{field}` is {len} bytes; audit format v1 allows at most 65535")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
}

/// The hashed fields of one event (everything but the payload bytes themselves).
#[derive(Debug, Clone, Copy)]
pub struct EntryFields<'a> {
    /// Log origin, normally [`ORIGIN`].
    pub origin: &'a str,
    /// NATS subject, `covenant.events.<aggregate>.<id>`.
    pub subject: &'a str,
    /// Aggregate version k (1-based).
    pub version: u64,
    /// `Event-Id` header value.
    pub event_id: &'a str,
    /// `Event-Type` header value.
    pub event_type: &'a str,
    /// `Occurred-At` header value.
    pub occurred_at: &'a str,
    /// `Actor` header value.
    pub actor: &'a str,
    /// `Content-Type` header value.
    pub content_type: &'a str,
}

/// `u16be(len(value))`: the length prefix of `lp(value)`.
fn lp(field: &'static str, value: &str) -> Result<[u8; 2], AuditError> {
    let len = u16::try_from(value.len()).map_err(|_| AuditError::FieldTooLong { field, len: value.len() })?;
    Ok(len.to_be_bytes())
}

/// `h_0` of a subject: the value of `Audit-Prev` on its first event.
///
/// # Errors
/// [`AuditError::FieldTooLong`] if origin or subject exceed 65535 bytes.
pub fn genesis(origin: &str, subject: &str) -> Result<Hash, AuditError> {
    let (o, s) = (lp("origin", origin)?, lp("subject", subject)?);
    Ok(sha256(&[GENESIS_TAG, &o, origin.as_bytes(), &s, subject.as_bytes()]))
}

/// SHA-256 of the exact payload bytes as stored.
pub fn payload_hash(payload: &[u8]) -> Hash {
    sha256(&[payload])
}

/// `h_k` from the fields, the previous hash and the payload's SHA-256 (so a redacted export,
/// which keeps only the payload hash, still verifies).
///
/// # Errors
/// [`AuditError::FieldTooLong`] if a length-prefixed field exceeds 65535 bytes.
pub fn entry_hash(f: &EntryFields<'_>, prev: &Hash, payload_sha256: &Hash) -> Result<Hash, AuditError> {
    let p = Prefixes::of(f)?;
    Ok(sha256(&p.parts(f, prev, payload_sha256)))
}

/// The length prefixes and the version bytes of an entry's fields.
struct Prefixes {
    lens: [[u8; 2]; 7],
    version: [u8; 8],
}

impl Prefixes {
    fn of(f: &EntryFields<'_>) -> Result<Self, AuditError> {
        Ok(Self {
            lens: [
                lp("origin", f.origin)?,
                lp("subject", f.subject)?,
                lp("Event-Id", f.event_id)?,
                lp("Event-Type", f.event_type)?,
                lp("Occurred-At", f.occurred_at)?,
                lp("Actor", f.actor)?,
                lp("Content-Type", f.content_type)?,
            ],
            version: f.version.to_be_bytes(),
        })
    }

    /// The bytes of `h_k` in order (DESIGN section 5).
    fn parts<'a>(&'a self, f: &EntryFields<'a>, prev: &'a Hash, payload_sha256: &'a Hash) -> [&'a [u8]; 18] {
        let l = &self.lens;
        [
            &[0x00, 0x01],
            &l[0],
            f.origin.as_bytes(),
            &l[1],
            f.subject.as_bytes(),
            &self.version,
            &l[2],
            f.event_id.as_bytes(),
            &l[3],
            f.event_type.as_bytes(),
            &l[4],
            f.occurred_at.as_bytes(),
            &l[5],
            f.actor.as_bytes(),
            &l[6],
            f.content_type.as_bytes(),
            prev,
            payload_sha256,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// Test fields with `actor` at `version`.
    fn with_actor(actor: &str, version: u64) -> EntryFields<'_> {
        EntryFields {
            origin: ORIGIN,
            subject: "covenant.events.country.US",
            version,
            event_id: "e",
            event_type: "t",
            occurred_at: "o",
            actor,
            content_type: "c",
        }
    }

    /// An entry (here a long one) hashes the bytes of DESIGN section 5, written out by hand.
    #[test]
    fn an_entry_hashes_the_design_layout_byte_for_byte() {
        let actor = "a".repeat(1000);
        let f = with_actor(&actor, 3);
        let mut want = Sha256::new();
        Digest::update(&mut want, [0x00, 0x01]);
        for (i, v) in [f.origin, f.subject, "", f.event_id, f.event_type, f.occurred_at, f.actor, f.content_type]
            .iter()
            .enumerate()
        {
            if i == 2 {
                Digest::update(&mut want, 3u64.to_be_bytes());
                continue;
            }
            Digest::update(&mut want, (v.len() as u16).to_be_bytes());
            Digest::update(&mut want, v.as_bytes());
        }
        Digest::update(&mut want, [7; 32]);
        Digest::update(&mut want, [9; 32]);
        let want: Hash = want.finalize().into();
        assert_eq!(entry_hash(&f, &[7; 32], &[9; 32]), Ok(want));
    }

    #[test]
    fn an_oversize_field_is_refused_rather_than_truncated() {
        let long = "x".repeat(70_000);
        let f = with_actor(&long, 1);
        let err = entry_hash(&f, &[0; 32], &[0; 32]).expect_err("70 000-byte actor");
        assert_eq!(err, AuditError::FieldTooLong { field: "Actor", len: 70_000 });
    }
}
