//! Sealing and opening: round trips, and every way a sealed field must refuse to open.

use super::*;

const ADA: Place<'static> = Place { owner: "7f1e0c4a-0000-4000-8000-000000000001", event_type: "user.registered" };
const PAYLOAD: &[u8] = br#"{"email":"ada@example.org","role":"viewer"}"#;

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("json")
}

#[test]
fn a_sealed_field_holds_no_plaintext_and_opens_with_its_key() {
    let key = DataKey::generate();
    let sealed = seal(PAYLOAD, &["email"], ADA, &key).expect("seals");
    let text = String::from_utf8(sealed.clone()).expect("utf-8");
    assert!(!text.contains("ada@") && !text.contains("example.org"), "{text}");
    assert_eq!(json(&sealed)["role"], "viewer");
    assert_eq!(json(&sealed)["email"]["sealed"], ALGORITHM);
    assert!(is_sealed(&sealed, &["email"]) && !is_sealed(PAYLOAD, &["email"]));
    assert_eq!(json(&open(&sealed, &["email"], ADA, Some(&key)).expect("opens")), json(PAYLOAD));
}

#[test]
fn the_same_value_seals_differently_each_time() {
    let key = DataKey::generate();
    let a = seal(PAYLOAD, &["email"], ADA, &key).expect("seals");
    let b = seal(PAYLOAD, &["email"], ADA, &key).expect("seals");
    assert_ne!(a, b, "a fresh nonce per field");
}

#[test]
fn without_the_key_a_sealed_field_reads_as_null() {
    let sealed = seal(PAYLOAD, &["email"], ADA, &DataKey::generate()).expect("seals");
    let opened = json(&open(&sealed, &["email"], ADA, None).expect("opens"));
    assert_eq!(opened, serde_json::json!({"email": null, "role": "viewer"}));
}

#[test]
fn another_key_another_owner_or_another_field_does_not_open_it() {
    let key = DataKey::generate();
    let sealed = seal(PAYLOAD, &["email"], ADA, &key).expect("seals");
    let other = DataKey::generate();
    assert!(matches!(open(&sealed, &["email"], ADA, Some(&other)), Err(SealError::Unopenable { .. })));
    let bob = Place { owner: "7f1e0c4a-0000-4000-8000-000000000002", ..ADA };
    assert!(matches!(open(&sealed, &["email"], bob, Some(&key)), Err(SealError::Unopenable { .. })));
    let login = Place { event_type: "user.login", ..ADA };
    assert!(matches!(open(&sealed, &["email"], login, Some(&key)), Err(SealError::Unopenable { .. })));
    // The envelope moved to another field name.
    let moved = String::from_utf8(sealed).expect("utf-8").replace("\"email\"", "\"ip\"");
    assert!(matches!(open(moved.as_bytes(), &["ip"], ADA, Some(&key)), Err(SealError::Unopenable { .. })));
}

#[test]
fn an_altered_ciphertext_does_not_open() {
    let key = DataKey::generate();
    let sealed = json(&seal(PAYLOAD, &["email"], ADA, &key).expect("seals"));
    let mut raw = STANDARD.decode(sealed["email"]["ct"].as_str().expect("ct")).expect("base64");
    let last = raw.len() - 1;
    raw[last] ^= 1;
    let altered = serde_json::json!({"email": {"sealed": ALGORITHM, "ct": STANDARD.encode(raw)}, "role": "viewer"});
    let altered = serde_json::to_vec(&altered).expect("json");
    assert!(matches!(open(&altered, &["email"], ADA, Some(&key)), Err(SealError::Unopenable { .. })));
}

#[test]
fn malformed_envelopes_and_payloads_are_errors_not_panics() {
    let key = DataKey::generate();
    for bad in [
        br#"{"email":{"sealed":"ROT13","ct":"AAAA"}}"#.as_slice(),
        br#"{"email":{"sealed":"XChaCha20-Poly1305"}}"#,
        br#"{"email":{"sealed":"XChaCha20-Poly1305","ct":"***"}}"#,
        br#"{"email":{"sealed":"XChaCha20-Poly1305","ct":"AAAA"}}"#,
    ] {
        assert!(matches!(open(bad, &["email"], ADA, Some(&key)), Err(SealError::Malformed { .. })));
    }
    assert!(matches!(seal(b"[1]", &["email"], ADA, &key), Err(SealError::NotAnObject(None))));
    assert!(matches!(open(b"{", &["email"], ADA, None), Err(SealError::NotAnObject(Some(_)))));
}

#[test]
fn plaintext_from_before_sealing_and_absent_fields_are_left_as_they_are() {
    let key = DataKey::generate();
    assert_eq!(json(&open(PAYLOAD, &["email"], ADA, None).expect("opens")), json(PAYLOAD));
    assert_eq!(
        json(&seal(br#"{"role":"viewer"}"#, &["email"], ADA, &key).expect("seals")),
        serde_json::json!({"role": "viewer"})
    );
}

#[test]
fn keys_round_trip_through_their_bytes_and_never_print() {
    let key = DataKey::generate();
    assert_eq!(DataKey::from_bytes(key.as_bytes()).expect("32 bytes").as_bytes(), key.as_bytes());
    assert!(DataKey::from_bytes(&[0; 31]).is_none());
    assert_eq!(format!("{key:?}"), "DataKey(..)");
}
