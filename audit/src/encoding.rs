//! Base64 (standard alphabet, padded) for hashes as they travel in headers.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::entry::{AuditError, Hash};

/// Encodes a hash the way the `Audit-Prev` / `Audit-Hash` headers carry it.
pub fn hash_to_b64(hash: &Hash) -> String {
    STANDARD.encode(hash)
}

/// Decodes a header value into a hash.
///
/// # Errors
/// [`AuditError::BadHashEncoding`] when the value is not base64 of exactly 32 bytes.
pub fn hash_from_b64(value: &str) -> Result<Hash, AuditError> {
    // Room for more than 32 bytes, so a longer value is decoded and refused, not cut.
    let mut out = [0u8; 48];
    let n = STANDARD.decode_slice(value.trim(), &mut out).map_err(|_| AuditError::BadHashEncoding)?;
    out[..n].try_into().map_err(|_| AuditError::BadHashEncoding)
}
