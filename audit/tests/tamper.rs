//! Every tamper class of DESIGN section 5 on a synthetic log: each test changes a sealed
//! log the way an attacker would and asserts the class and the first bad sequence.
//! (The same verifier runs on live streams and bundles in the integration tests.)

use covenant_audit::entry::{EntryFields, entry_hash, genesis, payload_hash};
use covenant_audit::merkle::root;
use covenant_audit::note::{Checkpoint, NoteSigner, SignedNote};
use covenant_audit::verify::{
    CheckpointText, Class, KeyRegistry, Record, RegistryKey, Report, StreamFacts, Verifier, check_config,
};
use covenant_audit::{Hash, hash_to_b64};

#[path = "tamper/bundles.rs"]
mod bundles;
#[path = "tamper/checkpoints.rs"]
mod checkpoints;

const ORIGIN: &str = "covenant/COVENANT_EVENTS";
const SUBJECTS: [&str; 3] = ["covenant.events.country.AA", "covenant.events.country.BB", "covenant.events.project.CC"];

fn signer(name: &str, seed: u8) -> NoteSigner {
    NoteSigner::new(name, &[seed; 32]).expect("signer")
}

fn registry(keys: &[&NoteSigner]) -> KeyRegistry {
    KeyRegistry {
        origin: ORIGIN.into(),
        keys: keys.iter().map(|k| RegistryKey { vkey: k.verifier().to_vkey(), status: "active".into() }).collect(),
    }
}

/// A payload and its event, before chaining.
#[derive(Clone)]
struct Event {
    subject: String,
    event_id: String,
    actor: String,
    payload: Vec<u8>,
}

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event {
            subject: SUBJECTS[i % 3].into(),
            event_id: format!("00000000-0000-4000-8000-{i:012}"),
            actor: "system".into(),
            payload: format!(r#"{{"i":{i}}}"#).into_bytes(),
        })
        .collect()
}

/// Chains `events` as the appender does: per-subject versions and hashes, sequences 1..
fn chain_in(origin: &str, events: &[Event]) -> Vec<Record> {
    let mut tips: std::collections::HashMap<String, (u64, Hash)> = Default::default();
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let tip = tips.entry(e.subject.clone()).or_insert((0, genesis(origin, &e.subject).expect("genesis")));
            let version = tip.0 + 1;
            let fields = EntryFields {
                origin,
                subject: &e.subject,
                version,
                event_id: &e.event_id,
                event_type: "country.update",
                occurred_at: "2026-11-22T10:00:00Z",
                actor: &e.actor,
                content_type: "application/json",
            };
            let ph = payload_hash(&e.payload);
            let hash = entry_hash(&fields, &tip.1, &ph).expect("hash");
            let r = Record {
                seq: i as u64 + 1,
                subject: e.subject.clone(),
                audit_v: Some("1".into()),
                prev: Some(hash_to_b64(&tip.1)),
                hash: Some(hash_to_b64(&hash)),
                event_id: Some(e.event_id.clone()),
                event_type: Some("country.update".into()),
                version: Some(version.to_string()),
                occurred_at: Some("2026-11-22T10:00:00Z".into()),
                actor: Some(e.actor.clone()),
                content_type: Some("application/json".into()),
                payload_sha256: ph,
                written_payload_sha256: Some(ph),
            };
            *tip = (version, hash);
            r
        })
        .collect()
}

fn chain(events: &[Event]) -> Vec<Record> {
    chain_in(ORIGIN, events)
}

fn leaves(records: &[Record]) -> Vec<Hash> {
    records.iter().map(|r| covenant_audit::hash_from_b64(r.hash.as_deref().expect("hash")).expect("b64")).collect()
}

fn note(records: &[Record], size: usize, signers: &[&NoteSigner]) -> String {
    let cp = Checkpoint { origin: ORIGIN, size: size as u64, root: root(&leaves(records)[..size]) };
    SignedNote { body: cp.body(), signatures: signers.iter().map(|s| s.sign(&cp.body())).collect() }.to_text()
}

