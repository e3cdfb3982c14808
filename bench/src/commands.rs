//! `covenant-bench commands`: Covenant commands (project updates: load from cache, decide,
//! hash-chain, append with a per-subject expectation) across many aggregates with many in
//! flight, beside raw JetStream publishes of the same payload size and headers with the same
//! per-subject expectations, on the same server in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use covenant_commands::{CommandContext, CommandSide, LogConfig};
use covenant_domain::{CountryCode, CountryCommand, Name, ProjectCommand, Usd};
use futures::future::try_join_all;

use crate::{Figures, histogram};
use covenant_ops::connect;
use covenant_ops::managed::nats::{NatsServer, SyncPolicy};
use covenant_ops::settings::SyncArg;

/// Options of the commands benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct CommandsBench {
    /// Distinct aggregates (projects) written to.
    #[arg(long, default_value_t = 2000)]
    pub aggregates: usize,
    /// Commands per measured run.
    #[arg(long, default_value_t = 20_000)]
    pub commands: usize,
    /// Commands in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Alternating raw/covenant rounds (the ratio is the mean over rounds).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Durability profiles of the managed server to run (ignored with COVENANT_NATS_URL).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [SyncArg::Default, SyncArg::Always])]
    pub profiles: Vec<SyncArg>,
}

/// Runs the benchmark and prints its table.
///
/// # Errors
/// When NATS cannot be started or a command fails.
pub async fn run(opts: &CommandsBench, nats_url: Option<&str>) -> Result<()> {
    // Each writer owns a share of the aggregates (its own subjects, so the raw baseline's
    // expectations hold): every writer needs at least one.
    if opts.aggregates < opts.concurrency || opts.concurrency == 0 {
        anyhow::bail!(
            "--aggregates ({}) must be at least --concurrency ({}), which must be at least 1",
            opts.aggregates,
            opts.concurrency
        );
    }
    println!(
        "commands benchmark: {} aggregates, {} commands per run, {} in flight, {} rounds",
        opts.aggregates, opts.commands, opts.concurrency, opts.rounds
    );
    if let Some(url) = nats_url {
        println!("\nprofile: external server {url} (durability as configured there)");
        return run_profile(opts, url).await;
    }
    for p in &opts.profiles {
        let server = NatsServer::start_temp(SyncPolicy::from(*p)).await?;
        println!("\nprofile: managed nats-server, replicas 1, sync {}", server.sync().as_str());
        run_profile(opts, &server.url()).await?;
    }
    Ok(())
}

async fn run_profile(opts: &CommandsBench, url: &str) -> Result<()> {
    let client = connect::client(url).await?;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_uppercase();
    let raw_cfg = LogConfig {
        stream: format!("BENCH_RAW_{tag}"),
        subject_prefix: format!("bench.raw{tag}"),
        ..LogConfig::default()
    };
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(raw_cfg.stream_config()).await.context("creating the raw stream")?;
    let cov_cfg = LogConfig {
        stream: format!("BENCH_COV_{tag}"),
        subject_prefix: format!("bench.cov{tag}"),
        ..LogConfig::default()
    };
    let side = Arc::new(CommandSide::open(client.clone(), cov_cfg).await?);
    let projects = setup_projects(&side, opts.aggregates).await?;
    let headers = sample_headers(&side, &projects[0]).await?;
    let mut ratios = Vec::new();
    for round in 1..=opts.rounds {
        let raw = raw_run(&js, &raw_cfg, opts, &headers).await?;
        let cov = covenant_run(&side, &projects, opts, round).await?;
        println!("round {round}");
        println!("  {}", raw.row("raw JetStream publish"));
        println!("  {}", cov.row("covenant commands"));
        ratios.push(cov.per_sec / raw.per_sec);
    }
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    println!("covenant / raw throughput: {mean:.2}x (target >= 0.80x) {}", if mean >= 0.8 { "MET" } else { "NOT MET" });
    Ok(())
}

async fn setup_projects(side: &CommandSide, n: usize) -> Result<Vec<String>> {
    let ctx = CommandContext::system();
    let fr = CountryCode::parse("FR")?;
    side.countries
        .execute(
            "FR",
            CountryCommand::Register { code: fr.clone(), name: Name::parse("France")?, gdp_usd: Usd::new(1)? },
            &ctx,
        )
        .await?;
    let ids: Vec<String> = (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for chunk in ids.chunks(256) {
        try_join_all(chunk.iter().map(|id| {
            let cmd = ProjectCommand::Create {
                country_code: fr.clone(),
                name: Name::parse("Bench").expect("static"),
                budget_usd: Usd::new(1).expect("static"),
            };
            side.projects.execute(id, cmd, &ctx)
        }))
        .await?;
    }
    Ok(ids)
}

/// Headers shaped like a real project update (same names, same value sizes).
async fn sample_headers(side: &CommandSide, project: &str) -> Result<HeaderMap> {
    let subject = side.log.subject("project", project);
    let e = side.log.last_event(&subject).await?.context("sample event")?;
    let mut h = e.headers.clone();
    h.insert("Audit-V", "1");
    Ok(h)
}

async fn raw_run(
    js: &async_nats::jetstream::Context,
    cfg: &LogConfig,
    opts: &CommandsBench,
    headers: &HeaderMap,
) -> Result<Figures> {
    let payload = Bytes::from(format!("{{\"budget_usd\":\"{}\"}}", 1_000_000_000u64));
    let subjects: Vec<String> =
        (0..opts.aggregates).map(|_| cfg.subject("project", &uuid::Uuid::new_v4().to_string())).collect();
    let per_worker = opts.commands / opts.concurrency;
    let start = Instant::now();
    let workers = (0..opts.concurrency).map(|w| {
        let mine: Vec<String> = subjects.iter().skip(w).step_by(opts.concurrency).cloned().collect();
        let (js, headers, payload) = (js.clone(), headers.clone(), payload.clone());
        tokio::spawn(async move {
            let mut h = histogram();
            let mut last = vec![0u64; mine.len()];
            for i in 0..per_worker {
                let k = i % mine.len().max(1);
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
            anyhow::Ok(h)
        })
    });
    merge(try_join_all(workers).await?, per_worker * opts.concurrency, start.elapsed())
}

async fn covenant_run(
    side: &Arc<CommandSide>,
    projects: &[String],
    opts: &CommandsBench,
    round: usize,
) -> Result<Figures> {
    let per_worker = opts.commands / opts.concurrency;
    let start = Instant::now();
    let workers = (0..opts.concurrency).map(|w| {
        let mine: Vec<String> = projects.iter().skip(w).step_by(opts.concurrency).cloned().collect();
        let side = side.clone();
        tokio::spawn(async move {
            let ctx = CommandContext::system();
            let mut h = histogram();
            for i in 0..per_worker {
                let k = i % mine.len().max(1);
                let budget = Usd::new(1_000_000_000 + (round * 1_000_000 + i) as u64)?;
                let cmd = ProjectCommand::Update { name: None, budget_usd: Some(budget), status: None };
                let t = Instant::now();
                side.projects.execute(&mine[k], cmd, &ctx).await?;
                h.record(t.elapsed().as_micros() as u64).ok();
            }
            anyhow::Ok(h)
        })
    });
    merge(try_join_all(workers).await?, per_worker * opts.concurrency, start.elapsed())
}

fn merge(results: Vec<Result<hdrhistogram::Histogram<u64>>>, n: usize, elapsed: Duration) -> Result<Figures> {
    let mut all = histogram();
    for h in results {
        all.add(h?).context("merging histograms")?;
    }
    Ok(Figures::new(n as u64, elapsed, &all))
}
