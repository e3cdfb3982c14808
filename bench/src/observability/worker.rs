//! The observability benchmark's child run: commands, then GraphQL over HTTP with the
//! projections running, with the telemetry its parent chose; it prints one JSON line.

use super::*;

/// The child's run: prints one JSON line of figures.
///
/// # Errors
/// When a service or a request fails.
pub async fn worker(w: &ObservabilityWorker) -> Result<()> {
    let on = w.telemetry == "on" || w.telemetry.split('+').any(|p| p == "metrics");
    let metrics = on.then(covenant_ops::telemetry::install_metrics);
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_uppercase();
    let cfg = LogConfig {
        stream: format!("BENCH_OBS_{tag}"),
        subject_prefix: format!("bench.obs{tag}"),
        ..Default::default()
    };
    let side = Arc::new(CommandSide::open(connect::client(&w.nats).await?, cfg.clone()).await?);
    let pool = connect::pool(&w.database).await?;
    covenant_projections::migrate(&pool).await?;

    // Commands: 64 in flight over every assigned country code.
    let ctx = CommandContext::system();
    let codes: Vec<&str> = covenant_domain::iso3166::ALPHA2.to_vec();
    for c in &codes {
        let cmd = CountryCommand::Register {
            code: CountryCode::parse(c)?,
            name: Name::parse(c)?,
            gdp_usd: Usd::new(1_000_000)?,
        };
        side.countries.execute(c, cmd, &ctx).await?;
    }
    let per_worker = w.commands / 64;
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    if w.barrier {
        barrier(&mut stdin).await?;
    }
    let started = Instant::now();
    try_join_all((0..64).map(|k| {
        let side = side.clone();
        let mine: Vec<&str> = codes.iter().copied().skip(k).step_by(64).collect();
        tokio::spawn(async move {
            let ctx = CommandContext::system();
            for i in 0..per_worker {
                let gdp = Usd::new(2_000_000 + i as u64)?;
                side.countries.execute(mine[i % mine.len()], CountryCommand::UpdateGdp { gdp_usd: gdp }, &ctx).await?;
            }
            anyhow::Ok(())
        })
    }))
    .await?
    .into_iter()
    .collect::<Result<Vec<()>>>()?;
    let commands_per_sec = (per_worker * 64) as f64 / started.elapsed().as_secs_f64();

    // GraphQL over HTTP, with the projections running.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = crate::http::projections(&side, &pool, &stop_rx);
    // The projections first catch up with the command phase, so the HTTP figure measures
    // requests rather than the backlog's replay beside them.
    crate::http::caught_up(&side, &pool, Duration::from_secs(120)).await?;
    let api = crate::http::api_in_process(&side, &pool, &w.nats, metrics, &stop_rx).await?;
    // The HTTP load updates the first COUNTRIES codes, all registered above.
    debug_assert!(codes.contains(&country(COUNTRIES - 1)));
    let token = admin_bearer(&side, &pool, "obs@covenant.local", Duration::from_secs(60)).await?;
    let client = crate::http::client();
    if w.barrier {
        barrier(&mut stdin).await?;
    }
    let cpu0 = crate::cpu_time(None).map_or(0.0, |d| d.as_secs_f64());
    let f = load(&client, api.addr, w.concurrency, w.seconds, 20, token).await?;
    let cpu = crate::cpu_time(None).map_or(0.0, |d| d.as_secs_f64()) - cpu0;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let _ = api.task.await;
    let requests = f.per_sec * w.seconds as f64;
    let m = Measured {
        commands_per_sec,
        http_per_sec: f.per_sec,
        http_p99_ms: f.p99.as_secs_f64() * 1e3,
        http_cpu_us: cpu * 1e6 / requests.max(1.0),
    };
    println!("{}", serde_json::to_string(&m)?);
    Ok(())
}

/// Prints `ready` and waits for a line on standard input: the parent starts the phase of
/// every paired worker at once.
async fn barrier(stdin: &mut tokio::io::BufReader<tokio::io::Stdin>) -> Result<()> {
    println!("ready");
    let mut go = String::new();
    tokio::io::AsyncBufReadExt::read_line(stdin, &mut go).await?;
    Ok(())
}
