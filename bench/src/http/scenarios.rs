//! The HTTP benchmark's scenarios, their same-run baselines (the read models' SQL through
//! sqlx, the command through the CommandBus, both from this process at the same
//! concurrency), and the targets they are held to.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::Rng as _;

use super::{COUNTRIES, HttpClient, Target, country, gdp_update, post_graphql, read_query, update_query};
use crate::{Figures, histogram};
use covenant_projections::views;

/// What the clients of one run do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scenario {
    /// GraphQL reads (a countries page, the fund, one country) without a token.
    ReadAnonymous,
    /// The same reads, signed in.
    ReadSignedIn,
    /// Baseline: the same read models' SQL through sqlx.
    ReadSqlx,
    /// `updateGdp` selecting only `sequence` (the API does not wait for the read models).
    MutationBare,
    /// `updateGdp` selecting the country (the API waits until the read models show it).
    MutationEntity,
    /// Baseline: the same command through the CommandBus.
    MutationBus,
}

impl Scenario {
    /// Every scenario, in the order of the table.
    pub(crate) const ALL: [Scenario; 6] = [
        Scenario::ReadAnonymous,
        Scenario::ReadSignedIn,
        Scenario::ReadSqlx,
        Scenario::MutationBare,
        Scenario::MutationEntity,
        Scenario::MutationBus,
    ];

    fn label(self) -> &'static str {
        match self {
            Scenario::ReadAnonymous => "GraphQL read, anonymous",
            Scenario::ReadSignedIn => "GraphQL read, signed in",
            Scenario::ReadSqlx => "  same SQL through sqlx",
            Scenario::MutationBare => "updateGdp { sequence }",
            Scenario::MutationEntity => "updateGdp { country }",
            Scenario::MutationBus => "  same command, CommandBus",
        }
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measured {
    pub(super) figures: Figures,
    /// Operations answered without their whole result: a conflict after the bus's retries,
    /// or a mutation's country null because the read models did not show it in time.
    partial: u64,
    /// Operations done.
    ops: u64,
    /// CPU time the server process used during the run (its projections included), for
    /// the scenarios it serves.
    server_cpu: Option<Duration>,
    /// CPU time this process used during the run: the load generator's, or the baseline's
    /// client side (sqlx, the CommandBus).
    client_cpu: Option<Duration>,
}

/// Runs `scenario` with `c` clients for `seconds`.
///
/// # Errors
/// A request that fails (other than as counted in [`Measured::partial`]).
pub(crate) async fn measure(
    t: &Target,
    client: &HttpClient,
    scenario: Scenario,
    c: usize,
    seconds: u64,
) -> Result<Measured> {
    let before = crate::cpu_time(None);
    let mut m = run(t, client, scenario, c, seconds).await?;
    m.client_cpu = before.zip(crate::cpu_time(None)).map(|(b, a)| a.saturating_sub(b));
    Ok(m)
}

/// [`measure`], without this process's CPU time.
async fn run(t: &Target, client: &HttpClient, scenario: Scenario, c: usize, seconds: u64) -> Result<Measured> {
    match scenario {
        Scenario::ReadSqlx => {
            let pool = t.pool.clone();
            drive(c, seconds, move || {
                let pool = pool.clone();
                async move { sql_once(&pool).await }
            })
            .await
        }
        Scenario::MutationBus => {
            let side = t.side.clone();
            drive(c, seconds, move || {
                let side = side.clone();
                async move { bus_once(&side).await }
            })
            .await
        }
        _ => {
            let token = (scenario != Scenario::ReadAnonymous).then(|| t.token.clone());
            let (client, addr) = (client.clone(), t.server.addr);
            let before = t.server.cpu();
            let mut m = drive(c, seconds, move || {
                let (client, token) = (client.clone(), token.clone());
                async move { http_once(&client, addr, token.as_deref(), scenario).await }
            })
            .await?;
            m.server_cpu = before.zip(t.server.cpu()).map(|(b, a)| a.saturating_sub(b));
            Ok(m)
        }
    }
}

/// `c` clients repeating `op` until `seconds` have passed; `op` answers whether the
/// operation was answered in full.
pub(super) async fn drive<F, Fut>(c: usize, seconds: u64, op: F) -> Result<Measured>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<bool>> + Send + 'static,
{
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..c)
        .map(|_| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut h = histogram();
                let (mut n, mut partial) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    if !op().await? {
                        partial += 1;
                    }
                    h.record(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX).max(1))?;
                    n += 1;
                }
                anyhow::Ok((n, partial, h))
            })
        })
        .collect();
    let (mut total, mut partial, mut h) = (0, 0, histogram());
    for w in workers {
        let (n, p, wh) = w.await??;
        total += n;
        partial += p;
        h.add(wh)?;
    }
    Ok(Measured {
        figures: Figures::new(total, started.elapsed(), &h),
        partial,
        ops: total,
        server_cpu: None,
        client_cpu: None,
    })
}

async fn http_once(client: &HttpClient, addr: SocketAddr, token: Option<&str>, scenario: Scenario) -> Result<bool> {
    let query = match scenario {
        Scenario::MutationBare => update_query("sequence"),
        Scenario::MutationEntity => update_query("sequence country { gdpUsd version }"),
        _ => read_query(&mut rand::rng()),
    };
    let text = post_graphql(client, addr, token, &query).await?;
    if text.contains("\"CONFLICT\"") {
        return Ok(false);
    }
    Ok(!(scenario == Scenario::MutationEntity && text.contains("\"country\":null")))
}

