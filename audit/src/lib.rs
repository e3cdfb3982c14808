//! Covenant audit format v1: the bytes auditors re-implement, and the verifier.
//!
//! Every event appended to `COVENANT_EVENTS` carries `Audit-Prev` and `Audit-Hash` headers
//! that chain it to the previous event of the same aggregate ([`entry`]); the sealer binds
//! the whole stream, in stream order, into an RFC 9162 Merkle tree ([`merkle`]). The layout is
//! fixed by `DESIGN.md` section 5 and reproduced by the known-answer vectors in
//! `../shared/audit-vectors.json`, kept as `tests/data/audit-vectors.json` (see
//! `tests/vectors.rs`).
//!
//! This crate has no NATS dependency: it is the offline verifier. Only [`bundle`] touches
//! files.
//!
//! Modules:
//! - [`hash`]: SHA-256 and the base64 form of hashes.
//! - [`entry`]: genesis and entry hashes (`h_0`, `h_k`), header names.
//! - [`merkle`]: the Merkle tree hash over entry hashes, and its O(log n) incremental form.
//! - [`proof`]: RFC 9162 inclusion and consistency proofs.
//! - [`note`]: checkpoints as C2SP signed notes (Ed25519).
//! - [`verify`]: the verifier and its failure classes.
//! - [`bundle`]: exported bundles and their offline verification.

pub mod bundle;
pub mod entry;
pub mod hash;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod verify;

pub use entry::{AuditError, EntryFields, ORIGIN, entry_hash, genesis, payload_hash};
pub use hash::{Hash, hash_from_b64, hash_to_b64};

/// The audit origin of event stream `events`: `covenant/<stream>`.
pub fn origin(events: &str) -> String {
    format!("covenant/{events}")
}

/// The checkpoint stream of event stream `events`: `COVENANT_EVENTS` →
/// `COVENANT_CHECKPOINTS`, any other name `<name>_CHECKPOINTS`.
pub fn checkpoints_stream(events: &str) -> String {
    match events.strip_suffix("_EVENTS") {
        Some(base) => format!("{base}_CHECKPOINTS"),
        None => format!("{events}_CHECKPOINTS"),
    }
}

/// The subject the checkpoints of `events` are published on.
pub fn checkpoints_subject(events: &str) -> String {
    format!("covenant.checkpoints.{events}")
}
