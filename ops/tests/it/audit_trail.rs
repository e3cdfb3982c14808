//! The audit trail end to end on real nats-servers: the sealer (lease, checkpoints, key
//! rotation), `covenant audit verify` on the live stream and on bundles (exit codes,
//! `--json`, redaction), proofs, and tampering that only a stream can show: deletion,
//! copied and duplicated messages, configuration drift.

use std::process::Command;
use std::time::Duration;

use async_nats::jetstream;
use covenant_audit::verify::{Class, KeyRegistry, Report};
use covenant_ops::audit::keys::SealerKey;
use covenant_ops::audit::sealer::{Sealed, Sealer};
use covenant_ops::audit::source;

use crate::harness::{client, log_config, nats, register_country};

fn registry(keys: &[&SealerKey]) -> KeyRegistry {
    KeyRegistry {
        origin: String::new(),
        keys: keys
            .iter()
            .map(|k| covenant_audit::verify::RegistryKey { vkey: k.vkey().expect("vkey"), status: "active".into() })
            .collect(),
    }
}

async fn updates(side: &covenant_commands::CommandSide, code: &str, n: u64) {
    for i in 0..n {
        let cmd =
            covenant_domain::CountryCommand::UpdateGdp { gdp_usd: covenant_domain::Usd::new(1000 + i).expect("usd") };
        side.countries.execute(code, cmd, &covenant_commands::CommandContext::system()).await.expect("update");
    }
}

async fn verify(js: &jetstream::Context, stream: &str, reg: &KeyRegistry, trusted: Option<&str>) -> Report {
    source::verify_stream(js, stream, reg, trusted, 2, |_, _| {}).await.expect("verify")
}