/// What the three reads' resolvers run, through sqlx.
async fn sql_once(pool: &sqlx::PgPool) -> Result<bool> {
    let (pick, code) = {
        let mut rng = rand::rng();
        (rng.random_range(0..3), country(rng.random_range(0..COUNTRIES)))
    };
    match pick {
        0 => {
            views::countries_counted(pool, views::CountryOrder::Code, 20, None).await?;
        }
        1 => {
            views::fund(pool).await?;
        }
        _ => {
            views::country(pool, code).await?;
        }
    }
    Ok(true)
}

async fn bus_once(side: &covenant_commands::CommandSide) -> Result<bool> {
    let (code, gdp) = gdp_update();
    let cmd = covenant_domain::CountryCommand::UpdateGdp { gdp_usd: covenant_domain::Usd::new(gdp)? };
    match side.countries.execute(code, cmd, &covenant_commands::CommandContext::system()).await {
        Ok(_) => Ok(true),
        Err(covenant_commands::CommandError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Every run's figures, by scenario and concurrency.
#[derive(Default)]
pub(crate) struct Table(BTreeMap<(Scenario, usize), Measured>);

impl Table {
    /// Records and prints a run.
    pub(crate) fn add(&mut self, scenario: Scenario, c: usize, m: Measured) {
        let partial = if m.partial > 0 { format!("   ({} answered in part)", m.partial) } else { String::new() };
        // The server's CPU per request: unlike req/s, it hardly moves when a neighbour
        // takes the machine's cores for a while.
        // This process's CPU per request: the load generator shares the machine with the
        // server, and what it spends is not the server's to use.
        let per_op = |cpu: Option<Duration>, whose: &str| match cpu {
            Some(cpu) if m.ops > 0 => format!("   {whose} CPU {:>4.0} µs/op", cpu.as_secs_f64() * 1e6 / m.ops as f64),
            _ => String::new(),
        };
        let (server, client) = (per_op(m.server_cpu, "server"), per_op(m.client_cpu, "client"));
        println!("{}{server}{client}{partial}", m.figures.row(&format!("  {}", scenario.label())));
        self.0.insert((scenario, c), m);
    }

    fn get(&self, scenario: Scenario, c: usize) -> Option<Figures> {
        self.0.get(&(scenario, c)).map(|m| m.figures)
    }

    /// The targets of issue 17, each MET or NOT MET (or not measured at these
    /// concurrencies), and the server's memory.
    pub(crate) fn print_targets(&self, rss: Option<u64>) {
        let verdict = |ok: bool| if ok { "MET" } else { "NOT MET" };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!("targets:");
        match (self.get(Scenario::MutationBare, 1), self.get(Scenario::MutationBus, 1)) {
            (Some(api), Some(bus)) => {
                let bound = 1.5 * ms(bus.p50) + 0.5;
                println!(
                    "  mutation p50 at c=1, entity not selected: {:.2} ms <= 1.5 x the bus's {:.2} ms + 0.5 ms = {bound:.2} ms   {}",
                    ms(api.p50),
                    ms(bus.p50),
                    verdict(ms(api.p50) <= bound)
                );
            }
            _ => println!("  mutation p50 at c=1: not measured (add 1 to --concurrency)"),
        }
        match (self.get(Scenario::MutationBare, 32), self.get(Scenario::MutationBus, 32)) {
            (Some(api), Some(bus)) => println!(
                "  mutations at c=32, entity not selected: {:.0}/s >= 5,000/s   {}   ({:.2}x the bus's {:.0}/s)",
                api.per_sec,
                verdict(api.per_sec >= 5_000.0),
                api.per_sec / bus.per_sec,
                bus.per_sec
            ),
            _ => println!("  mutations at c=32: not measured (add 32 to --concurrency)"),
        }
        if let Some(sql) = self.get(Scenario::ReadSqlx, 32) {
            for s in [Scenario::ReadAnonymous, Scenario::ReadSignedIn] {
                if let Some(api) = self.get(s, 32) {
                    let ratio = api.per_sec / sql.per_sec;
                    println!(
                        "  {} at c=32: {:.2}x direct sqlx ({:.0}/s vs {:.0}/s) >= 0.5x   {}",
                        s.label(),
                        ratio,
                        api.per_sec,
                        sql.per_sec,
                        verdict(ratio >= 0.5)
                    );
                }
            }
        } else {
            println!("  reads at c=32: not measured (add 32 to --concurrency)");
        }
        let worst = self
            .0
            .iter()
            .filter(|((s, c), _)| matches!(s, Scenario::ReadAnonymous | Scenario::ReadSignedIn) && *c <= 32)
            .map(|((s, c), m)| (m.figures.p99, *s, *c))
            .max();
        let reads_at_32 = self.get(Scenario::ReadAnonymous, 32).is_some();
        if !reads_at_32 {
            // p99 grows with concurrency: a verdict "up to c=32" needs c=32 itself.
            println!("  read p99 up to c=32: not measured (add 32 to --concurrency)");
        } else if let Some((p99, s, c)) = worst {
            println!(
                "  read p99 up to c=32: worst {:.2} ms ({}, c={c}) <= 10 ms   {}",
                ms(p99),
                s.label(),
                verdict(p99 <= Duration::from_millis(10))
            );
        }
        match rss {
            Some(b) => println!("  server RSS at the end: {:.1} MiB", b as f64 / (1024.0 * 1024.0)),
            None => println!("  server RSS at the end: unknown (not Linux)"),
        }
    }
}
