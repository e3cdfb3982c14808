//! Checkpoints and keys: forks, key handovers, retired and unknown keys; and events that do
//! not belong to the log (repeated ids, copies from another stream, foreign checkpoints).

use super::*;

#[test]
fn two_checkpoints_of_one_size_with_different_roots_are_a_fork() {
    let k = signer("sealer-1", 1);
    let records = chain(&events(30));
    let mut other = events(30);
    other[2].payload = b"{}".to_vec();
    let other = chain(&other);
    let cps = texts(vec![note(&records, 20, &[&k]), note(&other, 20, &[&k])]);
    let r = verify(records.clone(), &cps, &registry(&[&k]), None);
    assert_eq!(first(&r), (Class::Fork, Some(20)), "{r:#?}");
    // And a trusted checkpoint from another history.
    let cps = texts(vec![note(&records, 30, &[&k])]);
    let r = verify(records, &cps, &registry(&[&k]), Some(&note(&other, 25, &[&k])));
    assert_eq!(first(&r).0, Class::Fork, "{r:#?}");
}

#[test]
fn key_rotation_with_a_handover_verifies() {
    let (a, b) = (signer("sealer-a", 1), signer("sealer-b", 2));
    let records = chain(&events(40));
    let cps = texts(vec![
        note(&records, 10, &[&a]),
        note(&records, 20, &[&a, &b]), // handover
        note(&records, 30, &[&b]),
        note(&records, 40, &[&b]),
    ]);
    let r = verify(records, &cps, &registry(&[&a, &b]), None);
    assert!(r.findings.is_empty(), "{r:#?}");
}

#[test]
fn the_old_key_after_retirement_fails() {
    let (a, b) = (signer("sealer-a", 1), signer("sealer-b", 2));
    let records = chain(&events(40));
    let cps = texts(vec![note(&records, 10, &[&a]), note(&records, 20, &[&a, &b]), note(&records, 30, &[&a])]);
    let r = verify(records, &cps, &registry(&[&a, &b]), None);
    assert_eq!(first(&r), (Class::BadSignature, Some(30)), "{r:#?}");
    assert!(r.findings[0].detail.contains("retired"), "{r:#?}");
}

#[test]
fn a_new_key_without_a_handover_fails() {
    let (a, b) = (signer("sealer-a", 1), signer("sealer-b", 2));
    let records = chain(&events(40));
    let cps = texts(vec![note(&records, 10, &[&a]), note(&records, 20, &[&b])]);
    let r = verify(records, &cps, &registry(&[&a, &b]), None);
    assert_eq!(first(&r), (Class::BadSignature, Some(20)), "{r:#?}");
    assert!(r.findings[0].detail.contains("handover"), "{r:#?}");
}

#[test]
fn an_unknown_key_fails() {
    let (a, x) = (signer("sealer-a", 1), signer("stranger", 9));
    let records = chain(&events(20));
    let cps = texts(vec![note(&records, 10, &[&a]), note(&records, 20, &[&x])]);
    let r = verify(records, &cps, &registry(&[&a]), None);
    assert_eq!(first(&r), (Class::UnknownKey, Some(20)), "{r:#?}");
}

#[test]
fn a_duplicate_event_id() {
    let (mut records, cps, reg) = sealed(30, &[]);
    let mut dup = records[4].clone();
    dup.seq = 31;
    records.push(dup);
    let r = verify(records, &cps, &reg, None);
    assert_eq!(first(&r), (Class::ForgedInsertion, Some(31)), "{r:#?}");
    assert!(r.findings[0].detail.contains("sequence 5"), "{r:#?}");
}

#[test]
fn a_message_copied_in_from_another_stream() {
    let (mut records, cps, reg) = sealed(30, &[]);
    let mut foreign = chain_in("covenant/OTHER_EVENTS", &events(40)).remove(33);
    foreign.seq = 31;
    foreign.event_id = Some("00000000-0000-4000-8000-777777777777".into());
    records.push(foreign);
    let r = verify(records, &cps, &reg, None);
    assert_eq!(first(&r), (Class::ForgedInsertion, Some(31)), "{r:#?}");
    assert!(r.findings[0].detail.contains("another log"), "{r:#?}");
}

#[test]
fn a_checkpoint_of_another_log_is_refused() {
    let k = signer("sealer-1", 1);
    let records = chain(&events(10));
    let body = Checkpoint { origin: "covenant/OTHER", size: 10, root: root(&leaves(&records)) }.body();
    let text = SignedNote { body: body.clone(), signatures: vec![k.sign(&body)] }.to_text();
    let r = verify(records, &texts(vec![text]), &registry(&[&k]), None);
    assert_eq!(first(&r).0, Class::ForgedInsertion, "{r:#?}");
}
