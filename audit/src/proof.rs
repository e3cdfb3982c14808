//! RFC 9162 §2.1.3–2.1.4: inclusion and consistency proofs over the Merkle tree of
//! [`crate::merkle`], their generation from the leaves and their verification.
//!
//! Verification follows the RFC's algorithms step by step; every malformed proof (too
//! long, truncated, wrong sizes, wrong hashes) is rejected with [`ProofError`].

use crate::hash::Hash;
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

/// A proof as `covenant audit prove` prints it and `covenant audit check-proof` reads it:
/// self-contained, with the signed checkpoint it leads to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProofFile {
    /// The event at `sequence` (leaf `sequence - 1`) is in the tree of the checkpoint.
    Inclusion {
        /// Stream sequence.
        sequence: u64,
        /// Base64 leaf (the event's `Audit-Hash`).
        leaf: String,
        /// Base64 audit path, leaf to root.
        proof: Vec<String>,
        /// The signed checkpoint (note text).
        checkpoint: String,
    },
    /// The tree of size `old_size` with root `old_root` is a prefix of the checkpoint's.
    Consistency {
        /// The earlier size.
        old_size: u64,
        /// Base64 root at that size.
        old_root: String,
        /// Base64 consistency proof.
        proof: Vec<String>,
        /// The signed checkpoint (note text).
        checkpoint: String,
    },
}

impl ProofFile {
    /// Checks the proof against its checkpoint's size and root; returns the checkpoint
    /// body's (origin, size, root). The checkpoint's signature is the caller's to check.
    ///
    /// # Errors
    /// What is wrong, in words.
    pub fn check(&self) -> Result<(String, u64, Hash), String> {
        use crate::hash::hash_from_b64;
        let hashes = |p: &[String]| {
            p.iter().map(|h| hash_from_b64(h).map_err(|e| format!("proof hash: {e}"))).collect::<Result<Vec<_>, _>>()
        };
        let checkpoint = match self {
            Self::Inclusion { checkpoint, .. } | Self::Consistency { checkpoint, .. } => checkpoint,
        };
        let note = crate::note::SignedNote::parse(checkpoint).map_err(|e| e.to_string())?;
        let cp = crate::note::Checkpoint::parse(&note.body).map_err(|e| e.to_string())?;
        match self {
            Self::Inclusion { sequence, leaf, proof, .. } => {
                let index = sequence.checked_sub(1).ok_or("sequence 0 does not exist")?;
                let leaf = hash_from_b64(leaf).map_err(|e| format!("leaf: {e}"))?;
                verify_inclusion(index, cp.size, &leaf, &hashes(proof)?, &cp.root).map_err(|e| e.to_string())?;
            }
            Self::Consistency { old_size, old_root, proof, .. } => {
                let old_root = hash_from_b64(old_root).map_err(|e| format!("old root: {e}"))?;
                verify_consistency(*old_size, cp.size, &old_root, &cp.root, &hashes(proof)?)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok((cp.origin.to_owned(), cp.size, cp.root))
    }
}
