//! Running projections in this process, and the `covenant projections …` commands.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_nats::jetstream;
use covenant_projections::monitor::Monitor;
use covenant_projections::{Runner, RunnerConfig, lease, rebuild, verify};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Starts a runner per projection and a monitor refreshing the lag and business gauges
/// every `monitor_every`, until `shutdown` turns true. Each runner consumes only while it
/// holds its projection's lease (`lease_ttl` unrenewed), so several instances run each
/// projection once and a standby takes over a dead instance's within `lease_ttl`.
pub fn spawn(
    js: &jetstream::Context,
    stream: &str,
    pool: &PgPool,
    shutdown: &watch::Receiver<bool>,
    monitor_every: Duration,
    lease_ttl: Duration,
) -> Vec<JoinHandle<()>> {
    let mut tasks: Vec<JoinHandle<()>> = covenant_projections::all()
        .into_iter()
        .map(|p| {
            let cfg = RunnerConfig { stream: stream.to_owned(), ..Default::default() };
            let key = format!("projection.{}", p.name());
            let runner = Runner::new(js.clone(), pool.clone(), p, cfg, shutdown.clone());
            let (js, stream, stop) = (js.clone(), stream.to_owned(), shutdown.clone());
            tokio::spawn(async move {
                // Several instances may run: each projection runs where its lease is held.
                let runner = loop {
                    match lease::projection_bucket(&js, &stream).await {
                        Ok(kv) => break runner.with_lease(lease::Lease::new(kv, key, lease_ttl)),
                        Err(e) => {
                            tracing::warn!(error = %e, "the projection leases cannot be opened; retrying");
                            if *stop.borrow() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                };
                let _ = runner.run().await;
            })
        })
        .collect();
    let monitor = Monitor::new(js.clone(), stream, pool.clone());
    let mut stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            if let Err(e) = monitor.tick().await {
                tracing::warn!(error = %e, "projection monitor could not refresh the gauges");
            }
            tokio::select! {
                _ = tokio::time::sleep(monitor_every) => {}
                _ = stop.changed() => break,
            }
        }
    }));
    tasks
}

/// `covenant projections status`: checkpoint, lag and events/s per projection (sampled
/// over one second), skipped events.
///
/// # Errors
/// When NATS or PostgreSQL cannot be read.
pub async fn status(js: &jetstream::Context, stream: &str, pool: &PgPool) -> Result<()> {
    let monitor = Monitor::new(js.clone(), stream, pool.clone());
    let before = monitor.tick().await?;
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = monitor.tick().await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:<10} {:>12} {:>12} {:>10} {:>10} {:>10} {:>8}",
        "projection", "checkpoint", "stream last", "lag", "pending", "events/s", "skipped"
    );
    for (b, a) in before.iter().zip(&after) {
        let rate = (a.checkpoint - b.checkpoint.min(a.checkpoint)) as f64 / secs;
        let pending = a.consumer_pending.map_or("-".into(), |p| p.to_string());
        println!(
            "{:<10} {:>12} {:>12} {:>10} {:>10} {:>10.0} {:>8}",
            a.name, a.checkpoint, a.stream_last_seq, a.lag, pending, rate, a.skipped
        );
    }
    if after.iter().any(|s| s.skipped > 0) {
        println!(
            "skipped events are listed in the projection_skipped_events table (and were logged with their sequence)"
        );
    }
    Ok(())
}

/// A progress bar over replayed stream events (position, events/s, ETA).
fn replay_bar(message: String) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events  {per_sec}  ETA {eta}")
            .expect("static progress template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// `covenant projections rebuild NAME`: shadow rebuild with a progress bar, then swap.
///
/// # Errors
/// Unknown name, or NATS/PostgreSQL failures (the live tables then stay as they were).
pub async fn rebuild_cmd(js: &jetstream::Context, stream: &str, pool: &PgPool, name: &str) -> Result<()> {
    let Some(p) = covenant_projections::by_name(name) else {
        let names: Vec<&str> = covenant_projections::all().iter().map(|p| p.name()).collect();
        bail!("unknown projection `{name}` (known: {})", names.join(", "));
    };
    let bar = replay_bar(format!("rebuilding {name}"));
    let report = rebuild::rebuild(js, stream, pool, p.as_ref(), |done, target| {
        bar.set_length(target);
        bar.set_position(done);
    })
    .await
    .with_context(|| format!("rebuilding {name} (the live tables are unchanged)"))?;
    bar.finish();
    let lag = Monitor::new(js.clone(), stream, pool.clone())
        .tick()
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .map_or(0, |s| s.lag);
    println!(
        "rebuilt {name}: {} events in {:.1?} ({:.0} events/s); swapped at sequence {}; lag now {lag}",
        report.events,
        report.elapsed,
        report.events as f64 / report.elapsed.as_secs_f64().max(1e-9),
        report.swapped_at
    );
    Ok(())
}

/// `covenant projections verify [NAME]`: recomputes each read model (or `name`'s) from the
/// stream up to its checkpoint and compares it with PostgreSQL; prints every difference it
/// keeps. `Ok(true)` when all are equal.
///
/// # Errors
/// Unknown name, or a verification that could not run (NATS/PostgreSQL failures).
pub async fn verify_cmd(js: &jetstream::Context, stream: &str, pool: &PgPool, name: Option<&str>) -> Result<bool> {
    let projections = match name {
        None => covenant_projections::all(),
        Some(n) => vec![covenant_projections::by_name(n).with_context(|| {
            let names: Vec<&str> = covenant_projections::all().iter().map(|p| p.name()).collect();
            format!("unknown projection `{n}` (known: {})", names.join(", "))
        })?],
    };
    let mut equal = true;
    for p in projections {
        let name = p.name();
        let bar = replay_bar(format!("folding {name}"));
        let report = verify::verify(js, stream, pool, p.as_ref(), |done, target| {
            bar.set_length(target);
            bar.set_position(done);
        })
        .await
        .with_context(|| format!("verifying {name}"))?;
        bar.finish_and_clear();
        let tables: Vec<String> = report.tables.iter().map(|t| format!("{} {} rows", t.table, t.live_rows)).collect();
        if report.equal() {
            println!(
                "{name}: equal to the fold of the log at sequence {} ({}) in {:.1?}",
                report.checkpoint,
                tables.join(", "),
                report.elapsed
            );
            continue;
        }
        equal = false;
        println!(
            "{name}: {} rows differ from the fold of the log at sequence {} ({})",
            report.differing(),
            report.checkpoint,
            tables.join(", ")
        );
        for t in report.tables.iter().filter(|t| t.differing > 0) {
            println!(
                "  {}: {} rows differ (PostgreSQL {} rows, fold {} rows)",
                t.table, t.differing, t.live_rows, t.fold_rows
            );
            for d in report.differences.iter().filter(|d| d.table == t.table) {
                match (&d.live, &d.fold) {
                    (None, _) => println!("    {} {}: missing in PostgreSQL", d.table, d.key),
                    (_, None) => println!("    {} {}: in PostgreSQL, not in the fold of the log", d.table, d.key),
                    _ => {
                        for (column, live, fold) in d.columns() {
                            println!("    {} {}: {column} is {live} in PostgreSQL, {fold} in the fold", d.table, d.key);
                        }
                    }
                }
            }
            if t.differing > verify::SHOWN_PER_TABLE as u64 {
                println!("    … and {} more", t.differing - verify::SHOWN_PER_TABLE as u64);
            }
        }
        println!("  repair: `covenant projections rebuild {name}`, then verify again (RUNBOOK: Projection divergence)");
    }
    Ok(equal)
}
