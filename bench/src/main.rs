//! `covenant-bench`: Covenant's benchmarks, each printing its figures beside a baseline
//! measured in the same run. Each starts the services it needs (temporary nats-server and
//! PostgreSQL) unless told where they are. See `covenant-bench --help`.

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Covenant's benchmarks: every figure beside a baseline measured in the same run.
#[derive(Parser)]
#[command(name = "covenant-bench", version)]
struct Cli {
    #[command(subcommand)]
    what: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Commands/s and p50/p99 across many aggregates beside raw JetStream publishes.
    Commands {
        #[command(flatten)]
        opts: covenant_bench::commands::CommandsBench,
        /// An existing NATS server to run against (default: a temporary one per
        /// durability profile).
        #[arg(long, env = "COVENANT_NATS_URL")]
        nats_url: Option<String>,
    },
    /// Projection events/s over a large stream beside a raw PostgreSQL bulk insert, and
    /// the wall time of a full rebuild.
    Projections(covenant_bench::projections::ProjectionsBench),
    /// GraphQL reads (anonymous, signed in) and mutations (selecting the entity or not)
    /// against the API in a process of its own at several concurrencies, beside the same SQL
    /// through sqlx and the same command through the CommandBus in the same run; the
    /// server's memory at the end.
    Http(covenant_bench::http::HttpBench),
    /// Minutes of mixed GraphQL load against the API in a process of its own, sampling its
    /// memory: flat after warm-up and under 256 MiB.
    Soak(covenant_bench::soak::SoakBench),
    /// The API and projections for `http` and `soak` (internal).
    #[command(hide = true)]
    HttpServer(covenant_bench::http::server::HttpServer),
    /// Audit verification events/s (stream, beside a raw ordered-consumer read; bundle,
    /// per core and on every core) and the sealer's first checkpoint.
    Audit(covenant_bench::audit::AuditBench),
    /// Command and GraphQL throughput with telemetry (JSON logs, traces, metrics) off vs
    /// on, in child processes, alternating.
    Observability(covenant_bench::observability::ObservabilityBench),
    /// One run of the observability benchmark (internal).
    #[command(hide = true)]
    ObservabilityWorker(covenant_bench::observability::ObservabilityWorker),
}

/// The service's allocator, so the figures are the service's (see the `covenant` binary).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // The service's telemetry, from the same environment (the observability benchmark's
    // workers switch its parts on and off this way).
    let telemetry = covenant_ops::telemetry::init();
    let outcome = run(Cli::parse()).await;
    telemetry.shutdown().await;
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.what {
        Bench::Commands { opts, nats_url } => covenant_bench::commands::run(&opts, nats_url.as_deref()).await,
        Bench::Projections(opts) => covenant_bench::projections::run(&opts).await,
        Bench::Http(opts) => covenant_bench::http::run(&opts).await,
        Bench::Soak(opts) => covenant_bench::soak::run(&opts).await,
        Bench::HttpServer(s) => covenant_bench::http::server::serve(&s).await,
        Bench::Audit(opts) => covenant_bench::audit::run(&opts).await,
        Bench::Observability(opts) => covenant_bench::observability::run(&opts).await,
        Bench::ObservabilityWorker(w) => covenant_bench::observability::worker(&w).await,
    }
}
