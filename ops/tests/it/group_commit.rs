//! Group commit against a real nats-server: concurrent appends to different subjects share
//! atomic batches, each append learns where its own events landed, the chains continue from
//! the tips it returns, and a stale append refuses only itself, not its batch neighbours.

use std::collections::HashMap;

use covenant_commands::{ChainTip, EventLog, LogConfig, LogError, NewEvent};
use futures::future::join_all;

use crate::harness::{all_events, client, log_config, nats};

/// One commit in flight, so appends queue behind it and form batches.
fn grouped_config() -> LogConfig {
    LogConfig { group_commit: 1, ..log_config() }
}

fn events(n: usize, round: usize) -> Vec<NewEvent> {
    (0..n).map(|i| NewEvent::json("bench.Noted", "system", format!("{{\"round\":{round},\"i\":{i}}}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_batches_and_each_learns_its_own_sequences() {
    let server = nats().await;
    let log = EventLog::open(client(&server.url()).await, grouped_config()).await.expect("open");
    let subjects: Vec<String> = (0..300).map(|i| log.subject("thing", &format!("t{i}"))).collect();
    let mut tips: Vec<ChainTip> =
        subjects.iter().map(|s| ChainTip::genesis(log.origin(), s).expect("genesis")).collect();
    let mut written = 0;
    for round in 0..2 {
        // Every fifth append holds three events (one member of several messages).
        let batches: Vec<Vec<NewEvent>> =
            (0..subjects.len()).map(|i| events(1 + 2 * usize::from(i % 5 == 0), round)).collect();
        let results =
            join_all(subjects.iter().zip(&tips).zip(&batches).map(|((s, tip), evs)| log.append(s, tip, evs, &[])))
                .await;
        let stored: HashMap<String, u64> =
            all_events(&log).await.into_iter().map(|e| (e.event_id.clone(), e.seq)).collect();
        for (i, (r, evs)) in results.into_iter().zip(&batches).enumerate() {
            let appended = r.unwrap_or_else(|e| panic!("append {i} in round {round}: {e}"));
            let seqs: Vec<u64> = evs.iter().map(|e| stored[&e.event_id.to_string()]).collect();
            assert_eq!(appended.first_seq, seqs[0], "append {i}: its first sequence is where its first event is");
            assert_eq!(appended.last_seq, *seqs.last().expect("events"), "append {i}: its last sequence");
            assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "append {i}: its events are contiguous");
            assert_eq!(appended.tip.version, tips[i].version + evs.len() as u64);
            tips[i] = appended.tip;
            written += evs.len();
        }
        assert_eq!(stored.len(), written, "every event stored once, nothing else");
    }
    // The second round extended the tips of the first: each chain links.
    let mut last_hash: HashMap<String, covenant_audit::Hash> = HashMap::new();
    for e in all_events(&log).await {
        let expected = last_hash
            .get(&e.subject)
            .copied()
            .unwrap_or_else(|| covenant_audit::genesis(log.origin(), &e.subject).expect("genesis"));
        assert_eq!(e.prev, expected, "{} v{}: Audit-Prev links to the previous hash", e.subject, e.version);
        last_hash.insert(e.subject.clone(), e.hash);
    }
    let (grouped, refused) = log.group_commit_counts();
    println!("group commit: {grouped} of 600 appends stored in shared batches, {refused} batches refused");
    assert!(grouped > 0, "with one commit in flight and 300 appends queued, some must share a batch");
    assert_eq!(refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_append_fails_alone_and_its_batch_neighbours_are_stored() {
    let server = nats().await;
    let cfg = grouped_config();
    let url = server.url();
    let ours = EventLog::open(client(&url).await, cfg.clone()).await.expect("open");
    // Another instance, writing alone.
    let other = EventLog::open(client(&url).await, LogConfig { group_commit: 0, ..cfg }).await.expect("open");
    let mut refused_total = 0;
    for round in 0..5 {
        let subjects: Vec<String> = (0..40).map(|i| ours.subject("thing", &format!("r{round}x{i}"))).collect();
        let stale = subjects.last().expect("subjects").clone();
        let ours = &ours;
        let genesis = move |s: &str| ChainTip::genesis(ours.origin(), s).expect("genesis");
        other.append(&stale, &genesis(&stale), &events(1, round), &[]).await.expect("the other instance writes");
        let results =
            join_all(subjects.iter().map(|s| async move { ours.append(s, &genesis(s), &events(1, round), &[]).await }))
                .await;
        for (s, r) in subjects.iter().zip(results) {
            match r {
                Err(LogError::Conflict { subject, .. }) if *s == stale => assert_eq!(subject, stale),
                Ok(_) if *s != stale => {}
                other => panic!("{s}: unexpected outcome {other:?}"),
            }
        }
        refused_total = ours.group_commit_counts().1;
    }
    let last = ours.last_sequence().await.expect("info");
    assert_eq!(last, 5 * 40, "5 rounds: the other instance's 5 appends and our 39 a round");
    println!("{refused_total} batches refused for a stale member; their neighbours went again alone");
    assert!(refused_total >= 1, "the stale append shared a batch in at least one of 5 rounds");
}
