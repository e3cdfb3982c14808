//! RFC 9162 §2.1.3–2.1.4: inclusion and consistency proofs over the Merkle tree of
//! [`crate::merkle`], their generation from the leaves and their verification.
//!
//! Verification follows the RFC's algorithms step by step; every malformed proof (too
//! long, truncated, wrong sizes, wrong hashes) is rejected with [`ProofError`].

use crate::entry::Hash;
use crate::merkle::{node, root, split_point};

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not inside a tree of size {size}")]
    IndexOutOfRange {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// The second tree is smaller than the first.
    #[error("tree size {second} is smaller than {first}")]
    SizesReversed {
        /// First size.
        first: u64,
        /// Second size.
        second: u64,
    },
    /// The proof has more hashes than the sizes allow.
    #[error("proof is too long")]
    TooLong,
    /// The proof has fewer hashes than the sizes require.
    #[error("proof is too short")]
    TooShort,
    /// The proof recomputes another root.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
}

/// The inclusion path of leaf `index` in the tree over `leaves` (RFC 9162 `PATH`).
///
/// # Errors
/// [`ProofError::IndexOutOfRange`].
pub fn inclusion_proof(index: u64, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    let n = leaves.len() as u64;
    if index >= n {
        return Err(ProofError::IndexOutOfRange { index, size: n });
    }
    let mut out = Vec::new();
    path(index as usize, leaves, &mut out);
    Ok(out)
}

fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    if d.len() <= 1 {
        return;
    }
    let k = split_point(d.len());
    if m < k {
        path(m, &d[..k], out);
        out.push(root(&d[k..]));
    } else {
        path(m - k, &d[k..], out);
        out.push(root(&d[..k]));
    }
}

/// Verifies that `leaf` is leaf `index` of the tree of `size` with `expected_root`
/// (RFC 9162 §2.1.3.2).
///
/// # Errors
/// [`ProofError`] naming why it fails.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    expected_root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::TooLong);
        }
        if f & 1 == 1 || f == s {
            r = node(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::TooShort);
    }
    if r != *expected_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The consistency proof from the tree of the first `first` leaves to the tree over all
/// `leaves` (RFC 9162 `PROOF`).
///
/// # Errors
/// [`ProofError::SizesReversed`] when `first` exceeds the number of leaves.
pub fn consistency_proof(first: u64, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    let n = leaves.len() as u64;
    if first > n {
        return Err(ProofError::SizesReversed { first, second: n });
    }
    let mut out = Vec::new();
    if first > 0 && first < n {
        subproof(first as usize, leaves, true, &mut out);
    }
    Ok(out)
}

fn subproof(m: usize, d: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    if m == d.len() {
        if !whole {
            out.push(root(d));
        }
        return;
    }
    let k = split_point(d.len());
    if m <= k {
        subproof(m, &d[..k], whole, out);
        out.push(root(&d[k..]));
    } else {
        subproof(m - k, &d[k..], false, out);
        out.push(root(&d[..k]));
    }
}

/// Verifies that the tree of `second` leaves with `second_root` extends the tree of
/// `first` leaves with `first_root` (RFC 9162 §2.1.4.2).
///
/// # Errors
/// [`ProofError`] naming why it fails.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if second < first {
        return Err(ProofError::SizesReversed { first, second });
    }
    if first == second || first == 0 {
        if !proof.is_empty() {
            return Err(ProofError::TooLong);
        }
        return if first == 0 || first_root == second_root { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((seed, rest)) = path.split_first() else { return Err(ProofError::TooShort) };
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in rest {
        if s == 0 {
            return Err(ProofError::TooLong);
        }
        if f & 1 == 1 || f == s {
            fr = node(c, &fr);
            sr = node(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::TooShort);
    }
    if fr != *first_root || sr != *second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}
