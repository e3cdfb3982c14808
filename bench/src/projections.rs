//! `covenant-bench projections`: projection throughput over a large stream, beside a raw
//! PostgreSQL bulk insert of the same rows in the same run, and the wall time of a full
//! rebuild. Runs on a temporary nats-server and a temporary PostgreSQL cluster (fsync on).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream::message::PublishMessage;
use covenant_commands::record::{ChainTip, NewEvent, chain_headers};
use covenant_commands::{EventLog, LogConfig};
use covenant_domain::country::{CountryGdpUpdated, CountryRegistered};
use covenant_domain::project::{ProjectCreated, ProjectUpdated};
use covenant_domain::user::{UserLoggedIn, UserRegistered};
use covenant_domain::{CountryEvent, EventCodec, Personal, ProjectEvent, Role, Usd, UserEvent};
use covenant_projections::event::ProjectedEvent;
use covenant_projections::{Projection, Tables, rebuild};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use sqlx::PgPool;

use covenant_ops::connect;
use covenant_ops::managed::nats::{NatsServer, SyncPolicy};
use covenant_ops::managed::postgres::PgCluster;

/// Options of the projections benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct ProjectionsBench {
    /// Events in the stream.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Events per projection transaction (the runner's default).
    #[arg(long, default_value_t = covenant_projections::runner::DEFAULT_BATCH)]
    pub batch: usize,
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// When a service cannot be started or a step fails.
pub async fn run(opts: &ProjectionsBench) -> Result<()> {
    let nats = NatsServer::start_temp(SyncPolicy::Default).await?;
    let pg = PgCluster::start_temp_with(true).await?;
    pg.create_database("bench").await?;
    let pool = connect::pool(&pg.url("bench")).await?;
    covenant_projections::migrate(&pool).await?;
    let cfg = LogConfig { stream: "BENCH_PROJ".into(), subject_prefix: "bench.events".into(), ..Default::default() };
    let log = EventLog::open(connect::client(&nats.url()).await?, cfg.clone()).await?;
    println!(
        "projections benchmark: {} events, {} per transaction; nats-server (sync default) and PostgreSQL 15 (fsync on), both local",
        opts.events, opts.batch
    );

    let t = Instant::now();
    generate(&log, opts.events).await?;
    println!("  wrote {} events to JetStream in {:.1?}", opts.events, t.elapsed());

    let mut rates = Vec::new();
    for p in covenant_projections::all() {
        let rate = project(&log, &cfg.stream, &pool, p.clone(), opts).await?;
        println!("  projection {:<7} {:>10.0} events/s", p.name(), rate);
        rates.push((p.name(), rate));
    }
    let raw = raw_insert(&log, &pool, opts).await?;
    println!(
        "  raw PostgreSQL bulk insert (COPY) of the same audit rows, {} per transaction: {:>10.0} rows/s",
        opts.batch, raw
    );
    for (name, rate) in &rates {
        println!(
            "  {name}: {:.0} events/s = {:.2}x raw (targets: >= 50000 events/s, >= 0.50x raw) {}",
            rate,
            rate / raw,
            verdict(*rate, *rate / raw)
        );
    }
    for p in covenant_projections::all() {
        let t = Instant::now();
        let r = rebuild::rebuild(log.jetstream(), &cfg.stream, &pool, p.as_ref(), |_, _| {}).await?;
        println!(
            "  full rebuild of {:<7} {} events in {:.1?} ({:.0} events/s)",
            p.name(),
            r.events,
            t.elapsed(),
            r.events as f64 / t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn verdict(rate: f64, ratio: f64) -> &'static str {
    if rate >= 50_000.0 && ratio >= 0.5 { "MET" } else { "NOT MET" }
}

/// Writes `n` realistic events (countries, GDP updates, projects, users, their personal
/// fields sealed) with their audit headers, pipelined.
///
/// # Errors
/// When a publish fails.
pub async fn generate(log: &EventLog, n: u64) -> Result<()> {
    let js = log.jetstream().clone();
    let codes: Vec<&str> = covenant_domain::iso3166::ALPHA2.to_vec();
    let mut tips: HashMap<String, ChainTip> = HashMap::new();
    let mut gdp: HashMap<usize, u64> = HashMap::new();
    let (mut projects, mut users) = (0u64, 0u64);
    let mut inflight = FuturesUnordered::new();
    let keys = covenant_personal::KeyStore::create(js.clone(), &log.config().stream, log.config().replicas).await?;
    let mut user_keys: HashMap<String, covenant_personal::DataKey> = HashMap::new();
    let usd = |v: u64| Usd::new(v).expect("bench amounts are in range");
    for i in 0..n {
        let (subject_tail, event_type, payload): (String, &str, Vec<u8>) = if (i as usize) < codes.len() {
            gdp.insert(i as usize, 1_000_000);
            let e = CountryEvent::Registered(CountryRegistered {
                code: covenant_domain::CountryCode::parse(codes[i as usize])?,
                name: covenant_domain::Name::parse(codes[i as usize])?,
                gdp_usd: usd(1_000_000),
            });
            (format!("country.{}", codes[i as usize]), e.type_name(), e.encode())
        } else {
            match i % 10 {
                0 | 1 => {
                    let c = (i as usize * 31) % codes.len();
                    let old = gdp[&c];
                    let new = 1_000_000 + i;
                    gdp.insert(c, new);
                    let e = CountryEvent::GdpUpdated(CountryGdpUpdated {
                        old_gdp_usd: usd(old),
                        new_gdp_usd: usd(new),
                        delta_bp: Usd::delta_bp(usd(old), usd(new)).unwrap_or(0),
                    });
                    (format!("country.{}", codes[c]), e.type_name(), e.encode())
                }
                2..=5 if projects > 0 => {
                    let e = ProjectEvent::Updated(ProjectUpdated { budget_usd: Some(usd(i)), ..Default::default() });
                    (format!("project.{}", uuid_of(i * 7 % projects)), e.type_name(), e.encode())
                }
                7 | 8 if users > 0 => {
                    let e = UserEvent::LoggedIn(UserLoggedIn { ip: Personal::Known("203.0.113.7".parse()?) });
                    (format!("user.{}", uuid_of(1 << 40 | (i % users))), e.type_name(), e.encode())
                }
                9 => {
                    users += 1;
                    let e = UserEvent::Registered(UserRegistered {
                        email: Personal::Known(covenant_domain::Email::parse(&format!("u{users}@example.org"))?),
                        role: Role::Viewer,
                    });
                    (format!("user.{}", uuid_of(1 << 40 | (users - 1))), e.type_name(), e.encode())
                }
                _ => {
                    projects += 1;
                    let e = ProjectEvent::Created(ProjectCreated {
                        country_code: covenant_domain::CountryCode::parse(codes[i as usize % codes.len()])?,
                        name: covenant_domain::Name::parse(&format!("Project {projects}"))?,
                        budget_usd: usd(1000),
                    });
                    (format!("project.{}", uuid_of(projects - 1)), e.type_name(), e.encode())
                }
            }
        };
        // Personal fields sealed with each user's key, as the service stores them (so the
        // projections pay for opening them).
        let fields = covenant_domain::personal_fields("user", event_type);
        let payload = match subject_tail.strip_prefix("user.") {
            Some(owner) if !fields.is_empty() => {
                let key = match user_keys.get(owner) {
                    Some(k) => k,
                    None => {
                        let k = keys.get_or_create(owner).await?;
                        user_keys.entry(owner.to_owned()).or_insert(k)
                    }
                };
                covenant_personal::seal::seal(&payload, fields, covenant_personal::Place { owner, event_type }, key)?
            }
            _ => payload,
        };
        let subject = format!("{}.{subject_tail}", log.config().subject_prefix);
        let tip = match tips.get(&subject) {
            Some(t) => *t,
            None => ChainTip::genesis(log.origin(), &subject)?,
        };
        let ev = NewEvent::json(event_type, "system", payload);
        let (headers, hash) = chain_headers(log.origin(), &subject, &tip, std::slice::from_ref(&ev), &[])?.remove(0);
        tips.insert(subject.clone(), ChainTip { last_seq: 0, version: tip.version + 1, hash });
        let ack = js.send_publish(subject, PublishMessage::build().headers(headers).payload(ev.payload)).await?;
        inflight.push(ack.into_future());
        if inflight.len() >= 4000 {
            inflight.next().await.context("ack")??;
        }
    }
    while let Some(a) = inflight.next().await {
        a?;
    }
    Ok(())
}

fn uuid_of(k: u64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(0x0b7c_6a4e_2f1d_4c55, 0x9a8e_0000_0000_0000 | k)
}

/// Runs one projection alone from scratch to the end of the stream; returns events/s.
async fn project(
    log: &EventLog,
    stream: &str,
    pool: &PgPool,
    p: std::sync::Arc<dyn Projection>,
    opts: &ProjectionsBench,
) -> Result<f64> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cfg = covenant_projections::RunnerConfig {
        stream: stream.to_owned(),
        batch_size: opts.batch,
        fetch_wait: Duration::from_millis(200),
    };
    let name = p.name();
    let mut runner = covenant_projections::Runner::new(log.jetstream().clone(), pool.clone(), p, cfg, stop_rx);
    let t = Instant::now();
    let mut batches = 0u64;
    loop {
        if let covenant_projections::Outcome::Applied { last_seq, .. } = runner.try_process_next().await? {
            batches += 1;
            if last_seq >= opts.events {
                break;
            }
        }
    }
    tracing::info!(projection = name, batches, mean_batch = opts.events / batches.max(1), "projected");
    let _ = stop_tx.send(true);
    let cp = covenant_projections::checkpoint::get(pool, name).await?;
    anyhow::ensure!(cp == opts.events, "{name} stopped at {cp}");
    Ok(opts.events as f64 / t.elapsed().as_secs_f64())
}

/// Bulk-inserts the stream's audit rows into a plain copy of `audit_events` (rows read into
/// memory first, untimed); returns rows/s.
async fn raw_insert(log: &EventLog, pool: &PgPool, opts: &ProjectionsBench) -> Result<f64> {
    let mut all: Vec<Vec<ProjectedEvent>> = Vec::new();
    rebuild::read_range(log.jetstream(), &log.config().stream, 1, opts.events, false, async |b| {
        all.push(b);
        Ok(())
    })
    .await?;
    sqlx::query("CREATE TABLE raw_audit (LIKE audit_events INCLUDING ALL)").execute(pool).await?;
    let raw = RawTable;
    let t = Instant::now();
    for chunk in all.iter().flatten().collect::<Vec<_>>().chunks(opts.batch) {
        let rows: Vec<ProjectedEvent> = chunk.iter().map(|e| (*e).clone()).collect();
        let mut tx = pool.begin().await?;
        raw.apply(&mut tx, Tables::LIVE, &rows).await?;
        tx.commit().await?;
    }
    Ok(opts.events as f64 / t.elapsed().as_secs_f64())
}

/// The audit projection's insert, aimed at `raw_audit`: the same rows and statement with
/// no consumer, checkpoint or decoding around it.
struct RawTable;

#[async_trait::async_trait]
impl Projection for RawTable {
    fn name(&self) -> &'static str {
        "raw"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["raw_audit"]
    }
    async fn apply(
        &self,
        conn: &mut sqlx::PgConnection,
        _: Tables,
        events: &[ProjectedEvent],
    ) -> Result<covenant_projections::projection::Applied, sqlx::Error> {
        covenant_projections::audit::insert_rows(conn, "raw_audit", events).await?;
        Ok(Default::default())
    }
}