fn texts(notes: Vec<String>) -> Vec<CheckpointText> {
    notes.into_iter().enumerate().map(|(i, text)| CheckpointText { index: i as u64 + 1, text }).collect()
}

fn verify(records: Vec<Record>, cps: &[CheckpointText], reg: &KeyRegistry, trusted: Option<&str>) -> Report {
    let mut v = Verifier::new(ORIGIN, cps, reg, trusted, 1);
    for r in records {
        v.push(r);
    }
    v.finish()
}

/// The first finding: its class and sequence.
fn first(report: &Report) -> (Class, Option<u64>) {
    let f = report.findings.first().unwrap_or_else(|| panic!("a finding expected: {report:#?}"));
    (f.class, f.sequence)
}

fn sealed(n: usize, sizes: &[usize]) -> (Vec<Record>, Vec<CheckpointText>, KeyRegistry) {
    let k = signer("sealer-1", 1);
    let records = chain(&events(n));
    let cps = texts(sizes.iter().map(|s| note(&records, *s, &[&k])).collect());
    (records, cps, registry(&[&k]))
}

#[test]
fn an_untouched_log_passes() {
    let (records, cps, reg) = sealed(30, &[10, 20, 30]);
    let r = verify(records, &cps, &reg, None);
    assert!(r.findings.is_empty() && r.warnings.is_empty(), "{r:#?}");
    assert_eq!((r.events, r.sealed_size, r.unsealed_tail, r.exit_code()), (30, 30, 0, 0));
}

#[test]
fn the_unsealed_tail_is_reported() {
    let (records, cps, reg) = sealed(35, &[10, 30]);
    let r = verify(records, &cps, &reg, None);
    assert_eq!((r.sealed_size, r.unsealed_tail, r.exit_code()), (30, 5, 0), "{r:#?}");
}

