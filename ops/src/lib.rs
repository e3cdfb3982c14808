//! The `covenant` binary's library: settings, connections, managed local services (used by
//! `covenant serve`, by the integration tests' harness and by `covenant-bench`), demo seeding.
//!
//! May depend on every other Covenant crate.
//!
//! Modules:
//! - [`settings`]: the typed `Settings` (environment and flags).
//! - [`connect`]: NATS connections; managed services when none are configured.
//! - [`http`]: serving the HTTP API.
//! - [`managed`]: nats-server (single node or 3-node cluster) and PostgreSQL as children.
//! - [`projections`]: running projections in-process; `covenant projections …`.
//! - [`seed`]: the Gapminder demo data.
//! - [`telemetry`]: the tracing subscriber and the Prometheus recorder.
//! - [`users`]: bootstrap users and secret rotation from the CLI.
//! - [`audit`]: the sealer, verification, exports and proofs.

pub mod audit;
pub mod connect;
pub mod http;
pub mod managed;
pub mod projections;
pub mod seed;
pub mod settings;
pub mod streams;
pub mod telemetry;
pub mod users;

/// Resolves on Ctrl-C (SIGINT) or SIGTERM (or at once if the handlers cannot be installed).
pub async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        tracing::error!("cannot install the SIGTERM handler");
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
