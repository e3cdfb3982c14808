//! RFC 6962 / 9162 known-answer vectors for roots, inclusion proofs and consistency proofs
//! (the eight-leaf test tree of the RFC, as published with transparency-dev/merkle), and
//! rejection of malformed proofs.

use covenant_audit::Hash;
use covenant_audit::merkle::root;
use covenant_audit::proof::{ProofError, consistency_proof, inclusion_proof, verify_consistency, verify_inclusion};
use sha2::{Digest, Sha256};

fn h(hex: &str) -> Hash {
    let bytes: Vec<u8> =
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect();
    bytes.try_into().expect("32 bytes")
}

fn leaves() -> Vec<Hash> {
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
    inputs
        .iter()
        .map(|d| {
            let mut s = Sha256::new();
            s.update([0x00]);
            s.update(d);
            s.finalize().into()
        })
        .collect()
}

/// (leaf index 0-based, tree size, proof).
fn inclusion_vectors() -> Vec<(u64, usize, Vec<Hash>)> {
    vec![
        (0, 1, vec![]),
        (
            0,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            5,
            8,
            vec![
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (2, 3, vec![h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
        (
            1,
            5,
            vec![
                h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
    ]
}

/// (first size, second size, proof).
fn consistency_vectors() -> Vec<(u64, usize, Vec<Hash>)> {
    vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            6,
            8,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            5,
            vec![
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
        (
            6,
            7,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
    ]
}

#[test]
fn inclusion_proofs_match_the_known_answers_and_verify() {
    let l = leaves();
    for (index, size, want) in inclusion_vectors() {
        let got = inclusion_proof(index, &l[..size]).expect("in range");
        assert_eq!(got, want, "PATH({index}, D[{size}])");
        verify_inclusion(index, size as u64, &l[index as usize], &want, &root(&l[..size])).expect("verifies");
    }
}

#[test]
fn consistency_proofs_match_the_known_answers_and_verify() {
    let l = leaves();
    for (first, size, want) in consistency_vectors() {
        let got = consistency_proof(first, &l[..size]).expect("sizes");
        assert_eq!(got, want, "PROOF({first}, D[{size}])");
        verify_consistency(first, size as u64, &root(&l[..first as usize]), &root(&l[..size]), &want)
            .expect("verifies");
    }
}

#[test]
fn every_proof_of_every_size_round_trips() {
    let l = leaves();
    for n in 1..=8usize {
        let r = root(&l[..n]);
        for i in 0..n as u64 {
            let p = inclusion_proof(i, &l[..n]).expect("proof");
            verify_inclusion(i, n as u64, &l[i as usize], &p, &r).expect("inclusion");
        }
        for m in 0..=n as u64 {
            let p = consistency_proof(m, &l[..n]).expect("proof");
            verify_consistency(m, n as u64, &root(&l[..m as usize]), &r, &p).expect("consistency");
        }
    }
}

#[test]
fn malformed_inclusion_proofs_are_rejected() {
    let l = leaves();
    let (index, size, proof) = inclusion_vectors().remove(2);
    let r = root(&l[..size]);
    let leaf = l[index as usize];
    let mut too_long = proof.clone();
    too_long.push(r);
    assert_eq!(verify_inclusion(index, size as u64, &leaf, &too_long, &r), Err(ProofError::TooLong));
    assert_eq!(verify_inclusion(index, size as u64, &leaf, &proof[..2], &r), Err(ProofError::TooShort));
    assert!(verify_inclusion(index, size as u64 * 2, &leaf, &proof, &r).is_err(), "wrong size");
    assert!(verify_inclusion(index, size as u64 / 2, &leaf, &proof, &r).is_err(), "wrong size");
    assert!(verify_inclusion(index + 1, size as u64, &leaf, &proof, &r).is_err(), "wrong index");
    assert_eq!(verify_inclusion(8, 8, &leaf, &proof, &r), Err(ProofError::IndexOutOfRange { index: 8, size: 8 }));
    let mut flipped = proof.clone();
    flipped[1][0] ^= 8;
    assert_eq!(verify_inclusion(index, size as u64, &leaf, &flipped, &r), Err(ProofError::RootMismatch));
    let mut preceded = vec![r];
    preceded.extend(proof);
    assert!(verify_inclusion(index, size as u64, &leaf, &preceded, &r).is_err(), "preceding garbage");
}

#[test]
fn malformed_consistency_proofs_are_rejected() {
    let l = leaves();
    let (first, size, proof) = consistency_vectors().remove(2);
    let (r1, r2) = (root(&l[..first as usize]), root(&l[..size]));
    let n = size as u64;
    assert!(verify_consistency(first, n, &r1, &r2, &[]).is_err(), "empty proof");
    assert!(verify_consistency(first, n, &r1, &r2, &proof[..2]).is_err(), "truncated");
    let mut long = proof.clone();
    long.push(r2);
    assert!(verify_consistency(first, n, &r1, &r2, &long).is_err(), "too long");
    assert!(verify_consistency(first - 1, n, &r1, &r2, &proof).is_err(), "wrong first size");
    assert!(verify_consistency(first, n * 2, &r1, &r2, &proof).is_err(), "wrong second size");
    assert!(verify_consistency(first, n, &r2, &r1, &proof).is_err(), "swapped roots");
    assert_eq!(
        verify_consistency(n, first, &r1, &r2, &proof),
        Err(ProofError::SizesReversed { first: n, second: first })
    );
    let mut flipped = proof;
    flipped[0][0] ^= 16;
    assert_eq!(verify_consistency(first, n, &r1, &r2, &flipped), Err(ProofError::RootMismatch));
}
