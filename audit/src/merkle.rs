//! RFC 9162 Merkle tree hash over the stream's entry hashes.
//!
//! Leaf i is the `Audit-Hash` of the message at stream sequence i+1, used as the leaf hash
//! as it is (it is already domain-separated by its `0x00 0x01` prefix); an interior node is
//! `SHA-256(0x01 || left || right)`, split at the largest power of two below n.

use sha2::{Digest, Sha256};

use crate::hash::{Hash, sha256};

/// `SHA-256(0x01 || left || right)`.
pub fn node(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// The largest power of two strictly smaller than `n` (n ≥ 2).
pub fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle tree hash of `leaves` (the empty tree hashes to `SHA-256("")`).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The tree built leaf by leaf in O(log n) memory: the roots of the perfect subtrees that
/// make up the current tree, largest first (the sealer's state).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactTree {
    size: u64,
    peaks: Vec<Hash>,
}

impl CompactTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf: each trailing 1 bit of the old size is a perfect subtree of the
    /// same height as the new one, merged into it.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut n = self.size;
        while n & 1 == 1 {
            let left = self.peaks.pop().expect("one peak per set bit of the size");
            h = node(&left, &h);
            n >>= 1;
        }
        self.peaks.push(h);
        self.size += 1;
    }

    /// Rebuilds a tree from its size and peaks (as [`CompactTree::peaks`] gave them);
    /// `None` when the count of peaks does not fit the size.
    pub fn from_parts(size: u64, peaks: Vec<Hash>) -> Option<Self> {
        (peaks.len() == size.count_ones() as usize).then_some(Self { size, peaks })
    }

    /// The roots of the perfect subtrees, largest first.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// The Merkle tree hash of the leaves so far.
    pub fn root(&self) -> Hash {
        let mut it = self.peaks.iter().rev();
        match it.next() {
            None => Sha256::digest([]).into(),
            Some(last) => it.fold(*last, |acc, left| node(left, &acc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compact_tree_matches_the_recursive_root_at_every_size() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| Sha256::digest(i.to_be_bytes()).into()).collect();
        let mut t = CompactTree::new();
        assert_eq!(t.root(), root(&[]));
        for (i, l) in leaves.iter().enumerate() {
            t.push(*l);
            assert_eq!(t.root(), root(&leaves[..=i]), "size {}", i + 1);
            assert_eq!(t.peaks.len() as u32, t.size().count_ones());
        }
    }

    #[test]
    fn split_point_is_the_largest_power_of_two_below_n() {
        let cases = [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (1025, 1024)];
        for (n, k) in cases {
            assert_eq!(split_point(n), k, "n = {n}");
        }
    }

    /// RFC 6962 section 2.1 test data: leaf hashes are SHA-256(0x00 || d) of its eight inputs.
    #[test]
    fn root_reproduces_the_rfc6962_test_vectors() {
        let inputs: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f],
        ];
        let leaves: Vec<Hash> = inputs
            .iter()
            .map(|d| {
                let mut h = Sha256::new();
                h.update([0x00]);
                h.update(d);
                h.finalize().into()
            })
            .collect();
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        for (n, want) in expected.iter().enumerate() {
            let got: String = root(&leaves[..=n]).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(&got, want, "tree size {}", n + 1);
        }
    }
}