#[test]
fn payload_edit() {
    let (mut records, cps, reg) = sealed(30, &[30]);
    records[11].payload_sha256 = payload_hash(br#"{"i":999}"#);
    let r = verify(records, &cps, &reg, None);
    assert_eq!(first(&r), (Class::PayloadEdit, Some(12)), "{r:#?}");
    assert_eq!(r.findings[0].subject.as_deref(), Some(SUBJECTS[11 % 3]));
    assert_eq!(r.findings.len(), 1, "one edit, one finding: {r:#?}");
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn header_edit() {
    let (mut records, cps, reg) = sealed(30, &[30]);
    records[6].actor = Some("someone-else".into());
    let r = verify(records, &cps, &reg, None);
    assert_eq!(first(&r), (Class::HeaderEdit, Some(7)), "{r:#?}");
    assert_eq!(r.findings.len(), 1, "{r:#?}");
}

#[test]
fn a_missing_or_malformed_audit_header_is_a_header_edit() {
    let (mut records, cps, reg) = sealed(30, &[]);
    records[3].version = Some("four".into());
    records[8].hash = None;
    let r = verify(records, &cps, &reg, None);
    assert_eq!(first(&r), (Class::HeaderEdit, Some(4)), "{r:#?}");
    assert!(r.findings.iter().any(|f| f.class == Class::HeaderEdit && f.sequence == Some(9)), "{r:#?}");
}

#[test]
fn deletion_in_the_middle_is_a_gap() {
    let (mut records, cps, reg) = sealed(30, &[30]);
    records.remove(14);
    let r = verify(records, &cps, &reg, None);
    assert_eq!(first(&r), (Class::Gap, Some(15)), "{r:#?}");
}

#[test]
fn a_stream_that_lost_its_head_is_a_gap() {
    let (records, cps, reg) = sealed(30, &[30]);
    let mut v = Verifier::new(ORIGIN, &cps, &reg, None, 5);
    for r in records.into_iter().skip(4) {
        v.push(r);
    }
    let r = v.finish();
    assert_eq!(first(&r), (Class::Gap, Some(1)), "{r:#?}");
}

/// Swaps the contents of positions `a` and `b`, keeping sequences in order (what a
/// rewrite of the stream in another order looks like).
fn swap(records: &mut [Record], a: usize, b: usize) {
    let (sa, sb) = (records[a].seq, records[b].seq);
    records.swap(a, b);
    records[a].seq = sa;
    records[b].seq = sb;
}

#[test]
fn adjacent_reorder() {
    let (mut records, cps, reg) = sealed(30, &[]);
    // Positions 3 and 6 are consecutive events of the same subject (i % 3 == 0).
    swap(&mut records, 3, 6);
    let r = verify(records, &cps, &reg, None);
    assert_eq!(first(&r), (Class::Reorder, Some(4)), "{r:#?}");
}

#[test]
fn distant_reorder() {
    let (mut records, cps, reg) = sealed(60, &[]);
    swap(&mut records, 4, 52);
    let r = verify(records, &cps, &reg, None);
    assert_eq!(first(&r), (Class::Reorder, Some(5)), "{r:#?}");
    assert!(r.findings.iter().all(|f| f.class == Class::Reorder), "{r:#?}");
}

#[test]
fn reordering_across_aggregates_breaks_the_signed_root() {
    // Events of different aggregates swapped: each chain is intact, the Merkle tree is not.
    let (mut records, cps, reg) = sealed(30, &[10, 20, 30]);
    swap(&mut records, 13, 14);
    let r = verify(records, &cps, &reg, None);
    assert_eq!(first(&r), (Class::ForgedInsertion, Some(11)), "after the last checkpoint that holds: {r:#?}");
}

#[test]
fn tail_truncation_below_a_checkpoint() {
    let (mut records, cps, reg) = sealed(30, &[10, 30]);
    records.truncate(26);
    let r = verify(records, &cps, &reg, None);
    assert_eq!(first(&r), (Class::Truncation, Some(27)), "{r:#?}");
}

#[test]
fn truncation_of_the_unsealed_tail_is_caught_by_a_trusted_checkpoint() {
    let k = signer("sealer-1", 1);
    let records = chain(&events(40));
    // The log's own checkpoints stop at 30; the auditor saw one at 38 earlier.
    let cps = texts(vec![note(&records, 30, &[&k])]);
    let trusted = note(&records, 38, &[&k]);
    let mut cut = records.clone();
    cut.truncate(35);
    let reg = registry(&[&k]);
    let without = verify(cut.clone(), &cps, &reg, None);
    assert!(without.findings.is_empty(), "undetectable without the trusted checkpoint: {without:#?}");
    let r = verify(cut, &cps, &reg, Some(&trusted));
    assert!(r.findings.iter().any(|f| f.class == Class::Truncation && f.sequence == Some(36)), "{r:#?}");
    assert!(r.findings.iter().any(|f| f.class == Class::Rollback), "{r:#?}");
}

#[test]
fn a_log_behind_the_trusted_checkpoint_is_a_rollback() {
    let k = signer("sealer-1", 1);
    let records = chain(&events(40));
    // Every event is there, but the checkpoints were rolled back to size 20.
    let cps = texts(vec![note(&records, 10, &[&k]), note(&records, 20, &[&k])]);
    let trusted = note(&records, 30, &[&k]);
    let r = verify(records, &cps, &registry(&[&k]), Some(&trusted));
    assert_eq!(first(&r), (Class::Rollback, Some(21)), "{r:#?}");
}

#[test]
fn a_forged_insertion_with_every_later_hash_recomputed() {
    let k = signer("sealer-1", 1);
    let original = events(30);
    let records = chain(&original);
    let cps = texts(vec![note(&records, 10, &[&k]), note(&records, 20, &[&k]), note(&records, 30, &[&k])]);
    // Insert a new event at position 14 and recompute every chain: internally consistent.
    let mut forged = original.clone();
    forged.insert(
        14,
        Event {
            subject: SUBJECTS[0].into(),
            event_id: "00000000-0000-4000-8000-999999999999".into(),
            actor: "system".into(),
            payload: br#"{"forged":true}"#.to_vec(),
        },
    );
    forged.truncate(30);
    let r = verify(chain(&forged), &cps, &registry(&[&k]), None);
    assert_eq!(first(&r), (Class::ForgedInsertion, Some(11)), "{r:#?}");
    assert!(r.findings[0].detail.contains("checkpoint #2"), "{r:#?}");
}

#[test]
fn a_naive_insertion_breaks_the_chain() {
    let (mut records, cps, reg) = sealed(30, &[]);
    // A copy of an event with a new id and payload, spliced in without recomputing.
    let mut extra = records[9].clone();
    extra.event_id = Some("00000000-0000-4000-8000-888888888888".into());
    records.insert(20, extra);
    for (i, r) in records.iter_mut().enumerate() {
        r.seq = i as u64 + 1;
    }
    let r = verify(records, &cps, &reg, None);
    assert_eq!(first(&r).1, Some(21), "{r:#?}");
    assert!(matches!(first(&r).0, Class::Reorder | Class::HeaderEdit | Class::ForgedInsertion), "{r:#?}");
}

#[test]
fn a_full_rewrite_without_the_signing_key() {
    let k = signer("sealer-1", 1);
    let original = chain(&events(30));
    let mut rewritten = events(30);
    rewritten[5].payload = br#"{"i":-5}"#.to_vec();
    let rewritten = chain(&rewritten);
    let reg = registry(&[&k]);
    // Kept the old checkpoints: the roots give it away.
    let old = texts(vec![note(&original, 30, &[&k])]);
    assert_eq!(first(&verify(rewritten.clone(), &old, &reg, None)).0, Class::ForgedInsertion);
    // Signed new checkpoints with their own key: unknown to the registry.
    let mallory = signer("sealer-1", 66);
    let own = texts(vec![note(&rewritten, 30, &[&mallory])]);
    let r = verify(rewritten.clone(), &own, &reg, None);
    assert_eq!(first(&r), (Class::UnknownKey, Some(30)), "{r:#?}");
    // Forged signature bytes under the real key's name and id.
    let mut forged = SignedNote::parse(&note(&rewritten, 30, &[&k])).expect("note");
    forged.signatures[0].signature = mallory.sign(&forged.body).signature;
    let r = verify(rewritten, &texts(vec![forged.to_text()]), &reg, None);
    assert_eq!(first(&r), (Class::BadSignature, Some(30)), "{r:#?}");
}

/// A stream configured as the log needs: append-only, kept seven years.
fn append_only() -> StreamFacts {
    StreamFacts {
        deny_delete: true,
        deny_purge: true,
        allow_rollup: false,
        max_msgs_per_subject: -1,
        max_msgs: -1,
        max_bytes: -1,
        max_age_secs: 7 * 365 * 24 * 3600,
    }
}

#[test]
fn stream_configuration_drift() {
    let good = append_only();
    assert!(check_config(&good).is_empty());
    for (bad, word) in [
        (StreamFacts { deny_delete: false, ..good }, "deny_delete"),
        (StreamFacts { deny_purge: false, ..good }, "deny_purge"),
        (StreamFacts { allow_rollup: true, ..good }, "allow_rollup"),
        (StreamFacts { max_msgs_per_subject: 1, ..good }, "max_msgs_per_subject"),
        (StreamFacts { max_msgs: 1000, ..good }, "size limit"),
        (StreamFacts { max_age_secs: 86_400, ..good }, "max_age"),
    ] {
        let f = check_config(&bad);
        assert_eq!(f.len(), 1, "{word}: {f:?}");
        assert_eq!(f[0].class, Class::Config);
        assert!(f[0].detail.contains(word), "{f:?}");
    }
}

#[test]
fn no_checkpoint_is_a_warning_exit_2() {
    let (records, cps, reg) = sealed(5, &[]);
    let r = verify(records, &cps, &reg, None);
    assert_eq!(r.exit_code(), 2, "{r:#?}");
}
