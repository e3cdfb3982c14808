//! The per-aggregate chains of a seeded stream recompute from the stored bytes alone: raw
//! messages are read back and every `Audit-Prev` / `Audit-Hash` is checked with the audit
//! crate's functions, without the command side's parser.

use std::collections::HashMap;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use covenant_audit::{EntryFields, Hash, entry_hash, genesis, payload_hash};
use covenant_audit::{hash_from_b64, hash_to_b64};
use futures::StreamExt;

use crate::harness::{log_config, nats, side};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chains_of_a_seeded_stream_recompute_from_stored_bytes() {
    let server = nats().await;
    let cfg = log_config();
    let s = side(&server.url(), &cfg).await;
    let report = covenant_ops::seed::seed(&s, |_, _| {}).await.expect("seed");
    assert_eq!((report.registered, report.histories, report.events), (142, 142, 1704));

    let last = s.log.last_sequence().await.expect("info");
    assert_eq!(last, 1704);
    let consumer = s
        .log
        .stream()
        .create_consumer(OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let origin = cfg.origin();
    let mut tips: HashMap<String, (u64, Hash)> = HashMap::new();
    for _ in 0..last {
        let m = messages.next().await.expect("a message").expect("ok");
        let h = m.message.headers.clone().expect("headers");
        let get = |n: &str| h.get(n).map(|v| v.as_str().to_owned()).unwrap_or_else(|| panic!("missing {n}"));
        let subject = m.message.subject.to_string();
        assert_eq!(get("Audit-V"), "1");
        let (version, prev) = tips.get(&subject).copied().unwrap_or((0, genesis(&origin, &subject).expect("genesis")));
        let k: u64 = get("Aggregate-Version").parse().expect("version");
        assert_eq!(k, version + 1, "{subject}: contiguous");
        assert_eq!(
            hash_from_b64(&get("Audit-Prev")).expect("b64"),
            prev,
            "{subject} v{k}: Audit-Prev links to the previous hash"
        );
        let (event_id, event_type, occurred_at, actor, content_type) =
            (get("Event-Id"), get("Event-Type"), get("Occurred-At"), get("Actor"), get("Content-Type"));
        let fields = EntryFields {
            origin: &origin,
            subject: &subject,
            version: k,
            event_id: &event_id,
            event_type: &event_type,
            occurred_at: &occurred_at,
            actor: &actor,
            content_type: &content_type,
        };
        let h_k = entry_hash(&fields, &prev, &payload_hash(&m.message.payload)).expect("hash");
        assert_eq!(hash_to_b64(&h_k), get("Audit-Hash"), "{subject} v{k}: Audit-Hash recomputes");
        assert!(chrono::DateTime::parse_from_rfc3339(&occurred_at).is_ok());
        tips.insert(subject, (k, h_k));
    }
    assert_eq!(tips.len(), 142);
    assert!(tips.values().all(|(v, _)| *v == 12), "each demo country has 12 events");
}
