//! 32 concurrent writers, each on its own connection and cache (as 32 processes would be),
//! against one aggregate and against many: no lost update, contiguous versions, every
//! acknowledged command's events in the stream exactly once and nothing else.

use std::collections::{HashMap, HashSet};

use covenant_commands::{CommandContext, CommandError, CommandSide, Receipt};
use covenant_domain::country::CountryGdpUpdated;
use covenant_domain::project::ProjectUpdated;
use covenant_domain::{CountryCode, CountryCommand, Name, ProjectCommand, Usd};
use futures::future::join_all;

use crate::harness::{all_events, log_config, nats, side};

const WRITERS: usize = 32;

fn usd(v: u64) -> Usd {
    Usd::new(v).expect("in range")
}

async fn register_fr(side: &CommandSide) {
    let cmd = CountryCommand::Register {
        code: CountryCode::parse("FR").expect("code"),
        name: Name::parse("France").expect("name"),
        gdp_usd: usd(1),
    };
    side.countries.execute("FR", cmd, &CommandContext::system()).await.expect("register FR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_writers_on_one_aggregate_lose_no_update() {
    let server = nats().await;
    let cfg = log_config();
    let url = server.url();
    let sides: Vec<CommandSide> = join_all((0..WRITERS).map(|_| side(&url, &cfg))).await;
    register_fr(&sides[0]).await;
    let per_writer = 10u64;
    // Consumers on the stream while 32 "processes" reload each other's writes: loads and
    // conflict reloads create none (each used to leave an ephemeral consumer behind).
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (mut stream, sampling) = (sides[0].log.stream().clone(), sampling.clone());
        tokio::spawn(async move {
            let mut most = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(info) = stream.info().await {
                    most = most.max(info.state.consumer_count);
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            most
        })
    };
    let results = join_all(sides.iter().enumerate().map(|(w, s)| async move {
        let mut acked: Vec<Receipt> = Vec::new();
        let mut conflicts = 0;
        for i in 0..per_writer {
            // Every figure is unique, so each event names the command that wrote it.
            let gdp = usd(1_000_000 * (w as u64 + 1) + i + 1);
            match s.countries.execute("FR", CountryCommand::UpdateGdp { gdp_usd: gdp }, &CommandContext::system()).await
            {
                Ok(r) => acked.push(r),
                Err(CommandError::Conflict { .. }) => conflicts += 1,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        (acked, conflicts)
    }))
    .await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let most_consumers = sampler.await.expect("sampler");
    let acked: Vec<Receipt> = results.iter().flat_map(|(a, _)| a.clone()).collect();
    let conflicts: usize = results.iter().map(|(_, c)| c).sum();
    println!(
        "32 writers on one aggregate: {} acknowledged, {conflicts} conflicts, at most {most_consumers} consumers",
        acked.len()
    );
    assert_eq!(most_consumers, 0, "aggregate loads and conflict reloads create no consumer");
    assert_eq!(acked.len() + conflicts, WRITERS * per_writer as usize);
    assert!(acked.len() >= WRITERS, "each writer should get through at least once on average; acked {}", acked.len());

    let events = all_events(&sides[0].log).await;
    let acked_ids: HashSet<String> = acked.iter().flat_map(|r| r.event_ids.iter().map(ToString::to_string)).collect();
    let updates: Vec<_> = events.iter().filter(|e| e.event_type == "country.update").collect();
    let stored_ids: Vec<String> = updates.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(stored_ids.len(), acked_ids.len(), "exactly the acknowledged updates are stored");
    assert_eq!(stored_ids.iter().cloned().collect::<HashSet<_>>(), acked_ids);

    // Versions contiguous, and each update decided on the state the previous one left.
    let mut gdp = usd(1);
    for (k, e) in events.iter().enumerate() {
        assert_eq!(e.version, k as u64 + 1, "contiguous versions");
        if e.event_type == "country.update" {
            let u: CountryGdpUpdated = serde_json::from_slice(&e.payload).expect("payload");
            assert_eq!(u.old_gdp_usd, gdp, "update at version {} was decided on a stale GDP", e.version);
            gdp = u.new_gdp_usd;
        }
    }
    let fresh = sides[1].countries.store().load("FR").await.expect("load");
    assert_eq!(fresh.aggregate.gdp_usd(), gdp);
    assert_eq!(fresh.tip.version, events.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_writers_on_many_aggregates_store_each_acknowledged_event_once() {
    let server = nats().await;
    let cfg = log_config();
    let url = server.url();
    let sides: Vec<CommandSide> = join_all((0..WRITERS).map(|_| side(&url, &cfg))).await;
    register_fr(&sides[0]).await;
    let projects: Vec<String> = (0..48).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for id in &projects {
        let cmd = ProjectCommand::Create {
            country_code: CountryCode::parse("FR").expect("code"),
            name: Name::parse("P").expect("name"),
            budget_usd: usd(1),
        };
        sides[0].projects.execute(id, cmd, &CommandContext::system()).await.expect("create project");
    }
    let projects = &projects;
    let results = join_all(sides.iter().enumerate().map(|(w, s)| async move {
        let mut acked = Vec::new();
        for i in 0..15usize {
            let id = &projects[(w * 7 + i * 5) % projects.len()];
            let budget = usd(((w * 100 + i) as u64) + 10);
            let cmd = ProjectCommand::Update { name: None, budget_usd: Some(budget), status: None };
            match s.projects.execute(id, cmd, &CommandContext::system()).await {
                Ok(r) => acked.push((id.clone(), budget, r)),
                Err(CommandError::Conflict { .. }) => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        acked
    }))
    .await;
    let acked: Vec<(String, Usd, Receipt)> = results.into_iter().flatten().collect();
    assert!(acked.len() > WRITERS * 10, "most commands on distinct aggregates succeed; acked {}", acked.len());

    let events = all_events(&sides[0].log).await;
    let mut by_subject: HashMap<&str, Vec<&covenant_commands::StoredEvent>> = HashMap::new();
    for e in &events {
        by_subject.entry(&e.subject).or_default().push(e);
    }
    for (subject, evs) in &by_subject {
        for (k, e) in evs.iter().enumerate() {
            assert_eq!(e.version, k as u64 + 1, "{subject}: contiguous versions");
        }
    }
    let stored: Vec<(String, u64)> =
        events.iter().filter(|e| e.event_type == "project.update").map(|e| (e.event_id.clone(), e.seq)).collect();
    let acked_ids: HashSet<String> = acked.iter().map(|(_, _, r)| r.event_ids[0].to_string()).collect();
    assert_eq!(stored.len(), acked.len(), "no unacknowledged or duplicated update is stored");
    assert_eq!(stored.iter().map(|(id, _)| id.clone()).collect::<HashSet<_>>(), acked_ids);
    // Each receipt's sequence is where its event really is.
    let seq_of: HashMap<String, u64> = stored.into_iter().collect();
    for (_, _, r) in &acked {
        assert_eq!(seq_of[&r.event_ids[0].to_string()], r.sequence);
    }
    // The latest acknowledged update of each project is its state.
    for id in projects {
        let last = acked.iter().filter(|(p, _, _)| p == id).max_by_key(|(_, _, r)| r.sequence);
        let subject = sides[0].log.subject("project", id);
        let stored_last = by_subject[subject.as_str()].last().expect("events");
        if let Some((_, budget, r)) = last {
            assert_eq!(stored_last.seq, r.sequence);
            let u: ProjectUpdated = serde_json::from_slice(&stored_last.payload).expect("payload");
            assert_eq!(u.budget_usd, Some(*budget));
        }
    }
}
