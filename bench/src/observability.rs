//! `covenant-bench observability`: the cost of telemetry. Command throughput and GraphQL
//! request throughput measured in child processes with telemetry off (no log output, no
//! spans, no metrics recorder) and on (JSON logs at `info` to `/dev/null`; the spans of
//! the requests sampled at `--sample-ratio`, made and batched by the OpenTelemetry SDK,
//! whose exporter drops them as no collector runs here; the Prometheus recorder),
//! alternating, on one nats-server and PostgreSQL.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use covenant_commands::{CommandContext, CommandSide, LogConfig};
use covenant_domain::{CountryCode, CountryCommand, Name, Usd};
use futures::future::try_join_all;

use crate::http::{COUNTRIES, admin_bearer, country, load};
use covenant_ops::connect;
use covenant_ops::managed::nats::{NatsServer, SyncPolicy};
use covenant_ops::managed::postgres::PgCluster;

mod worker;
pub use worker::worker;

/// Options of the observability benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct ObservabilityBench {
    /// Commands per run.
    #[arg(long, default_value_t = 20_000)]
    pub commands: usize,
    /// Seconds of HTTP load per run. Long enough for the paired median to settle: three
    /// paired runs of one binary gave CPU-per-request overheads of 10.2%, 15.0% and 16.3%
    /// with 5-second runs, and 14.9%, 15.0% and 15.0% with 15-second runs.
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Rounds (each runs every mode once; each figure is the best of its rounds).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Modes to run: `off`, `on`, and to see where the cost lies `metrics`, `logs`,
    /// `traces` or a combination joined by `+` (`metrics+traces`). `control` runs exactly
    /// as `off` and is reported as a mode of its own: its "overhead" is the benchmark's own
    /// spread and bias (`--paired --modes off,control`).
    #[arg(long, value_delimiter = ',', default_value = "off,on")]
    pub modes: Vec<String>,
    /// `COVENANT_TRACE_SAMPLE_RATIO` of the runs with traces (the service's default,
    /// `covenant_telemetry::DEFAULT_SAMPLE_RATIO`, unless given; 1 traces every request).
    #[arg(long, default_value_t = covenant_telemetry::DEFAULT_SAMPLE_RATIO)]
    pub sample_ratio: f64,
    /// Run each round's modes at the same time (sharing the machine, so a noisy neighbour
    /// slows both alike) instead of one after the other; the figure is then the median of
    /// the rounds' on/off ratios (and of each other mode's ratio to off).
    #[arg(long)]
    pub paired: bool,
}

/// One measured run in a child process (internal).
#[derive(Debug, Clone, clap::Args)]
pub struct ObservabilityWorker {
    /// `off`, `on`, or `metrics`, `logs`, `traces` joined by `+`.
    #[arg(long)]
    pub telemetry: String,
    /// NATS URL.
    #[arg(long)]
    pub nats: String,
    /// PostgreSQL URL.
    #[arg(long)]
    pub database: String,
    /// Commands.
    #[arg(long)]
    pub commands: usize,
    /// Seconds of HTTP load.
    #[arg(long)]
    pub seconds: u64,
    /// Concurrent HTTP clients.
    #[arg(long)]
    pub concurrency: usize,
    /// Print `ready` before the command phase and again before the HTTP load, each time
    /// waiting for a line on standard input (so paired runs load the machine at the same
    /// time in both phases).
    #[arg(long)]
    pub barrier: bool,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy)]
