//! `covenant-bench commands`: the Country workload (every country registered, then GDP
//! updates to countries picked at random, C in flight, conflicts counted) through Covenant,
//! with group commit and without, beside raw JetStream publishes of the same size and
//! headers and stock cqrs-es + postgres-es, in the same run. Each durability profile (one
//! node at default sync, one node at sync always, a 3-node R3 cluster) is a managed
//! nats-server of its own; postgres-es runs once, on a managed PostgreSQL with fsync on
//! and `synchronous_commit` on.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use covenant_commands::{CommandContext, CommandError, CommandSide, DEFAULT_GROUP_COMMIT, LogConfig};
use covenant_domain::{CountryCode, CountryCommand, Name, Usd, iso3166};
use futures::future::try_join_all;
use rand::Rng as _;

use crate::{Figures, histogram};
use covenant_ops::connect;
use covenant_ops::managed::nats::{NatsCluster, NatsServer, SyncPolicy};

mod peers;
mod plot;
mod report;

use report::{Row, Table};

/// A durability profile of the managed nats-server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// One node, the server's default sync (fsync every 2 minutes).
    Default,
    /// One node, `sync_interval: always` (fsync before every acknowledgement).
    Always,
    /// Three nodes on loopback, stream replicas 3, default sync.
    R3,
}

impl Profile {
    /// What an acknowledgement means in this profile.
    fn durability(self) -> &'static str {
        match self {
            Profile::Default => "1 node, sync default: an OS crash may lose the last 2 min of acks",
            Profile::Always => "1 node, sync always: fsync before every ack",
            Profile::R3 => "3 nodes R3, sync default: an ack means a quorum holds the event",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Profile::Default => "1 node, sync default",
            Profile::Always => "1 node, sync always",
            Profile::R3 => "3 nodes, R3",
        }
    }
}

/// Options of the commands benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct CommandsBench {
    /// Countries written to (each one registered first; at most the 249 ISO codes).
    #[arg(long, default_value_t = 200, value_parser = within(1, 249))]
    pub aggregates: usize,
    /// GDP updates per measured run.
    #[arg(long, default_value_t = 20_000)]
    pub commands: usize,
    /// Commands in flight at once.
    #[arg(long, default_value_t = 64, value_parser = within(1, 100_000))]
    pub concurrency: usize,
    /// Rounds; each runs every system once, in turn, and the figures are over all rounds.
    #[arg(long, default_value_t = 2, value_parser = within(1, 100_000))]
    pub rounds: usize,
    /// Durability profiles to run (ignored with COVENANT_NATS_URL).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Profile::Default, Profile::Always, Profile::R3])]
    pub profiles: Vec<Profile>,
    /// Group commit of the grouped Covenant line: atomic batches in flight.
    #[arg(long, default_value_t = DEFAULT_GROUP_COMMIT, value_parser = covenant_ops::settings::parse_group_commit)]
    pub group_commit: usize,
    /// Leave out stock cqrs-es + postgres-es (it needs a managed PostgreSQL).
    #[arg(long)]
    pub no_postgres_es: bool,
    /// Also draw throughput and p99 per profile and system into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

/// A parser of whole numbers from `low` to `high`.
fn within(low: usize, high: usize) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |s| match s.trim().parse::<usize>() {
        Ok(n) if (low..=high).contains(&n) => Ok(n),
        _ => Err(format!("`{s}` is not a whole number from {low} to {high}")),
    }
}

/// Runs the benchmark and prints its table.
///
/// # Errors
/// When a server cannot be started or a command fails other than by a conflict.
pub async fn run(opts: &CommandsBench, nats_url: Option<&str>) -> Result<()> {
    let workload = format!(
        "{} countries, {} GDP updates per run, {} in flight, {} rounds",
        opts.aggregates, opts.commands, opts.concurrency, opts.rounds
    );
    println!("commands benchmark: {workload}");
    let mut table = Table::default();
    if let Some(url) = nats_url {
        let profile = format!("external server {url}");
        println!("\nprofile: {profile} (durability as configured there)");
        run_profile(opts, url, &profile, 1, &mut table).await?;
    } else {
        for &p in &opts.profiles {
            println!("\nprofile: {}", p.durability());
            match p {
                Profile::R3 => {
                    let cluster = NatsCluster::start(SyncPolicy::Default).await?;
                    run_profile(opts, &cluster.url(), p.label(), 3, &mut table).await?;
                }
                Profile::Default | Profile::Always => {
                    let sync = if p == Profile::Always { SyncPolicy::Always } else { SyncPolicy::Default };
                    let server = NatsServer::start_temp(sync).await?;
                    run_profile(opts, &server.url(), p.label(), 1, &mut table).await?;
                }
            }
        }
    }
    if !opts.no_postgres_es {
        println!("\npostgres-es: stock cqrs-es 0.5 + postgres-es 0.5, PostgreSQL fsync on, synchronous_commit on");
        let row = peers::postgres_es(opts).await?;
        println!("  {}", row.line());
        table.push(row);
    }
    table.print_summary();
    if let Some(path) = &opts.plot {
        plot::draw(path, &table, &workload)?;
        println!("\nplot written to {}", path.display());
    }
    Ok(())
}

