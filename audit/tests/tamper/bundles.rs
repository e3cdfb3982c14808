//! Bundles: exported logs verified offline, in any JSON layout, with payloads redacted, and
//! with their advisory payload hashes edited.

use super::*;

/// Writes `records` (with `payloads`) as a bundle; `line` may rewrite each exported line.
fn write_bundle(
    dir: &std::path::Path,
    records: &[Record],
    payloads: &[Vec<u8>],
    cps: &[CheckpointText],
    reg: &KeyRegistry,
    line: impl Fn(u64, String) -> String,
) {
    use covenant_audit::bundle::{BundleEvent, FORMAT, Manifest, join_checkpoints};
    let manifest = Manifest {
        format: FORMAT.into(),
        origin: ORIGIN.into(),
        stream: "COVENANT_EVENTS".into(),
        exported_at: "2026-12-04T00:00:00Z".into(),
        first_seq: 1,
        last_seq: records.len() as u64,
        events: records.len() as u64,
        config: append_only(),
        redacted_types: vec![],
    };
    let mut text = String::new();
    for (r, p) in records.iter().zip(payloads) {
        let json = serde_json::to_string(&BundleEvent::new(r, None, p, false)).expect("json");
        text.push_str(&line(r.seq, json));
        text.push('\n');
    }
    std::fs::write(dir.join("events.ndjson"), text).expect("events");
    std::fs::write(dir.join("manifest.json"), serde_json::to_string(&manifest).expect("json")).expect("manifest");
    std::fs::write(dir.join("keys.json"), serde_json::to_string(reg).expect("json")).expect("keys");
    std::fs::write(dir.join("checkpoints.txt"), join_checkpoints(cps.iter().map(|c| c.text.as_str()))).expect("cps");
}

