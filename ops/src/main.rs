//! `covenant`: the Covenant service and its operations CLI. See `covenant --help`.

use std::io::Write;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use covenant_ops::settings::Settings;
use covenant_ops::{connect, seed, telemetry};

/// Covenant: an event-sourced ledger of countries, GDP figures and projects on NATS
/// JetStream, with a tamper-evident audit trail.
///
/// With no COVENANT_NATS_URL / COVENANT_DATABASE_URL, commands start (or reuse) a managed
/// nats-server and PostgreSQL cluster under COVENANT_DATA_DIR (default ./.covenant). They
/// stop with the process that started them; ones that a killed process left running are
/// taken over by the next command and stop with it.
#[derive(Parser)]
#[command(name = "covenant", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs Covenant: opens (or creates and checks) the event stream, runs the projections
    /// into PostgreSQL and keeps the managed services up until Ctrl-C or SIGTERM. With
    /// --demo, seeds the demo countries first.
    Serve {
        /// Seed the Gapminder demo data (142 countries, GDP 1952–2007) before serving.
        #[arg(long)]
        demo: bool,
        /// Do not run the projections in this process (run `covenant projections run`
        /// elsewhere).
        #[arg(long)]
        without_projections: bool,
    },
    /// Registers the demo countries and replays their GDP history (skips what exists).
    Seed,
    /// Bootstrap users.
    Users {
        #[command(subcommand)]
        what: UsersCmd,
    },
    /// JWT signing secrets.
    Secrets {
        #[command(subcommand)]
        what: SecretsCmd,
    },
    /// Stream state, durability in force, configuration checks and consumers.
    Streams {
        #[command(subcommand)]
        what: StreamsCmd,
    },
    /// Read-model projections: run them, see their position, rebuild one, verify them.
    Projections {
        #[command(subcommand)]
        what: ProjectionsCmd,
    },
    /// The audit trail: seal checkpoints, verify the stream or a bundle, export, prove,
    /// manage the sealer keys.
    Audit {
        #[command(flatten)]
        paths: covenant_ops::audit::AuditPaths,
        #[command(subcommand)]
        what: covenant_ops::audit::cli::AuditCmd,
    },
}

#[derive(Subcommand)]
enum UsersCmd {
    /// Registers a user; the password is read from standard input (one line).
    Create {
        /// Login address.
        #[arg(long)]
        email: String,
        /// admin, steward or viewer.
        #[arg(long)]
        role: covenant_domain::Role,
    },
    /// Forgets a user (crypto-shredding): appends `user.forgotten`, erases the user's key so
    /// that its email and login addresses in the stream can be read by no one, deletes its
    /// credentials (no more sign-in); the read models show `[forgotten]`. The audit chain
    /// still verifies. Running it again finishes an interrupted forget.
    Forget {
        /// The user's id (a UUID, as `users` and `auditEvents` show it).
        id: uuid::Uuid,
    },
}

#[derive(Subcommand)]
enum SecretsCmd {
    /// Rotates the JWT secret: appends `security.secret_rotated` and refuses every token
    /// issued before.
    Rotate,
}

#[derive(Subcommand)]
enum StreamsCmd {
    /// Prints the event stream's state (what `nats stream info` gave the old runbook).
    Info,
}

#[derive(Subcommand)]
enum ProjectionsCmd {
    /// Runs every projection (and the gauges monitor) until Ctrl-C or SIGTERM.
    Run,
    /// Checkpoint, lag, pending, events/s and skipped events per projection.
    Status,
    /// Replays the stream into shadow tables while the live ones keep serving, then swaps
    /// them atomically. Safe to interrupt and rerun. Rides out a NATS restart or leader
    /// election of up to 30 s (each retry is logged); longer, it stops with the error.
    Rebuild {
        /// Projection name: `ledger` or `audit`.
        name: String,
    },
    /// Proves a read model is the fold of the log: recomputes it from the stream up to its
    /// checkpoint in scratch tables and compares them with PostgreSQL row by row (the live
    /// tables are copied, never locked). Prints each difference; records the count for the
    /// `covenant_projection_divergence` gauge. Exit 0: equal; 1: different; 2: could not
    /// verify.
    Verify {
        /// Projection name (`ledger` or `audit`); all of them when omitted.
        name: Option<String>,
    },
}

