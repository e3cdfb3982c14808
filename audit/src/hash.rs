//! SHA-256 digests and their base64 form, as the headers and checkpoints carry them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// SHA-256 of `parts` written one after another.
pub fn sha256(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A hash as `Audit-Prev`, `Audit-Hash` and checkpoints write it: standard base64, padded.
pub fn hash_to_b64(hash: &Hash) -> String {
    STANDARD.encode(hash)
}

/// Why a value is not a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("hash is not base64 of 32 bytes")]
pub struct BadHashEncoding;

/// Reads a hash written by [`hash_to_b64`] (white space around it is ignored).
///
/// # Errors
/// [`BadHashEncoding`] when the value is not base64 of exactly 32 bytes.
pub fn hash_from_b64(value: &str) -> Result<Hash, BadHashEncoding> {
    // Room for more than 32 bytes, so a longer value is decoded and refused, not cut.
    let mut out = [0u8; 48];
    let n = STANDARD.decode_slice(value.trim(), &mut out).map_err(|_| BadHashEncoding)?;
    out[..n].try_into().map_err(|_| BadHashEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_round_trips_and_anything_else_is_refused() {
        let h: Hash = std::array::from_fn(|i| i as u8 * 7);
        let text = hash_to_b64(&h);
        assert_eq!(hash_from_b64(&text), Ok(h));
        assert_eq!(hash_from_b64(&format!(" {text} ")), Ok(h));
        let zero = hash_to_b64(&[0; 32]);
        // Non-zero trailing bits, a bad character, too short, too long.
        for bad in [zero.replace("A=", "B="), zero.replacen('A', "*", 1), zero[4..].to_owned(), format!("AAAA{zero}")] {
            assert_eq!(hash_from_b64(&bad), Err(BadHashEncoding), "{bad}");
        }
    }
}