async fn run_profile(opts: &CommandsBench, url: &str, profile: &str, replicas: usize, table: &mut Table) -> Result<()> {
    let client = connect::client(url).await?;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_uppercase();
    let config = |name: &str, group_commit: usize| LogConfig {
        stream: format!("BENCH_{name}_{tag}"),
        subject_prefix: format!("bench.{}{tag}", name.to_lowercase()),
        replicas,
        group_commit,
        ..LogConfig::default()
    };
    let raw_cfg = config("RAW", 0);
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(raw_cfg.stream_config()).await.context("creating the raw stream")?;
    let alone = Arc::new(CommandSide::open(client.clone(), config("ALONE", 0)).await?);
    let grouped = Arc::new(CommandSide::open(client.clone(), config("GROUPED", opts.group_commit)).await?);
    let countries: Vec<&'static str> = iso3166::ALPHA2.iter().copied().take(opts.aggregates).collect();
    register(&alone, &countries).await?;
    register(&grouped, &countries).await?;
    let (headers, payload) = sample_message(&alone, countries[0]).await?;
    let grouped_label = format!("covenant, group commit {}", opts.group_commit);
    let mut raw = Runs::default();
    let mut one = Runs::default();
    let mut many = Runs::default();
    for round in 1..=opts.rounds {
        println!("round {round}");
        raw.add(raw_run(&js, &raw_cfg, opts, &headers, &payload).await?, "raw JetStream publish");
        one.add(covenant_run(&alone, &countries, opts).await?, "covenant, each append alone");
        many.add(covenant_run(&grouped, &countries, opts).await?, &grouped_label);
    }
    let (grouped_appends, refused) = grouped.log.group_commit_counts();
    println!("  group commit: {grouped_appends} appends stored in shared batches, {refused} batches refused");
    table.push(raw.row(profile, "raw JetStream"));
    table.push(one.row(profile, "covenant"));
    table.push(many.row(profile, &grouped_label));
    Ok(())
}

/// Registers every country of the workload (not measured).
async fn register(side: &CommandSide, countries: &[&str]) -> Result<()> {
    let ctx = &CommandContext::system();
    try_join_all(countries.iter().map(|&code| async move {
        let cmd = CountryCommand::Register {
            code: CountryCode::parse(code)?,
            name: Name::parse(&format!("Country {code}"))?,
            gdp_usd: Usd::new(1_000_000_000)?,
        };
        side.countries.execute(code, cmd, ctx).await?;
        anyhow::Ok(())
    }))
    .await?;
    Ok(())
}

/// The headers and payload of a real GDP update (same names, same sizes) for the raw line.
async fn sample_message(side: &CommandSide, code: &str) -> Result<(HeaderMap, Bytes)> {
    let cmd = CountryCommand::UpdateGdp { gdp_usd: Usd::new(1_500_000_000)? };
    side.countries.execute(code, cmd, &CommandContext::system()).await?;
    let e = side.log.last_event(&side.log.subject("country", code)).await?.context("sample event")?;
    Ok((e.headers.clone(), e.payload.clone()))
}

/// Per-message publishes, each writer on subjects of its own (no conflicts: the ceiling).
async fn raw_run(
    js: &async_nats::jetstream::Context,
    cfg: &LogConfig,
    opts: &CommandsBench,
    headers: &HeaderMap,
    payload: &Bytes,
) -> Result<Measured> {
    // Fresh subjects each run, so every expectation starts at 0.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let subjects: Vec<String> =
        (0..opts.aggregates.max(opts.concurrency)).map(|i| cfg.subject("country", &format!("{run}{i}"))).collect();
    let per_worker = opts.commands / opts.concurrency;
    let start = Instant::now();
    let workers = (0..opts.concurrency).map(|w| {
        let mine: Vec<String> = subjects.iter().skip(w).step_by(opts.concurrency).cloned().collect();
        let (js, headers, payload) = (js.clone(), headers.clone(), payload.clone());
        tokio::spawn(async move {
            let mut h = histogram();
            let mut last = vec![0u64; mine.len()];
            for i in 0..per_worker {
                let k = i % mine.len();
                let t = Instant::now();
                let msg = PublishMessage::build()
                    .headers(headers.clone())
                    .payload(payload.clone())
                    .message_id(uuid::Uuid::new_v4().to_string())
                    .expected_last_subject_sequence(last[k]);
                let ack = js.send_publish(mine[k].clone(), msg).await?.await?;
                last[k] = ack.sequence;
                h.record(t.elapsed().as_micros() as u64).ok();
            }
            anyhow::Ok((h, 0u64))
        })
    });
    merge(try_join_all(workers).await?, start.elapsed())
}