/// mimalloc rather than glibc's malloc: a request allocates a few hundred times (GraphQL,
/// JSON, sqlx, and its spans and log line), often freeing on another thread (a span is
/// dropped after export); `covenant-bench observability` measured telemetry's share of a GraphQL
/// request's CPU time at 9.1% with glibc and 6.4% with mimalloc (paired runs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let telemetry = telemetry::init();
    let cli = Cli::parse();
    let outcome = run(cli).await;
    telemetry.shutdown().await;
    match outcome {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<u8> {
    let mut s = cli.settings;
    // Managed servers run in directories of their own: every path handed to them is
    // absolute.
    s.data_dir = std::path::absolute(&s.data_dir)
        .with_context(|| format!("resolving the data directory {}", s.data_dir.display()))?;
    if let Cmd::Audit { paths, what } = cli.command {
        return covenant_ops::audit::cli::run(&s, &paths, what).await;
    }
    if let Cmd::Projections { what: ProjectionsCmd::Verify { name } } = cli.command {
        // Exit 1 means "different": a failure to verify is 2.
        let verified = async {
            let nats = connect::nats(&s).await?;
            let js = async_nats::jetstream::new(connect::client(&nats.url).await?);
            let db = connect::database(&s).await?;
            covenant_ops::projections::verify_cmd(&js, &s.stream, &db.pool, name.as_deref()).await
        };
        return Ok(match verified.await {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) => {
                eprintln!("error: {e:#}");
                2
            }
        });
    }
    run_other(s, cli.command).await.map(|()| 0)
}

async fn run_other(s: Settings, command: Cmd) -> Result<()> {
    match command {
        Cmd::Serve { demo, without_projections } => serve(&s, demo, !without_projections).await,
        Cmd::Projections { what } => {
            let nats = connect::nats(&s).await?;
            let js = async_nats::jetstream::new(connect::client(&nats.url).await?);
            let db = connect::database(&s).await?;
            match what {
                ProjectionsCmd::Run => run_projections(&js, &s, &db.pool).await,
                ProjectionsCmd::Status => covenant_ops::projections::status(&js, &s.stream, &db.pool).await,
                ProjectionsCmd::Rebuild { name } => {
                    covenant_ops::projections::rebuild_cmd(&js, &s.stream, &db.pool, &name).await
                }
                ProjectionsCmd::Verify { .. } => unreachable!("handled in run"),
            }
        }
        Cmd::Seed => {
            let nats = connect::nats(&s).await?;
            let side = connect::command_side(&nats.url, &s).await?;
            run_seed(&side).await.map(|_| ())
        }
        Cmd::Users { what: UsersCmd::Create { email, role } } => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']);
            let nats = connect::nats(&s).await?;
            let side = connect::command_side(&nats.url, &s).await?;
            let db = connect::database(&s).await?;
            let id = covenant_ops::users::create(&side, &db.pool, &email, role, password).await?;
            println!("user {id} ({email}, {}) created", role.as_str());
            Ok(())
        }
        Cmd::Users { what: UsersCmd::Forget { id } } => {
            let nats = connect::nats(&s).await?;
            let side = connect::command_side(&nats.url, &s).await?;
            let db = connect::database(&s).await?;
            let done = covenant_ops::users::forget(&side, &db.pool, id).await?;
            match done.sequence {
                Some(seq) => println!("user {id} forgotten: user.forgotten at sequence {seq}"),
                None => println!("user {id} was forgotten already; finished again"),
            }
            println!(
                "  key {}; credentials deleted; the read models show [forgotten] once the projections pass the event",
                if done.key_erased { "erased" } else { "already gone" }
            );
            Ok(())
        }
        Cmd::Secrets { what: SecretsCmd::Rotate } => {
            let nats = connect::nats(&s).await?;
            let side = connect::command_side(&nats.url, &s).await?;
            let db = connect::database(&s).await?;
            let kid = covenant_ops::users::rotate_secret(&side, &db.pool).await?;
            println!("JWT secret rotated: key {kid} in force; tokens issued before are refused");
            Ok(())
        }
        Cmd::Streams { what: StreamsCmd::Info } => {
            let nats = connect::nats(&s).await?;
            covenant_ops::streams::info(&nats.url, &s).await
        }
        Cmd::Audit { .. } => unreachable!("handled in run"),
    }
}

async fn run_seed(side: &covenant_commands::CommandSide) -> Result<seed::SeedReport> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = seed::seed(side, |done, total| {
        if tty {
            eprint!("\rseeding demo countries: {done}/{total}");
            let _ = std::io::stderr().flush();
        }
    })
    .await?;
    eprintln!();
    println!(
        "seed: {} countries registered, {} GDP histories recorded, {} already present; {} events appended (stream at sequence {})",
        report.registered, report.histories, report.skipped, report.events, report.last_sequence
    );
    Ok(report)
}