struct Measured {
    commands_per_sec: f64,
    http_per_sec: f64,
    http_p99_ms: f64,
    /// CPU time of the worker process (server and load generator) per GraphQL request, in
    /// microseconds: unlike throughput, it does not move with other load on the machine.
    http_cpu_us: f64,
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// When a service or a child run fails.
pub async fn run(opts: &ObservabilityBench) -> Result<()> {
    let nats = NatsServer::start_temp(SyncPolicy::Default).await?;
    let pg = PgCluster::start_temp().await?;
    let exe = std::env::current_exe().context("locating the covenant-bench binary")?;
    println!(
        "observability benchmark: {} commands (64 in flight over 249 countries) and {} s of mixed GraphQL at c={}, \
         per run; telemetry off vs on (JSON logs at the default filter, spans through tracing-opentelemetry and the OTel \
         SDK at sampling ratio {}, the Prometheus recorder)",
        opts.commands, opts.seconds, opts.concurrency, opts.sample_ratio
    );
    for (i, m) in opts.modes.iter().enumerate() {
        if !["off", "on", "control"].contains(&m.as_str())
            && !m.split('+').all(|p| ["metrics", "logs", "traces"].contains(&p))
        {
            bail!("unknown mode {m}: off, on, control, or metrics/logs/traces joined by '+'");
        }
        // Each mode's figures are kept (and its database named) by the mode.
        if opts.modes[..i].contains(m) {
            bail!("mode {m} is given twice in --modes");
        }
    }
    // The targets: at most 10% at the service's default sampling ratio, 20% tracing every
    // request.
    let target = if opts.sample_ratio >= 1.0 { 20.0 } else { 10.0 };
    let mut results: Vec<(&str, Measured)> = Vec::new();
    for round in 1..=opts.rounds {
        let mut runs = Vec::new();
        for mode in opts.modes.iter().map(String::as_str) {
            let db = format!("obs_{round}_{mode}");
            pg.create_database(&db).await?;
            let cmd = worker_command(&exe, mode, &nats.url(), &pg.url(&db), opts);
            if opts.paired {
                runs.push((cmd, mode));
            } else {
                let m = run_worker(cmd, mode).await?;
                print_run(round, mode, &m);
                results.push((mode, m));
            }
        }
        if opts.paired {
            let measured = paired(runs).await?;
            for (mode, m) in opts.modes.iter().map(String::as_str).zip(measured) {
                print_run(round, mode, &m);
                results.push((mode, m));
            }
        }
    }
    let best = |mode: &str, f: fn(&Measured) -> f64| {
        results.iter().filter(|(m, _)| *m == mode).map(|(_, r)| f(r)).fold(0.0, f64::max)
    };
    for mode in opts.modes.iter().filter(|m| *m != "off" && *m != "on") {
        let (off, m) = (best("off", |r| r.commands_per_sec), best(mode, |r| r.commands_per_sec));
        let (hoff, hm) = (best("off", |r| r.http_per_sec), best(mode, |r| r.http_per_sec));
        println!(
            "  {mode}: commands overhead {:.1}%, GraphQL overhead {:.1}%",
            (1.0 - m / off) * 100.0,
            (1.0 - hm / hoff) * 100.0
        );
    }
    // The best-of figures compare off with on: without both (`--modes off,control`) there
    // is nothing to hold to the target.
    let both = ["off", "on"].iter().all(|m| opts.modes.iter().any(|x| x == m));
    if both {
        for (what, f) in [
            ("commands/s", (|m: &Measured| m.commands_per_sec) as fn(&Measured) -> f64),
            ("GraphQL requests/s", |m: &Measured| m.http_per_sec),
        ] {
            let (off, on) = (best("off", f), best("on", f));
            let overhead = (1.0 - on / off) * 100.0;
            println!(
                "  {what:<19} off {off:>8.0}   on {on:>8.0}   overhead {overhead:>5.1}% (target <= {target:.0}%) {}",
                if overhead <= target { "MET" } else { "NOT MET" }
            );
        }
    }
    if opts.paired {
        print_paired(&results, target);
    }
    // CPU per request: the median of each mode's rounds (a noisy neighbour slows a run's
    // wall clock, but barely its CPU per request).
    let cpu = |mode: &str| {
        median(results.iter().filter(|(m, _)| *m == mode).map(|(_, r)| r.http_cpu_us).collect()).unwrap_or(0.0)
    };
    let (off, on) = (cpu("off"), cpu("on"));
    if off > 0.0 && on > 0.0 {
        println!(
            "  CPU per GraphQL request (median) off {off:>6.0} us   on {on:>6.0} us   overhead {:>5.1}%",
            (on / off - 1.0) * 100.0
        );
    }
    Ok(())
}

/// The command line of one worker run in `mode`.
fn worker_command(
    exe: &std::path::Path,
    mode: &str,
    nats: &str,
    database: &str,
    opts: &ObservabilityBench,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["observability-worker", "--telemetry", mode, "--nats", nats])
        .args(["--database", database, "--commands", &opts.commands.to_string()])
        .args(["--seconds", &opts.seconds.to_string(), "--concurrency", &opts.concurrency.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if opts.paired {
        cmd.arg("--barrier").stdin(Stdio::piped());
    }
    let has = |part: &str| mode == "on" || mode.split('+').any(|p| p == part);
    // Logs on: the service's default filter (RUST_LOG unset); off: nothing.
    if has("logs") {
        cmd.env_remove("RUST_LOG");
    } else {
        cmd.env("RUST_LOG", "off");
    }
    cmd.env("COVENANT_LOG_FORMAT", "json");
    if has("traces") {
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", "discard");
        cmd.env("COVENANT_TRACE_SAMPLE_RATIO", opts.sample_ratio.to_string());
    } else {
        cmd.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    }
    cmd
}

/// Runs a worker and reads its figures.
async fn run_worker(mut cmd: tokio::process::Command, mode: &str) -> Result<Measured> {
    // Not `Command::output`: tokio's pipes stderr whatever the command says, and the logs
    // would go down a pipe into this process's memory instead of to `/dev/null`.
    let out = cmd.spawn().context("starting a worker")?.wait_with_output().await.context("running a worker")?;
    parse_result(&String::from_utf8_lossy(&out.stdout), mode)
        .with_context(|| format!("the worker exited with {} (run it alone to see its errors)", out.status))
}

/// The figures a worker printed last.
fn parse_result(text: &str, mode: &str) -> Result<Measured> {
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("worker ({mode}) printed no result: {text}"))
}

/// Runs the round's workers together: each prepares (countries registered), then all run
/// their commands at once; each catches up (projections), then all start their HTTP load
/// at once. Without the first barrier the command phases overlapped by chance (the first
/// worker started had the machine to itself for a while), and the rounds' command ratios
/// spread from about -30% to +35%.
async fn paired(runs: Vec<(tokio::process::Command, &str)>) -> Result<Vec<Measured>> {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let mut children = Vec::new();
    for (mut cmd, mode) in runs {
        let mut child = cmd.spawn().context("starting a worker")?;
        let out = child.stdout.take().context("worker stdout")?;
        children.push((child, tokio::io::BufReader::new(out).lines(), mode));
    }
    for phase in ["commands", "HTTP load"] {
        for (_, lines, mode) in &mut children {
            loop {
                match lines.next_line().await.context("reading a worker")? {
                    Some(l) if l == "ready" => break,
                    Some(_) => {}
                    None => bail!("worker ({mode}) ended before its {phase}"),
                }
            }
        }
        for (child, ..) in &mut children {
            if let Some(stdin) = child.stdin.as_mut() {
                stdin.write_all(b"go\n").await.context("starting a worker's phase")?;
            }
        }
    }
    let mut out = Vec::new();
    for (mut child, mut lines, mode) in children {
        let mut text = String::new();
        while let Some(l) = lines.next_line().await.context("reading a worker")? {
            text.push_str(&l);
            text.push('\n');
        }
        child.wait().await.context("waiting for a worker")?;
        out.push(parse_result(&text, mode)?);
    }
    Ok(out)
}

fn print_run(round: usize, mode: &str, m: &Measured) {
    println!(
        "  round {round} telemetry {mode:<7}: {:>8.0} commands/s   {:>7.0} GraphQL requests/s (p99 {:.1} ms, \
         {:.0} us CPU each)",
        m.commands_per_sec, m.http_per_sec, m.http_p99_ms, m.http_cpu_us
    );
}

/// The middle value (the upper one of an even count), if any.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// With `--paired`: for each mode but `off`, the median over rounds of mode/off, each
/// round's runs having shared the machine (`on` is held to the target; the partial modes
/// show where its cost lies).
fn print_paired(results: &[(&str, Measured)], target: f64) {
    let of = |mode: &str| results.iter().filter(|(m, _)| *m == mode).map(|(_, r)| *r).collect::<Vec<_>>();
    let off = of("off");
    let mut modes: Vec<&str> = Vec::new();
    for (m, _) in results {
        if *m != "off" && !modes.contains(m) {
            modes.push(m);
        }
    }
    type Ratio = fn(&Measured, &Measured) -> f64;
    let rows: [(&str, Ratio); 3] = [
        ("commands/s", |a, b| 1.0 - b.commands_per_sec / a.commands_per_sec),
        ("GraphQL requests/s", |a, b| 1.0 - b.http_per_sec / a.http_per_sec),
        ("CPU per GraphQL request", |a, b| b.http_cpu_us / a.http_cpu_us - 1.0),
    ];
    for mode in modes {
        let runs = of(mode);
        for (what, f) in rows {
            let ratios: Vec<f64> = off.iter().zip(&runs).map(|(a, b)| f(a, b) * 100.0).collect();
            let Some(o) = median(ratios.clone()) else { continue };
            // The rounds' spread beside the median: a single round says little (the A/A
            // control, `--modes off,control`, spreads by about ±15%).
            let (lo, hi) = ratios.iter().fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
            let spread = format!("(rounds {lo:+.1}% to {hi:+.1}%)");
            if mode == "on" {
                let verdict = if o <= target { "MET" } else { "NOT MET" };
                println!(
                    "  paired, median of rounds: {what:<23} overhead {o:>5.1}% {spread} (target <= {target:.0}%) {verdict}"
                );
            } else {
                println!("  paired, median of rounds, {mode} alone: {what:<23} overhead {o:>5.1}% {spread}");
            }
        }
    }
}
