//! Known-answer vectors from `../shared/audit-vectors.json`, computed by an independent
//! implementation of DESIGN section 5.

use std::collections::HashMap;

use covenant_audit::{EntryFields, Hash, entry_hash, genesis, merkle, payload_hash};
use covenant_audit::{hash_from_b64, hash_to_b64};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    origin: String,
    events: Vec<Event>,
    merkle_roots_b64_by_tree_size: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Event {
    stream_seq: u64,
    subject: String,
    aggregate_version: u64,
    headers: HashMap<String, String>,
    payload_utf8: String,
    audit_prev_b64: String,
    audit_hash_b64: String,
    audit_hash_hex: String,
}

/// The vectors, from the copy kept in the repository (`tests/data/audit-vectors.json`);
/// where the shared original sits beside the checkout, the copy must equal it.
fn vectors() -> Vectors {
    let copy = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/audit-vectors.json");
    let text = std::fs::read_to_string(copy).expect("tests/data/audit-vectors.json is readable");
    let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/audit-vectors.json");
    if let Ok(original) = std::fs::read_to_string(shared) {
        assert_eq!(text, original, "tests/data/audit-vectors.json differs from ../shared/audit-vectors.json");
    }
    serde_json::from_str(&text).expect("vectors parse")
}

#[test]
fn entry_hashes_reproduce_every_shared_vector() {
    let v = vectors();
    let mut tips: HashMap<String, Hash> = HashMap::new();
    for e in &v.events {
        let prev = match tips.get(&e.subject) {
            Some(h) => *h,
            None => genesis(&v.origin, &e.subject).expect("genesis"),
        };
        assert_eq!(hash_to_b64(&prev), e.audit_prev_b64, "Audit-Prev of seq {}", e.stream_seq);
        let fields = EntryFields {
            origin: &v.origin,
            subject: &e.subject,
            version: e.aggregate_version,
            event_id: &e.headers["Event-Id"],
            event_type: &e.headers["Event-Type"],
            occurred_at: &e.headers["Occurred-At"],
            actor: &e.headers["Actor"],
            content_type: &e.headers["Content-Type"],
        };
        let h = entry_hash(&fields, &prev, &payload_hash(e.payload_utf8.as_bytes())).expect("hash");
        assert_eq!(hash_to_b64(&h), e.audit_hash_b64, "Audit-Hash of seq {}", e.stream_seq);
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, e.audit_hash_hex);
        tips.insert(e.subject.clone(), h);
    }
}

#[test]
fn merkle_roots_reproduce_every_shared_tree_size() {
    let v = vectors();
    let leaves: Vec<Hash> = v.events.iter().map(|e| hash_from_b64(&e.audit_hash_b64).expect("b64")).collect();
    assert_eq!(v.merkle_roots_b64_by_tree_size.len(), leaves.len() + 1);
    for (size, want) in &v.merkle_roots_b64_by_tree_size {
        let n: usize = size.parse().expect("size");
        assert_eq!(&hash_to_b64(&merkle::root(&leaves[..n])), want, "tree size {n}");
    }
}

#[test]
fn a_changed_payload_byte_changes_the_entry_hash() {
    let v = vectors();
    let e = &v.events[0];
    let fields = EntryFields {
        origin: &v.origin,
        subject: &e.subject,
        version: e.aggregate_version,
        event_id: &e.headers["Event-Id"],
        event_type: &e.headers["Event-Type"],
        occurred_at: &e.headers["Occurred-At"],
        actor: &e.headers["Actor"],
        content_type: &e.headers["Content-Type"],
    };
    let prev = hash_from_b64(&e.audit_prev_b64).expect("b64");
    let edited = e.payload_utf8.replace("United States", "United Statez");
    let h = entry_hash(&fields, &prev, &payload_hash(edited.as_bytes())).expect("hash");
    assert_ne!(hash_to_b64(&h), e.audit_hash_b64);
}

/// The signed checkpoint worked example of `audit/FORMAT.md`: the checkpoint of the
/// vectors' five events, signed by the key with seed 32 × 0x07 named `covenant-sealer-1`.
/// Ed25519 signatures are deterministic, so the text is fixed.
#[test]
fn the_format_documents_signed_checkpoint_example() {
    use covenant_audit::note::{Checkpoint, NoteSigner, NoteVerifier, SignedNote};
    let signer = NoteSigner::new("covenant-sealer-1", &[7; 32]).expect("signer");
    let root = covenant_audit::hash_from_b64("hTuBo9YH0F531f3e5l/68BY+tF179hgLT+1eBpe+2+A=").expect("root");
    let body = Checkpoint { origin: "covenant/COVENANT_EVENTS", size: 5, root }.body();
    let text = SignedNote { body: body.clone(), signatures: vec![signer.sign(&body)] }.to_text();
    let vkey = signer.verifier().to_vkey();
    let format = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/FORMAT.md")).expect("FORMAT.md");
    assert!(format.contains(&vkey), "FORMAT.md shows the verifier key {vkey}");
    assert!(format.contains(&text), "FORMAT.md shows the signed checkpoint:\n{text}");
    let parsed = SignedNote::parse(&text).expect("note");
    assert!(NoteVerifier::parse(&vkey).expect("vkey").verify(&parsed.body, &parsed.signatures[0]));
}
