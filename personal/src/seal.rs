//! Sealing and opening the personal fields of one event payload.
//!
//! A sealed field's value is replaced in the stored JSON by an envelope object:
//!
//! ```json
//! {"email":{"sealed":"XChaCha20-Poly1305","ct":"<base64>"},"role":"viewer"}
//! ```
//!
//! `ct` is standard base64 (padded) of the 24-byte nonce, then the ciphertext and its 16-byte
//! tag. The plaintext is the field's JSON value (`"ada@example.org"`, quotes included). The
//! associated data binds the ciphertext to where it stands, so it cannot be moved to another
//! user, event type or field: `covenant-personal-v1/<owner>/<event type>/<field>`. See
//! `audit/FORMAT.md`, "Personal fields".

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// The AEAD, as named in each envelope.
pub const ALGORITHM: &str = "XChaCha20-Poly1305";

const NONCE_LEN: usize = 24;

/// One user's data key (32 bytes, wiped from memory when dropped, never printed).
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut raw = Zeroizing::new([0u8; 32]);
        raw.copy_from_slice(&key);
        Self(raw)
    }

    /// A key from its stored bytes; `None` unless exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let raw: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(Zeroizing::new(raw)))
    }

    /// The key's bytes, as stored.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&self.0[..]))
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// Where a payload stands: whose key seals it and which event type it is (both go into
/// each field's associated data).
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// The key's owner: the user id (the aggregate id).
    pub owner: &'a str,
    /// The stored event type, e.g. `user.registered`.
    pub event_type: &'a str,
}

impl Place<'_> {
    fn associated_data(&self, field: &str) -> Vec<u8> {
        format!("covenant-personal-v1/{}/{}/{field}", self.owner, self.event_type).into_bytes()
    }
}

/// Why a payload's personal fields could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The payload is not a JSON object.
    #[error("the payload is not a JSON object")]
    NotAnObject(#[source] Option<serde_json::Error>),
    /// A sealed field does not open with the key at hand (altered, moved, or another key).
    #[error("personal field `{field}` does not open with the user's key")]
    Unopenable {
        /// The field.
        field: String,
    },
    /// A field is marked sealed but its envelope is malformed.
    #[error("personal field `{field}` has a malformed envelope: {reason}")]
    Malformed {
        /// The field.
        field: String,
        /// What is wrong.
        reason: &'static str,
    },
}

fn object(payload: &[u8]) -> Result<Map<String, Value>, SealError> {
    match serde_json::from_slice(payload) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(SealError::NotAnObject(None)),
        Err(e) => Err(SealError::NotAnObject(Some(e))),
    }
}

fn to_bytes(map: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(map).unwrap_or_else(|_| unreachable!("a JSON object always serialises"))
}

/// The envelope's `ct`, if `v` is a sealed value (`{"sealed": …, "ct": …}`).
fn envelope<'v>(field: &str, v: &'v Value) -> Result<Option<&'v str>, SealError> {
    let Value::Object(m) = v else { return Ok(None) };
    let Some(alg) = m.get("sealed") else { return Ok(None) };
    let malformed = |reason| SealError::Malformed { field: field.to_owned(), reason };
    if alg.as_str() != Some(ALGORITHM) {
        return Err(malformed("unknown algorithm"));
    }
    m.get("ct").and_then(Value::as_str).map(Some).ok_or_else(|| malformed("no `ct` string"))
}

/// Whether any of `fields` of `payload` is sealed (a payload that does not parse has none).
pub fn is_sealed(payload: &[u8], fields: &[&str]) -> bool {
    object(payload)
        .is_ok_and(|m| fields.iter().any(|f| m.get(*f).is_some_and(|v| envelope(f, v).ok().flatten().is_some())))
}

/// `payload` with each of `fields` present in it sealed with `key` (absent and `null`
/// fields are left as they are).
///
/// # Errors
/// [`SealError::NotAnObject`].
pub fn seal(payload: &[u8], fields: &[&str], place: Place<'_>, key: &DataKey) -> Result<Vec<u8>, SealError> {
    let mut map = object(payload)?;
    let cipher = key.cipher();
    for field in fields {
        let Some(v) = map.get_mut(*field) else { continue };
        if v.is_null() {
            continue;
        }
        let plain = Zeroizing::new(serde_json::to_vec(v).unwrap_or_else(|_| unreachable!("a JSON value serialises")));
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = place.associated_data(field);
        let sealed = cipher
            .encrypt(&nonce, Payload { msg: &plain, aad: &aad })
            .unwrap_or_else(|_| unreachable!("XChaCha20-Poly1305 encrypts any message under 256 GiB"));
        let mut ct = Vec::with_capacity(NONCE_LEN + sealed.len());
        ct.extend_from_slice(&nonce);
        ct.extend_from_slice(&sealed);
        *v = serde_json::json!({ "sealed": ALGORITHM, "ct": STANDARD.encode(ct) });
    }
    Ok(to_bytes(&map))
}

/// `payload` with each sealed one of `fields` opened with `key`, or, without a key, replaced
/// by `null` (what the domain's `Personal` reads as withheld). A field stored in
/// plaintext (before sealing began) is left as it is.
///
/// # Errors
/// [`SealError`]: not an object, a malformed envelope, or a field that does not open.
pub fn open(payload: &[u8], fields: &[&str], place: Place<'_>, key: Option<&DataKey>) -> Result<Vec<u8>, SealError> {
    let mut map = object(payload)?;
    for field in fields {
        let Some(v) = map.get_mut(*field) else { continue };
        let Some(ct) = envelope(field, v)? else { continue };
        *v = match key {
            None => Value::Null,
            Some(key) => open_one(field, ct, place, key)?,
        };
    }
    Ok(to_bytes(&map))
}

fn open_one(field: &str, ct: &str, place: Place<'_>, key: &DataKey) -> Result<Value, SealError> {
    let malformed = |reason| SealError::Malformed { field: field.to_owned(), reason };
    let raw = STANDARD.decode(ct).map_err(|_| malformed("`ct` is not base64"))?;
    if raw.len() < NONCE_LEN + 16 {
        return Err(malformed("`ct` is too short"));
    }
    let (nonce, sealed) = raw.split_at(NONCE_LEN);
    let aad = place.associated_data(field);
    let plain = key
        .cipher()
        .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
        .map(Zeroizing::new)
        .map_err(|_| SealError::Unopenable { field: field.to_owned() })?;
    serde_json::from_slice(&plain).map_err(|_| malformed("the plaintext is not JSON"))
}

#[cfg(test)]
mod tests;
