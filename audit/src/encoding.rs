//! Base64 (standard alphabet, padded) for hashes as they travel in headers, and for
//! payloads in bundles.

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
    let mut out = [0u8; 32];
    canonical_into(b, &mut out)?;
    Some(out)
}

/// Decodes standard padded base64 `text` into `out` (replacing what it held). Canonical
/// text (whole quads of the alphabet, at most two `=` at the end, unused bits zero) is
/// decoded by tables; anything else by the engine, which decodes it the same or
/// refuses it.
///
/// # Errors
/// When `text` is not base64 (the engine's verdict).
pub fn decode_into(text: &[u8], out: &mut Vec<u8>) -> Result<(), base64::DecodeError> {
    if canonical(text, out).is_some() {
        return Ok(());
    }
    out.clear();
    STANDARD.decode_vec(text, out)
}

/// [`decode_into`]'s table path; `None` when `text` is not canonical.
fn canonical(text: &[u8], out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    out.resize(decoded_len(text)?, 0);
    canonical_into(text, out)
}

/// Bytes that padded base64 `text` decodes to (`None` unless whole quads with at most two
/// `=` at the end).
fn decoded_len(text: &[u8]) -> Option<usize> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let pad = match text {
        [.., b'=', b'='] => 2,
        [.., b'='] => 1,
        _ => 0,
    };
    Some(text.len() / 4 * 3 - pad)
}

/// Decodes canonical `text` into `out`, which must be exactly as long as it decodes to
/// (`None` otherwise, or for anything not canonical). Each character's table holds its six
/// bits already in place, so a quad is four loads and three ORs (an invalid character,
/// `=` included, sets bit 24); the last quad's unused bits must be zero.
fn canonical_into(text: &[u8], out: &mut [u8]) -> Option<()> {
    if decoded_len(text)? != out.len() {
        return None;
    }
    let pad = (3 - out.len() % 3) % 3;
    let quads = out.len() / 3;
    let (t0, t1, t2, t3) = (&TABLES[0], &TABLES[1], &TABLES[2], &TABLES[3]);
    let mut bad = 0u32;
    for (o, q) in out.chunks_exact_mut(3).zip(text.chunks_exact(4)) {
        let n = t0[usize::from(q[0])] | t1[usize::from(q[1])] | t2[usize::from(q[2])] | t3[usize::from(q[3])];
        bad |= n;
        o.copy_from_slice(&n.to_be_bytes()[1..]);
    }
    if pad > 0 {
        let q = &text[quads * 4..];
        let n = t0[usize::from(q[0])] | t1[usize::from(q[1])] | if pad == 1 { t2[usize::from(q[2])] } else { 0 };
        bad |= n;
        let unused = if pad == 1 { n & 0xff } else { n & 0xffff };
        bad |= if unused == 0 { 0 } else { INVALID };
        out[quads * 3..].copy_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    (bad & INVALID == 0).then_some(())
}

/// Marks an invalid character in [`TABLES`].
const INVALID: u32 = 1 << 24;

/// For each position in a quad, every byte's six bits shifted into place, or [`INVALID`].
const TABLES: [[u32; 256]; 4] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut t = [[INVALID; 256]; 4];
    let mut i = 0;
    while i < 64 {
        let c = alphabet[i] as usize;
        let v = i as u32;
        t[0][c] = v << 18;
        t[1][c] = v << 12;
        t[2][c] = v << 6;
        t[3][c] = v;
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length, and every single-character change of a few texts, decodes as the
    /// engine decodes it, or is refused as the engine refuses it.
    #[test]
    fn payloads_decode_as_the_engine_decodes_them() {
        let engine = |t: &[u8]| STANDARD.decode(t).ok();
        let mine = |t: &[u8]| {
            let mut out = vec![9; 3];
            decode_into(t, &mut out).ok().map(|()| out)
        };
        for len in 0..70usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let text = STANDARD.encode(&data);
            assert_eq!(mine(text.as_bytes()), Some(data), "length {len}");
            if len % 7 == 0 {
                for at in 0..text.len() {
                    for c in [b'A', b'/', b'+', b'=', b'*', b' ', b'\n', 0xc3] {
                        let mut t = text.clone().into_bytes();
                        t[at] = c;
                        assert_eq!(mine(&t), engine(&t), "{:?}", String::from_utf8_lossy(&t));
                    }
                }
            }
        }
        for odd in ["QQ", "QQ=", "QQ===", "Q===", "QR==", "QUI=", "QUJ=", "=", "====", " QUJD", "QUJD\n"] {
            assert_eq!(mine(odd.as_bytes()), engine(odd.as_bytes()), "{odd}");
        }
    }

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
