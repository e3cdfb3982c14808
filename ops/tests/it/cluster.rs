//! A 3-node JetStream cluster with an R3 stream: commands keep being acknowledged when a
//! node is killed, and every acknowledged event is in the stream afterwards.

use std::collections::HashSet;
use std::time::Duration;

use covenant_commands::{CommandContext, CommandError, CommandSide, LogConfig};
use covenant_domain::{CountryCode, CountryCommand, CountryError, Name, Usd};
use covenant_ops::managed::nats::{NatsCluster, SyncPolicy};

use crate::harness::{all_events, client, log_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r3_stream_keeps_acknowledging_commands_when_a_node_dies() {
    let mut cluster = NatsCluster::start(SyncPolicy::Default).await.expect("3-node cluster");
    let cfg = LogConfig { replicas: 3, request_timeout: Duration::from_secs(5), ..log_config() };
    let side = open_with_retry(&cluster.url(), &cfg).await;
    let ctx = CommandContext::system();
    let cmd = CountryCommand::Register {
        code: CountryCode::parse("FR").expect("code"),
        name: Name::parse("France").expect("name"),
        gdp_usd: Usd::new(1).expect("usd"),
    };
    // A just-formed cluster may not yet route the stream's subjects to its leader.
    execute_retrying(&side, cmd, &ctx).await.expect("register on R3");
    let mut acked = Vec::new();
    for i in 0..60u64 {
        if i == 20 {
            cluster.nodes[2].kill();
        }
        let cmd = CountryCommand::UpdateGdp { gdp_usd: Usd::new(100 + i).expect("usd") };
        match execute_retrying(&side, cmd, &ctx).await {
            Ok(id) => acked.push(id),
            Err(e) => panic!("command {i}: {e}"),
        }
    }
    let events = all_events(&side.log).await;
    let stored: HashSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
    assert!(acked.iter().all(|id| stored.contains(id)), "every acknowledged event survives the node loss");
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>());
}

/// Executes `cmd` on FR, retrying while the log is unavailable, as a client does during a
/// leader election, and returns the first event id. A retry after an unknown outcome may
/// apply a GDP update twice; the checks allow that: they ask that every acknowledged event
/// is stored and that versions have no gap.
async fn execute_retrying(
    side: &CommandSide,
    cmd: CountryCommand,
    ctx: &CommandContext,
) -> Result<String, CommandError<CountryError>> {
    let mut attempt = 0;
    loop {
        match side.countries.execute("FR", cmd.clone(), ctx).await {
            Ok(r) => return Ok(r.event_ids[0].to_string()),
            Err(CommandError::Unavailable { .. }) if attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => return Err(e),
        }
    }
}

pub async fn open_with_retry(url: &str, cfg: &LogConfig) -> CommandSide {
    let nc = client(url).await;
    for _ in 0..100 {
        if let Ok(s) = CommandSide::open(nc.clone(), cfg.clone()).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the R3 stream could not be created");
}