/// Lines as any JSON writer may write them (escapes, tabs, another key order) verify as
/// the export's own lines do: a clean bundle of both kinds passes, and an edited payload in
/// either kind of line is a PAYLOAD_EDIT at its sequence.
#[test]
fn bundle_lines_in_any_json_layout_verify_the_same() {
    use covenant_audit::bundle::{VerifyOptions, verify_dir};
    let evs = events(12);
    let payloads: Vec<Vec<u8>> = evs.iter().map(|e| e.payload.clone()).collect();
    let records = chain(&evs);
    let k = signer("sealer-1", 1);
    let cps = texts(vec![note(&records, 12, &[&k])]);
    let reg = registry(&[&k]);
    // Odd lines: the subject's dots escaped, a tab after the first comma, headers first.
    let slow = |seq: u64, json: String| {
        if seq.is_multiple_of(2) {
            return json;
        }
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        let subject = v["subject"].as_str().expect("subject").replace('.', "\\u002e");
        format!(
            "{{\"headers\":{},\t\"seq\":{seq},\"subject\":\"{subject}\",\"payload_sha256\":{},\"payload\":{}}}",
            v["headers"], v["payload_sha256"], v["payload"]
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    write_bundle(dir.path(), &records, &payloads, &cps, &reg, slow);
    let text = std::fs::read_to_string(dir.path().join("events.ndjson")).expect("read");
    assert!(text.lines().next().is_some_and(|l| l.contains("\\u002e") && l.contains('\t')), "seq 1 rewritten");
    for threads in [1, 2] {
        let r = verify_dir(dir.path(), &VerifyOptions { threads, ..Default::default() }, |_| {}).expect("bundle");
        assert_eq!((r.exit_code(), r.events), (0, 12), "{r:#?}");
    }
    // A manifest's event count is the bundle's own claim: an absurd one costs nothing.
    let manifest = dir.path().join("manifest.json");
    let claimed = std::fs::read_to_string(&manifest)
        .expect("manifest")
        .replace("\"events\":12", "\"events\":4611686018427387904");
    assert!(claimed.contains("4611686018427387904"), "{claimed}");
    std::fs::write(&manifest, claimed).expect("manifest");
    let r = verify_dir(dir.path(), &VerifyOptions::default(), |_| {}).expect("bundle");
    assert_eq!((r.exit_code(), r.events), (0, 12), "{r:#?}");
    for edited in [4u64, 7] {
        let mut changed = payloads.clone();
        changed[edited as usize - 1] = br#"{"i":999}"#.to_vec();
        // The bundle keeps the original payload hash beside the edited payload.
        let tampered = |seq: u64, json: String| {
            let json = if seq == edited {
                let mut v: serde_json::Value = serde_json::from_str(&json).expect("json");
                v["payload_sha256"] = hash_to_b64(&payload_hash(&payloads[seq as usize - 1])).into();
                v.to_string()
            } else {
                json
            };
            slow(seq, json)
        };
        write_bundle(dir.path(), &records, &changed, &cps, &reg, tampered);
        let r = verify_dir(dir.path(), &VerifyOptions::default(), |_| {}).expect("bundle");
        assert_eq!(first(&r), (Class::PayloadEdit, Some(edited)), "{r:#?}");
    }
}

/// A bundle whose payloads are redacted here and there verifies on one thread and on two,
/// and an edit beside a redacted line is found at its sequence.
#[test]
fn a_bundle_with_some_payloads_redacted_verifies_and_its_edits_are_found() {
    use covenant_audit::bundle::{VerifyOptions, verify_dir};
    let evs = events(13);
    let payloads: Vec<Vec<u8>> = evs.iter().map(|e| e.payload.clone()).collect();
    let records = chain(&evs);
    let k = signer("sealer-1", 1);
    let cps = texts(vec![note(&records, 13, &[&k])]);
    let reg = registry(&[&k]);
    let redact = |seq: u64, json: String| {
        if [3, 4, 8, 13].contains(&seq) {
            json.split(",\"payload\":").next().expect("a payload").to_owned() + ",\"redacted\":true}"
        } else {
            json
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    write_bundle(dir.path(), &records, &payloads, &cps, &reg, redact);
    let text = std::fs::read_to_string(dir.path().join("events.ndjson")).expect("read");
    assert!(text.lines().nth(7).is_some_and(|l| l.ends_with("\"redacted\":true}")), "seq 8 redacted");
    for threads in [1, 2] {
        let r = verify_dir(dir.path(), &VerifyOptions { threads, ..Default::default() }, |_| {}).expect("bundle");
        assert_eq!((r.exit_code(), r.events), (0, 13), "{r:#?}");
    }
    // Seq 7 (beside redacted 8): its payload edited, its hash kept. Seq 13 (redacted, last
    // and alone): its kept payload hash changed.
    let mut changed = payloads.clone();
    changed[6] = br#"{"i":999}"#.to_vec();
    let tampered = |seq: u64, json: String| {
        let written = hash_to_b64(&payload_hash(&changed[seq as usize - 1]));
        let json = match seq {
            7 => json.replace(&written, &hash_to_b64(&payload_hash(&payloads[6]))),
            13 => json.replace(&written, &hash_to_b64(&payload_hash(b"{}"))),
            _ => json,
        };
        redact(seq, json)
    };
    write_bundle(dir.path(), &records, &changed, &cps, &reg, tampered);
    for threads in [1, 2] {
        let r = verify_dir(dir.path(), &VerifyOptions { threads, ..Default::default() }, |_| {}).expect("bundle");
        let found: Vec<(Class, Option<u64>)> = r.findings.iter().map(|f| (f.class, f.sequence)).collect();
        assert!(found.contains(&(Class::PayloadEdit, Some(7))), "{r:#?}");
        assert!(found.iter().any(|(c, s)| *s == Some(13) && *c != Class::PayloadEdit), "{r:#?}");
    }
}

/// The bundle's `payload_sha256` beside an intact payload is advisory, but a bundle whose
/// advisory hash was changed is an edited bundle: `PAYLOAD_EDIT` at that sequence, exit 1,
/// never "nothing was altered" (on one thread and on two, in both line readers).
#[test]
fn an_advisory_payload_hash_that_disagrees_with_its_intact_payload_is_a_payload_edit() {
    use covenant_audit::bundle::{VerifyOptions, verify_dir};
    let evs = events(9);
    let payloads: Vec<Vec<u8>> = evs.iter().map(|e| e.payload.clone()).collect();
    let records = chain(&evs);
    let k = signer("sealer-1", 1);
    let cps = texts(vec![note(&records, 9, &[&k])]);
    let reg = registry(&[&k]);
    for (edited, reorder_keys) in [(5u64, false), (6, true)] {
        let tampered = |seq: u64, json: String| {
            if seq != edited {
                return json;
            }
            let mut v: serde_json::Value = serde_json::from_str(&json).expect("json");
            v["payload_sha256"] = hash_to_b64(&payload_hash(b"something else")).into();
            if reorder_keys {
                // serde_json's own order (alphabetical) is outside the fast reader's form.
                v.to_string()
            } else {
                let (old, new) = (v["payload_sha256"].take(), hash_to_b64(&payload_hash(&payloads[seq as usize - 1])));
                json.replace(&new, old.as_str().unwrap_or_default())
            }
        };
        let dir = tempfile::tempdir().expect("tempdir");
        write_bundle(dir.path(), &records, &payloads, &cps, &reg, tampered);
        for threads in [1, 2] {
            let r = verify_dir(dir.path(), &VerifyOptions { threads, ..Default::default() }, |_| {}).expect("bundle");
            assert_eq!(r.exit_code(), 1, "{r:#?}");
            assert_eq!(first(&r), (Class::PayloadEdit, Some(edited)), "{r:#?}");
            assert!(r.findings[0].detail.contains("written beside it"), "{r:#?}");
        }
    }
}
