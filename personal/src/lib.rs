//! Personal data in Covenant's events (DESIGN section 11): crypto-shredding.
//!
//! The personal fields of an event (the domain names them: `covenant_domain::personal_fields`)
//! are sealed with their user's own data key before the event is stored, and opened by
//! readers that may read them. Keys live in a KV bucket of ours ([`keys`]), not in the
//! immutable stream: deleting a user's key makes every personal field of that user
//! unreadable forever, while the stored bytes, which the audit chain hashes, stay as they
//! were. So the chain and the signed checkpoints verify with or without the keys.
//!
//! - [`seal`]: the field envelope, sealing and opening one payload.
//! - [`keys`]: the key store.

pub mod keys;
pub mod seal;

pub use keys::{KeyError, KeyStore};
pub use seal::{DataKey, Place, SealError};

/// What read models, exports and answers show in place of a forgotten user's personal data.
pub const FORGOTTEN: &str = "[forgotten]";
