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
    if let Some(h) = canonical_hash(value.as_bytes()) {
        return Ok(h);
    }
    // Room for more than 32 bytes, so a longer value is decoded and refused, not cut.
    let mut out = [0u8; 48];
    let n = STANDARD.decode_slice(value.trim(), &mut out).map_err(|_| AuditError::BadHashEncoding)?;
    out[..n].try_into().map_err(|_| AuditError::BadHashEncoding)
}

/// The common case on the verifier's hot path: exactly 43 alphabet characters and `=`, the
/// unused low bits zero (the only text of 32 bytes the padded standard engine accepts).
/// `None` for anything else, which the engine then decodes or refuses.
fn canonical_hash(b: &[u8]) -> Option<Hash> {
    const INVALID: u8 = 0xff;
    const VALUES: [u8; 256] = {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut t = [INVALID; 256];
        let mut i = 0;
        while i < 64 {
            t[alphabet[i] as usize] = i as u8;
            i += 1;
        }
        t
    };
    if b.len() != 44 || b[43] != b'=' {
        return None;
    }
    let mut v = [0u8; 43];
    let mut bad = 0u8;
    for (d, c) in v.iter_mut().zip(&b[..43]) {
        *d = VALUES[usize::from(*c)];
        bad |= *d;
    }
    // 43 characters carry 258 bits: the last one's low two bits must be zero.
    if bad & 0xc0 != 0 || v[42] & 0x03 != 0 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, q) in out.chunks_mut(3).zip(v.chunks(4)) {
        let n = q.iter().fold(0u32, |acc, x| (acc << 6) | u32::from(*x)) << (6 * (4 - q.len()));
        for (i, byte) in o.iter_mut().enumerate() {
            *byte = (n >> (16 - 8 * i)) as u8;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_decoder_agrees_with_the_engine() {
        for seed in 0u8..=255 {
            let h: Hash = std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7));
            let text = hash_to_b64(&h);
            assert_eq!(canonical_hash(text.as_bytes()), Some(h), "{text}");
            assert_eq!(hash_from_b64(&text), Ok(h));
        }
        // Non-zero trailing bits, a bad character, a short value: refused by both.
        let text = hash_to_b64(&[0; 32]);
        for bad in [text.replace("A=", "B="), text.replacen('A', "*", 1), text[1..].to_owned()] {
            assert_eq!(canonical_hash(bad.as_bytes()), None, "{bad}");
            assert_eq!(hash_from_b64(&bad), Err(AuditError::BadHashEncoding), "{bad}");
        }
        assert_eq!(hash_from_b64(&format!(" {text} ")), Ok([0; 32]));
    }
}