fn classes(r: &Report) -> Vec<(Class, Option<u64>)> {
    r.findings.iter().map(|f| (f.class, f.sequence)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sealer_checkpoints_a_growing_log_one_sealer_at_a_time_and_rotates_keys() {
    let server = nats().await;
    let cfg = log_config();
    let side = crate::harness::side(&server.url(), &cfg).await;
    let js = jetstream::new(client(&server.url()).await);
    register_country(&side, "FR", "France", 100).await;
    updates(&side, "FR", 9).await;

    let a = SealerKey::generate("sealer-a").expect("key");
    let mut sealer = Sealer::open(&js, &cfg.stream, 1, a.clone(), Duration::from_secs(1)).await.expect("sealer");
    assert_eq!(sealer.round().await.expect("round"), Sealed::Checkpoint(10));
    assert_eq!(sealer.round().await.expect("round"), Sealed::Unchanged(10), "no checkpoint when nothing changed");

    // A second sealer finds the lease taken; when the first stops, it takes over from the
    // saved tree state.
    let mut standby = Sealer::open(&js, &cfg.stream, 1, a.clone(), Duration::from_secs(1)).await.expect("sealer");
    assert_eq!(standby.round().await.expect("round"), Sealed::NotLeader);
    updates(&side, "FR", 5).await;
    sealer.release().await;
    assert_eq!(standby.round().await.expect("round"), Sealed::Checkpoint(15));
    assert_eq!(sealer.round().await.expect("round"), Sealed::NotLeader, "the standby holds the lease now");

    let r = verify(&js, &cfg.stream, &registry(&[&a]), None).await;
    assert!(r.findings.is_empty() && r.warnings.is_empty(), "{r:#?}");
    assert_eq!((r.events, r.checkpoints, r.sealed_size, r.unsealed_tail), (15, 2, 15, 0));

    // Rotation: a handover checkpoint signed by both keys, then the new key alone.
    let b = SealerKey::generate("sealer-b").expect("key");
    assert_eq!(standby.handover(b.clone()).await.expect("handover"), 15);
    updates(&side, "FR", 3).await;
    assert_eq!(standby.round().await.expect("round"), Sealed::Checkpoint(18));
    let both = registry(&[&a, &b]);
    let r = verify(&js, &cfg.stream, &both, None).await;
    assert!(r.findings.is_empty(), "the handover verifies: {r:#?}");
    // A checkpoint signed with the retired key fails.
    standby.set_key(a.clone());
    updates(&side, "FR", 1).await;
    assert_eq!(standby.round().await.expect("round"), Sealed::Checkpoint(19));
    let r = verify(&js, &cfg.stream, &both, None).await;
    assert_eq!(classes(&r), vec![(Class::BadSignature, Some(19))], "{r:#?}");
    // An auditor who knows only the new key cannot vouch for the first checkpoints.
    let r = verify(&js, &cfg.stream, &registry(&[&b]), None).await;
    assert!(r.findings.iter().any(|f| f.class == Class::UnknownKey && f.sequence == Some(10)), "{r:#?}");
}

fn covenant(args: &[&str], nats_url: &str, stream: &str, data_dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_covenant"))
        .args(args)
        .env("COVENANT_NATS_URL", nats_url)
        .env("COVENANT_STREAM", stream)
        .env("COVENANT_DATA_DIR", data_dir)
        .env_remove("COVENANT_SEALER_KEY")
        .env("RUST_LOG", "error")
        .output()
        .expect("run covenant");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Rewrites `events.ndjson` of a bundle with `edit` applied to its lines.
fn edit_bundle(src: &std::path::Path, dst: &std::path::Path, edit: impl FnOnce(&mut Vec<serde_json::Value>)) {
    std::fs::create_dir_all(dst).expect("dir");
    for f in ["manifest.json", "checkpoints.txt", "keys.json"] {
        std::fs::copy(src.join(f), dst.join(f)).expect("copy");
    }
    let text = std::fs::read_to_string(src.join("events.ndjson")).expect("events");
    let mut lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    edit(&mut lines);
    let out: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dst.join("events.ndjson"), out).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_seals_verifies_exports_redacts_and_proves() {
    let server = nats().await;
    let cfg = log_config();
    let side = crate::harness::side(&server.url(), &cfg).await;
    register_country(&side, "DE", "Germany", 100).await;
    register_country(&side, "IT", "Italy", 50).await;
    updates(&side, "DE", 20).await;
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let url = server.url();
    let run = |args: &[&str]| covenant(args, &url, &cfg.stream, &data);

    let (code, out) = run(&["audit", "verify"]);
    assert_eq!(code, 2, "no checkpoint yet: warnings only: {out}");
    assert!(out.contains("no checkpoint"), "{out}");
    let (code, out) = run(&["audit", "seal", "--once"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("checkpoint appended: size 22") && out.contains("created sealer key"), "{out}");
    let (code, out) = run(&["audit", "keys"]);
    assert!(code == 0 && out.contains("active") && out.contains("covenant-sealer-1+"), "{out}");
    updates(&side, "IT", 2).await;

    let (code, out) = run(&["audit", "verify", "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(v["verdict"], "ok");
    assert_eq!(
        (v["events"].as_u64(), v["sealed_size"].as_u64(), v["unsealed_tail"].as_u64()),
        (Some(24), Some(22), Some(2))
    );

    // Proofs: inclusion of an event, consistency from an earlier size; a tampered proof fails.
    let (code, proof) = run(&["audit", "prove", "7"]);
    assert_eq!(code, 0, "{proof}");
    let proof_file = dir.path().join("proof.json");
    std::fs::write(&proof_file, &proof).expect("write");
    let (code, out) = run(&["audit", "check-proof", proof_file.to_str().expect("path")]);
    assert!(code == 0 && out.contains("valid"), "{out}");
    let mut bad: serde_json::Value = serde_json::from_str(&proof).expect("json");
    bad["sequence"] = 8.into();
    std::fs::write(&proof_file, bad.to_string()).expect("write");
    let (code, out) = run(&["audit", "check-proof", proof_file.to_str().expect("path")]);
    assert!(code == 1 && out.contains("INVALID"), "{out}");
    let (code, proof) = run(&["audit", "consistency", "5"]);
    assert_eq!(code, 0, "{proof}");
    std::fs::write(&proof_file, &proof).expect("write");
    let (code, out) = run(&["audit", "check-proof", proof_file.to_str().expect("path")]);
    assert!(code == 0 && out.contains("valid"), "{out}");
    let (code, out) = run(&["audit", "prove", "23"]);
    assert!(code != 0 && out.contains("not sealed"), "{out}");

    // Export with redaction: still verifies, offline, with the payloads gone.
    let bundle = dir.path().join("bundle");
    let (code, out) = run(&["audit", "export", bundle.to_str().expect("path"), "--redact", "country.registered"]);
    assert!(code == 0 && out.contains("exported 24 events (2 redacted)"), "{out}");
    let text = std::fs::read_to_string(bundle.join("events.ndjson")).expect("events");
    assert!(text.lines().filter(|l| l.contains("\"redacted\":true")).count() == 2 && !text.contains("Germany"));
    let offline = |b: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_covenant"))
            .args(["audit", "verify", "--json", "--bundle", b.to_str().expect("path")])
            .env("COVENANT_NATS_URL", "nats://127.0.0.1:1") // nothing listens: offline means offline
            .env("COVENANT_DATA_DIR", dir.path().join("nowhere"))
            .output()
            .expect("run");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        });
        (out.status.code(), v)
    };
    let (code, v) = offline(&bundle);
    assert_eq!((code, v["verdict"].as_str()), (Some(0), Some("ok")), "{v}");

    // Tampered bundles: a payload edit, a deletion in the middle.
    let edited = dir.path().join("edited");
    edit_bundle(&bundle, &edited, |lines| {
        use base64::Engine as _;
        let line = &mut lines[9];
        let fake = base64::engine::general_purpose::STANDARD.encode(br#"{"new_gdp_usd":"1"}"#);
        line["payload"] = fake.into();
    });
    let (code, v) = offline(&edited);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(
        (v["first_bad"]["class"].as_str(), v["first_bad"]["sequence"].as_u64()),
        (Some("PAYLOAD_EDIT"), Some(10)),
        "{v}"
    );
    let gap = dir.path().join("gap");
    edit_bundle(&bundle, &gap, |lines| {
        lines.remove(12);
    });
    let (code, v) = offline(&gap);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!((v["first_bad"]["class"].as_str(), v["first_bad"]["sequence"].as_u64()), (Some("GAP"), Some(13)), "{v}");

    // A trusted checkpoint from later than the log shows: the unsealed tail was cut.
    let (code, out) = run(&["audit", "seal", "--once"]);
    assert_eq!(code, 0, "{out}");
    let cps = source::checkpoints(&jetstream::new(client(&url).await), &cfg.stream).await.expect("checkpoints");
    let trusted = dir.path().join("trusted.txt");
    std::fs::write(&trusted, &cps.last().expect("checkpoint").text).expect("write");
    let cut = dir.path().join("cut");
    edit_bundle(&bundle, &cut, |lines| lines.truncate(23));
    let out = Command::new(env!("CARGO_BIN_EXE_covenant"))
        .args([
            "audit",
            "verify",
            "--bundle",
            cut.to_str().expect("p"),
            "--trusted-checkpoint",
            trusted.to_str().expect("p"),
        ])
        .env("COVENANT_DATA_DIR", dir.path().join("nowhere"))
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("TRUNCATION") && text.contains("sequence 24"), "{text}");

    // Usage errors exit 3.
    let (code, out) = run(&["audit", "verify", "--bundle", "/nonexistent/bundle"]);
    assert_eq!(code, 3, "{out}");
}

/// Copies every message of `stream` (server `from`) into a stream of the same name on
/// `to`, created with `config`, so that stream-level tampering can be staged there.
async fn copy_stream(
    from: &jetstream::Context,
    to: &jetstream::Context,
    stream: &str,
    config: jetstream::stream::Config,
) {
    to.create_stream(config).await.expect("create the copy");
    let s = from.get_stream(stream).await.expect("stream");
    let last = s.get_info().await.expect("info").state.last_sequence;
    let mut msgs = Vec::new();
    source::scan(&s, 1, last, false, |_, m, _| {
        msgs.push((
            m.message.subject.to_string(),
            m.message.headers.clone().unwrap_or_default(),
            m.message.payload.clone(),
        ))
    })
    .await
    .expect("scan");
    for (subject, headers, payload) in msgs {
        republish(to, &subject, headers, payload).await;
    }
}

async fn republish(js: &jetstream::Context, subject: &str, headers: async_nats::HeaderMap, payload: bytes::Bytes) {
    let mut clean = async_nats::HeaderMap::new();
    for (k, vs) in headers.iter() {
        if !k.to_string().starts_with("Nats-") {
            for v in vs {
                clean.append(k.clone(), v.clone());
            }
        }
    }
    js.publish_with_headers(subject.to_owned(), clean, payload).await.expect("publish").await.expect("ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_tampering_deletion_copies_duplicates_and_config_drift() {
    let (server, forger) = (nats().await, nats().await);
    let cfg = log_config();
    let side = crate::harness::side(&server.url(), &cfg).await;
    register_country(&side, "ES", "Spain", 100).await;
    updates(&side, "ES", 11).await;
    // Another log, whose events will be copied in.
    let other = log_config();
    let other_side = crate::harness::side(&server.url(), &other).await;
    register_country(&other_side, "PT", "Portugal", 7).await;

    let js = jetstream::new(client(&server.url()).await);
    let fjs = jetstream::new(client(&forger.url()).await);
    let mut loose = cfg.stream_config();
    loose.deny_delete = false;
    loose.deny_purge = false;
    loose.allow_rollup = true;
    loose.max_messages_per_subject = 50;
    copy_stream(&js, &fjs, &cfg.stream, loose).await;
    let copy = fjs.get_stream(&cfg.stream).await.expect("copy");
    // Untouched apart from its configuration.
    let reg = KeyRegistry::default();
    let r = verify(&fjs, &cfg.stream, &reg, None).await;
    assert_eq!(classes(&r), vec![(Class::Config, None); 4], "{r:#?}");
    assert!(r.findings.iter().any(|f| f.detail.contains("deny_delete")), "{r:#?}");

    // Deletion in the middle.
    copy.delete_message(5).await.expect("delete");
    // A message from the other log, then a replay of one of ours.
    let o = other_side.log.stream().get_raw_message(1).await.expect("other");
    republish(&fjs, &format!("{}.country.PT", cfg.subject_prefix), o.headers, o.payload).await;
    let mine = js.get_stream(&cfg.stream).await.expect("stream").get_raw_message(3).await.expect("msg");
    republish(&fjs, &mine.subject, mine.headers, mine.payload).await;

    let r = verify(&fjs, &cfg.stream, &reg, None).await;
    let found = classes(&r);
    assert!(found.contains(&(Class::Gap, Some(5))), "{r:#?}");
    assert!(found.contains(&(Class::ForgedInsertion, Some(13))), "the copied message: {r:#?}");
    assert!(found.contains(&(Class::ForgedInsertion, Some(14))), "the replayed message: {r:#?}");
    assert!(r.findings.iter().any(|f| f.sequence == Some(14) && f.detail.contains("sequence 3")), "{r:#?}");
    assert_eq!(r.first_bad().and_then(|f| f.sequence), Some(5));

    // The original stream is untouched and its configuration right.
    let r = verify(&js, &cfg.stream, &reg, None).await;
    assert!(r.findings.is_empty(), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_audit_status_reads_the_checkpoints_and_the_audit_projection() {
    let app = crate::harness::spawn_app().await;
    let viewer = app.user_token("auditor@example.org", covenant_domain::Role::Viewer).await;
    register_country(&app.side, "AT", "Austria", 10).await;
    let last = app.side.log.last_sequence().await.expect("info");
    let q = "{ auditStatus { lastSequence projectedSequence checkpointSize checkpointRoot checkpointAt checkpointSigners unsealedTail } }";
    let (_, body) = app.graphql(q, Some(&viewer)).await;
    let s = &body["data"]["auditStatus"];
    assert_eq!((s["lastSequence"].as_u64(), s["checkpointSize"].as_u64()), (Some(last), Some(0)), "{body}");
    assert_eq!(s["unsealedTail"].as_u64(), Some(last));
    assert!(s["checkpointRoot"].is_null());

    let key = SealerKey::generate("sealer-api").expect("key");
    let mut sealer =
        Sealer::open(app.side.log.jetstream(), &app.side.log.config().stream, 1, key, Duration::from_secs(1))
            .await
            .expect("sealer");
    assert_eq!(sealer.round().await.expect("round"), Sealed::Checkpoint(last));
    let caught_up = crate::harness::eventually(Duration::from_secs(10), async || {
        let (_, body) = app.graphql(q, Some(&viewer)).await;
        body["data"]["auditStatus"]["projectedSequence"].as_u64() == Some(last)
    })
    .await;
    assert!(caught_up, "the audit projection reaches the last sequence");
    let (_, body) = app.graphql(q, Some(&viewer)).await;
    let s = &body["data"]["auditStatus"];
    assert_eq!((s["checkpointSize"].as_u64(), s["unsealedTail"].as_u64()), (Some(last), Some(0)), "{body}");
    assert_eq!(s["checkpointSigners"][0], "sealer-api");
    let cps = source::checkpoints(app.side.log.jetstream(), &app.side.log.config().stream).await.expect("cps");
    assert!(cps[0].text.contains(s["checkpointRoot"].as_str().expect("root")), "{body}");
    // auditEvents reads the same log: its newest event is the last sequence.
    let (_, body) = app.graphql("{ auditEvents(last: 1) { sequence eventType } }", Some(&viewer)).await;
    assert_eq!(body["data"]["auditEvents"][0]["sequence"].as_u64(), Some(last), "{body}");
    app.stop().await;
}
