//! SHA-256 straight through the compression function, one message or two side by side.
//!
//! The audit hashes (entry, genesis, Merkle node, most payloads) are a few blocks long;
//! through the streaming `Sha256`, each field's update copies into its block buffer and the
//! final step pads and copies again, which costs about as much as the compression itself
//! on a processor with SHA instructions. Here whole blocks are compressed where they lie and
//! only the tail is padded. And the rounds of one hash depend on each other while those of
//! two hashes do not: compressing two messages block by block in turn lets the processor
//! run them side by side (measured on this project's machines: 36 ns a block one at a time,
//! 27.5 ns two at a time; more lanes add nothing).

use sha2::digest::generic_array::GenericArray;

use crate::entry::Hash;

/// SHA-256 of `msg`.
pub fn sha256(msg: &[u8]) -> Hash {
    let [h] = sha256_n([msg]);
    h
}

/// SHA-256 of each message (one or two), their blocks compressed in turn.
pub fn sha256_n<const N: usize>(msgs: [&[u8]; N]) -> [Hash; N] {
    // Each message's last bytes, its padding and its length, in one or two blocks.
    let mut tails = [[0u8; 128]; N];
    let (mut whole, mut blocks) = ([0usize; N], [0usize; N]);
    for k in 0..N {
        let msg = msgs[k];
        whole[k] = msg.len() / 64;
        let rest = &msg[whole[k] * 64..];
        put(&mut tails[k][..rest.len()], rest);
        tails[k][rest.len()] = 0x80;
        let end = if rest.len() < 56 { 64 } else { 128 };
        tails[k][end - 8..end].copy_from_slice(&(msg.len() as u64 * 8).to_be_bytes());
        blocks[k] = whole[k] + end / 64;
    }
    let mut states = [IV; N];
    let most = blocks.iter().copied().max().unwrap_or(0);
    for i in 0..most {
        for k in 0..N {
            if i < whole[k] {
                compress(&mut states[k], &msgs[k][i * 64..i * 64 + 64]);
            } else if i < blocks[k] {
                let t = (i - whole[k]) * 64;
                compress(&mut states[k], &tails[k][t..t + 64]);
            }
        }
    }
    let mut out = [[0u8; 32]; N];
    for (o, s) in out.iter_mut().zip(states) {
        *o = output(s);
    }
    out
}

/// A message assembled from parts, kept between hashes (its buffer is reused): on the
/// stack up to [`Assembly::FIXED`] bytes, in a vector beyond.
pub struct Assembly {
    fixed: [u8; Self::FIXED],
    long: Vec<u8>,
    len: usize,
}

impl Default for Assembly {
    fn default() -> Self {
        Self { fixed: [0; Self::FIXED], long: Vec::new(), len: 0 }
    }
}

impl Assembly {
    /// Bytes held without the vector.
    pub const FIXED: usize = 512;

    /// Empties it.
    pub fn clear(&mut self) {
        self.len = 0;
        self.long.clear();
    }

    /// Appends `parts`.
    pub fn extend(&mut self, parts: &[&[u8]]) {
        for part in parts {
            let end = self.len + part.len();
            if end <= Self::FIXED {
                put(&mut self.fixed[self.len..end], part);
            } else {
                if self.long.is_empty() {
                    self.long.extend_from_slice(&self.fixed[..self.len]);
                }
                self.long.extend_from_slice(part);
            }
            self.len = end;
        }
    }

    /// The message.
    pub fn bytes(&self) -> &[u8] {
        if self.len <= Self::FIXED { &self.fixed[..self.len] } else { &self.long }
    }
}