/// GDP updates through the command side (a conflict is what remains after its retries).
async fn covenant_run(side: &Arc<CommandSide>, countries: &[&'static str], opts: &CommandsBench) -> Result<Measured> {
    let side = side.clone();
    updates(countries, opts, move |code, cmd| {
        let side = side.clone();
        async move {
            match side.countries.execute(code, cmd, &CommandContext::system()).await {
                Ok(_) => Ok(Outcome::Stored),
                Err(CommandError::Conflict { .. }) => Ok(Outcome::Conflict),
                Err(e) => Err(e.into()),
            }
        }
    })
    .await
}

/// What became of one update.
pub(crate) enum Outcome {
    /// Stored (its latency is recorded).
    Stored,
    /// Refused by a conflict (counted).
    Conflict,
}

/// The workload: `opts.concurrency` workers, each sending its share of `opts.commands` GDP
/// updates to countries picked at random through `update`.
pub(crate) async fn updates<F, Fut>(countries: &[&'static str], opts: &CommandsBench, update: F) -> Result<Measured>
where
    F: Fn(&'static str, CountryCommand) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Outcome>> + Send,
{
    let per_worker = opts.commands / opts.concurrency;
    let start = Instant::now();
    let workers = (0..opts.concurrency).map(|_| {
        let (update, countries) = (update.clone(), countries.to_vec());
        tokio::spawn(async move {
            let mut h = histogram();
            let mut conflicts = 0;
            for _ in 0..per_worker {
                let (code, gdp) = {
                    let mut rng = rand::rng();
                    (countries[rng.random_range(0..countries.len())], rng.random_range(1_000_000_000..2_000_000_000))
                };
                let cmd = CountryCommand::UpdateGdp { gdp_usd: Usd::new(gdp)? };
                let t = Instant::now();
                match update(code, cmd).await? {
                    Outcome::Stored => {
                        h.record(t.elapsed().as_micros() as u64).ok();
                    }
                    Outcome::Conflict => conflicts += 1,
                }
            }
            anyhow::Ok((h, conflicts))
        })
    });
    merge(try_join_all(workers).await?, start.elapsed())
}

/// One run: the latencies of the commands that were stored, conflicts, wall time.
pub(crate) struct Measured {
    hist: hdrhistogram::Histogram<u64>,
    conflicts: u64,
    elapsed: Duration,
}

fn merge(results: Vec<Result<(hdrhistogram::Histogram<u64>, u64)>>, elapsed: Duration) -> Result<Measured> {
    let mut hist = histogram();
    let mut conflicts = 0;
    for r in results {
        let (h, c) = r?;
        hist.add(h).context("merging histograms")?;
        conflicts += c;
    }
    Ok(Measured { hist, conflicts, elapsed })
}

/// The rounds of one system.
#[derive(Default)]
pub(crate) struct Runs {
    hist: Option<hdrhistogram::Histogram<u64>>,
    conflicts: u64,
    elapsed: Duration,
}

impl Runs {
    /// Adds a round and prints it.
    pub(crate) fn add(&mut self, m: Measured, label: &str) {
        let f = Figures::new(m.hist.len(), m.elapsed, &m.hist);
        println!("  {}   conflicts {}", f.row(label), m.conflicts);
        self.conflicts += m.conflicts;
        self.elapsed += m.elapsed;
        match &mut self.hist {
            Some(h) => h.add(&m.hist).expect("same bounds"),
            None => self.hist = Some(m.hist),
        }
    }

    /// All rounds as one row of the table.
    pub(crate) fn row(&self, profile: &str, system: &str) -> Row {
        let h = self.hist.clone().unwrap_or_else(histogram);
        Row {
            profile: profile.to_owned(),
            system: system.to_owned(),
            figures: Figures::new(h.len(), self.elapsed, &h),
            conflicts: self.conflicts,
        }
    }
}