async fn serve(s: &Settings, demo: bool, projections: bool) -> Result<()> {
    // Every HTTP connection is a file descriptor: the soft limit (often 1024) goes up to the
    // hard one, as Go's runtime and nats-server do; the connection bound is then set below it.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    let nats = connect::nats(s).await?;
    let db = connect::database(s).await?;
    let side = std::sync::Arc::new(connect::command_side(&nats.url, s).await?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = if projections {
        covenant_ops::projections::spawn(
            side.log.jetstream(),
            &s.stream,
            &db.pool,
            &stop_rx,
            std::time::Duration::from_secs(5),
            s.projection_lease,
        )
    } else {
        Vec::new()
    };
    covenant_api::auth::current_key(&db.pool, s.jwt_secret.as_ref().map(|k| k.expose()))
        .await
        .context("preparing the JWT signing key")?;
    let metrics = covenant_ops::telemetry::install_metrics();
    let state = covenant_api::AppState::new(
        db.pool.clone(),
        connect::client(&nats.url).await?,
        s.stream.clone(),
        Some(metrics),
        Some(side.clone()),
        s.api_options(),
    );
    // Keys, roles and revocations in memory, followed from the stream: signed-in users keep
    // writing while PostgreSQL is down.
    state.follow(&s.subject_prefix, stop_rx.clone()).await;
    let http = covenant_ops::http::serve_with(s.http_addr, state, stop_rx.clone(), s.connections()).await?;
    let mut demo_login = None;
    if demo {
        run_seed(&side).await?;
        demo_login = Some(covenant_ops::users::ensure_demo_admin(&side, &db.pool).await?);
    }
    let data_dir = s.data_dir.clone();
    // The demo seals its log too, with a sealer in a process of its own (the API never
    // holds the signing key). It stops by itself should this process end without stopping
    // it (killed outright): `--parent`.
    let mut sealer = None;
    if demo {
        let child = std::process::Command::new(std::env::current_exe().context("locating the covenant binary")?)
            .args(["audit", "seal", "--parent", &std::process::id().to_string()])
            .env("COVENANT_NATS_URL", &nats.url)
            .env("COVENANT_STREAM", &s.stream)
            .env("COVENANT_DATA_DIR", &data_dir)
            .env("COVENANT_STREAM_REPLICAS", s.stream_replicas.to_string())
            .spawn()
            .context("starting the sealer (covenant audit seal)")?;
        sealer = Some(child);
    }
    println!(
        "Covenant is running{}.",
        if projections { " with its projections" } else { " (projections run elsewhere)" }
    );
    println!("  GraphiQL       : http://{}/api/graphql", http.addr);
    println!("  health         : http://{}/api/healthcheck", http.addr);
    println!("  metrics        : http://{}/metrics", http.addr);
    match demo_login {
        Some(Some(password)) => {
            println!("  demo admin     : {} / {password}  (login mutation)", covenant_ops::users::DEMO_ADMIN)
        }
        Some(None) => println!(
            "  demo admin     : {} (created earlier; its password was printed then)",
            covenant_ops::users::DEMO_ADMIN
        ),
        None => {}
    }
    println!("  data directory : {}", data_dir.display());
    println!("  NATS           : {}{}", nats.url, if nats.managed.is_some() { " (managed)" } else { "" });
    if let Some(sync) = nats.sync {
        println!("  durability     : replicas {}, sync {}", s.stream_replicas, sync.as_str());
    }
    println!("  PostgreSQL     : {}{}", connect::redact(&db.url), if db.managed.is_some() { " (managed)" } else { "" });
    println!("  event stream   : {} ({} events)", side.log.config().stream, side.log.last_sequence().await?);
    if let Some(c) = &sealer {
        println!(
            "  sealer         : pid {} (`covenant audit seal`), checkpoints every 10 s; keys in {}",
            c.id(),
            data_dir.join("audit").display()
        );
    }
    println!(
        "Inspect with `covenant streams info`, `covenant projections status` and `covenant audit verify`. Press Ctrl-C to stop."
    );
    covenant_ops::shutdown_signal().await;
    println!("stopping");
    if let Some(mut c) = sealer {
        covenant_ops::managed::terminate(&mut c, std::time::Duration::from_secs(5));
    }
    let _ = stop_tx.send(true);
    let _ = http.task.await;
    for t in tasks {
        let _ = t.await;
    }
    drop(side);
    db.pool.close().await;
    if let Some(mut n) = nats.managed {
        n.stop();
    }
    if let Some(mut p) = db.managed {
        p.stop(false);
    }
    Ok(())
}

async fn run_projections(js: &async_nats::jetstream::Context, s: &Settings, pool: &sqlx::PgPool) -> Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = covenant_ops::projections::spawn(
        js,
        &s.stream,
        pool,
        &stop_rx,
        std::time::Duration::from_secs(5),
        s.projection_lease,
    );
    eprintln!("projections running on stream {}; Ctrl-C to stop", s.stream);
    covenant_ops::shutdown_signal().await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
