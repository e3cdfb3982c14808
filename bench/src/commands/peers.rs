//! The peer every claim is a ratio to (DESIGN section 1): stock cqrs-es with postgres-es,
//! as its documentation sets it up (its events table, a pool of 10 connections, no
//! snapshots), on a managed PostgreSQL with fsync on and `synchronous_commit` on (the
//! default), running the same Country workload as Covenant.

use std::sync::Arc;

use anyhow::{Context, Result};
use covenant_domain::{Country, CountryCode, CountryCommand, Name, Usd, iso3166};
use covenant_ops::managed::postgres::PgCluster;
use cqrs_es::AggregateError;
use futures::future::try_join_all;
use postgres_es::PostgresCqrs;

use super::report::Row;
use super::{CommandsBench, Measured, Outcome, Runs, updates};

/// postgres-es's events table (its repository's `db/init.sql`, v0.5.0).
const EVENTS_DDL: &str = "CREATE TABLE events (
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    sequence bigint CHECK (sequence >= 0) NOT NULL,
    event_type text NOT NULL,
    event_version text NOT NULL,
    payload json NOT NULL,
    metadata json NOT NULL,
    timestamp timestamp with time zone DEFAULT (CURRENT_TIMESTAMP),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
)";

/// Runs the workload through `postgres_es::postgres_cqrs` and returns its row.
///
/// # Errors
/// When PostgreSQL cannot be started or a command fails other than by a conflict.
pub(super) async fn postgres_es(opts: &CommandsBench) -> Result<Row> {
    let pg = PgCluster::start_temp_with(true).await?;
    pg.create_database("bench").await?;
    // As `postgres_es::default_postgress_pool` sets it (which panics on a failed connection).
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(10)
        .connect(&pg.url("bench"))
        .await
        .context("connecting to the benchmark's PostgreSQL")?;
    sqlx::query(EVENTS_DDL).execute(&pool).await.context("creating postgres-es's events table")?;
    let cqrs: Arc<PostgresCqrs<Country>> = Arc::new(postgres_es::postgres_cqrs(pool, Vec::new(), ()));
    let countries: Vec<&'static str> = iso3166::ALPHA2.iter().copied().take(opts.aggregates).collect();
    try_join_all(countries.iter().map(|&code| {
        let cqrs = cqrs.clone();
        async move {
            let cmd = CountryCommand::Register {
                code: CountryCode::parse(code)?,
                name: Name::parse(&format!("Country {code}"))?,
                gdp_usd: Usd::new(1_000_000_000)?,
            };
            cqrs.execute(code, cmd).await.map_err(|e| anyhow::anyhow!("registering {code}: {e}"))
        }
    }))
    .await?;
    let mut runs = Runs::default();
    for round in 1..=opts.rounds {
        println!("round {round}");
        runs.add(run(&cqrs, &countries, opts).await?, "postgres-es");
    }
    Ok(runs.row("postgres-es", "stock cqrs-es + postgres-es"))
}

async fn run(cqrs: &Arc<PostgresCqrs<Country>>, countries: &[&'static str], opts: &CommandsBench) -> Result<Measured> {
    let cqrs = cqrs.clone();
    updates(countries, opts, move |code, cmd| {
        let cqrs = cqrs.clone();
        async move {
            match cqrs.execute(code, cmd).await {
                Ok(()) => Ok(Outcome::Stored),
                // Stock cqrs-es does not retry: a concurrent command on the same country is
                // refused.
                Err(AggregateError::AggregateConflict) => Ok(Outcome::Conflict),
                Err(e) => Err(anyhow::anyhow!("postgres-es update of {code}: {e}")),
            }
        }
    })
    .await
}