thread_local! {
    /// [`sha256_concat`]'s buffer, kept rather than zeroed on the stack at every call.
    static SCRATCH: std::cell::RefCell<Assembly> = std::cell::RefCell::new(Assembly::default());
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256_concat(parts: &[&[u8]]) -> Hash {
    SCRATCH.with_borrow_mut(|a| {
        a.clear();
        a.extend(parts);
        sha256(a.bytes())
    })
}

/// Copies `src` into `dst` (of its length). The audit fields are short, and a call to
/// `memcpy` per field costs more than the copy: up to 64 bytes are moved as integers
/// read and written at both ends (overlapping in the middle), which compile to a few moves.
#[inline(always)]
fn put(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    macro_rules! ends {
        ($t:ty, $w:literal) => {{
            let (head, tail) = (word::<$t, $w>(&src[..$w]), word::<$t, $w>(&src[n - $w..]));
            dst[..$w].copy_from_slice(&head.to_le_bytes());
            dst[n - $w..].copy_from_slice(&tail.to_le_bytes());
        }};
    }
    match n {
        0 => {}
        1..=3 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..=7 => ends!(u32, 4),
        8..=15 => ends!(u64, 8),
        16..=32 => ends!(u128, 16),
        33..=64 => {
            let (a, b) = (word::<u128, 16>(&src[..16]), word::<u128, 16>(&src[16..32]));
            let (c, d) = (word::<u128, 16>(&src[n - 32..n - 16]), word::<u128, 16>(&src[n - 16..]));
            dst[..16].copy_from_slice(&a.to_le_bytes());
            dst[16..32].copy_from_slice(&b.to_le_bytes());
            dst[n - 32..n - 16].copy_from_slice(&c.to_le_bytes());
            dst[n - 16..].copy_from_slice(&d.to_le_bytes());
        }
        _ => dst.copy_from_slice(src),
    }
}

/// The little-endian integer of `bytes` (exactly `W` of them).
#[inline(always)]
fn word<T: FromLe<W>, const W: usize>(bytes: &[u8]) -> T {
    let mut a = [0u8; W];
    a.copy_from_slice(bytes);
    T::from_le(a)
}

/// Integers read from their little-endian bytes (for [`word`]).
trait FromLe<const W: usize> {
    fn from_le(a: [u8; W]) -> Self;
}

impl FromLe<4> for u32 {
    fn from_le(a: [u8; 4]) -> Self {
        Self::from_le_bytes(a)
    }
}

impl FromLe<8> for u64 {
    fn from_le(a: [u8; 8]) -> Self {
        Self::from_le_bytes(a)
    }
}

impl FromLe<16> for u128 {
    fn from_le(a: [u8; 16]) -> Self {
        Self::from_le_bytes(a)
    }
}

/// `SHA-256(0x01 || left || right)`, the Merkle node: two blocks, laid out directly.
pub fn node(left: &Hash, right: &Hash) -> Hash {
    let (first, second) = node_blocks([left, right]);
    let mut state = IV;
    compress(&mut state, &first);
    compress(&mut state, &second);
    output(state)
}

/// The two padded blocks of a Merkle node's 65 bytes.
fn node_blocks([left, right]: [&Hash; 2]) -> ([u8; 64], [u8; 64]) {
    let mut first = [0u8; 64];
    first[0] = 0x01;
    first[1..33].copy_from_slice(left);
    first[33..].copy_from_slice(&right[..31]);
    let mut second = [0u8; 64];
    second[0] = right[31];
    second[1] = 0x80;
    second[56..].copy_from_slice(&(65u64 * 8).to_be_bytes());
    (first, second)
}

/// Two Merkle nodes, [`node`] of each pair, their compressions interleaved: the rounds of
/// one hash depend on each other, those of two hashes do not, so the processor runs the
/// two side by side.
pub fn node2(a: [&Hash; 2], b: [&Hash; 2]) -> (Hash, Hash) {
    let ((a1, a2), (b1, b2)) = (node_blocks(a), node_blocks(b));
    let (mut sa, mut sb) = (IV, IV);
    compress(&mut sa, &a1);
    compress(&mut sb, &b1);
    compress(&mut sa, &a2);
    compress(&mut sb, &b2);
    (output(sa), output(sb))
}

fn compress(state: &mut [u32; 8], block: &[u8]) {
    sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
}

fn output(state: [u32; 8]) -> Hash {
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};

    /// Every length around the block and buffer edges, whole and in pieces, against `Sha256`.
    #[test]
    fn agrees_with_the_streaming_hasher_at_every_length() {
        let data: Vec<u8> = (0..1200u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for len in (0..=600).chain([1000, 1200]) {
            let msg = &data[..len];
            let want: Hash = Sha256::digest(msg).into();
            assert_eq!(sha256(msg), want, "length {len}");
            for piece in [1, 2, 3, 5, 9, 17, 33, 70] {
                let parts: Vec<&[u8]> = msg.chunks(piece).collect();
                assert_eq!(sha256_concat(&parts), want, "length {len} in pieces of {piece}");
            }
            // Side by side with messages of other lengths.
            for other in [0, len / 2, (len + 70).min(1200), 1200 - len] {
                let o = &data[..other];
                let want_o: Hash = Sha256::digest(o).into();
                assert_eq!(sha256_n([msg, o]), [want, want_o], "lengths {len} and {other}");
                let mut a = Assembly::default();
                a.extend(&msg.chunks(11).collect::<Vec<_>>());
                a.extend(&[]);
                assert_eq!(sha256_n([a.bytes(), o]), [want, want_o], "lengths {len} and {other}, assembled");
            }
        }
    }

    #[test]
    fn a_node_hashes_its_65_bytes() {
        let (l, r) = ([3u8; 32], [250u8; 32]);
        let mut input = vec![0x01];
        input.extend_from_slice(&l);
        input.extend_from_slice(&r);
        assert_eq!(node(&l, &r), Hash::from(Sha256::digest(&input)));
        assert_eq!(node2([&l, &r], [&r, &l]), (node(&l, &r), node(&r, &l)));
    }
}
