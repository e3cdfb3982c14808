//! Covenant's projections: durable JetStream consumers that fold the event stream into
//! PostgreSQL read models, exactly once, across crashes and restarts.
//!
//! Depends on `covenant-domain` (to decode events) and never on `covenant-commands`: the two
//! sides meet only through the stream.
//!
//! Modules:
//! - [`event`]: a stream message as a [`ProjectedEvent`](event::ProjectedEvent) (headers parsed, payload decoded).
//! - [`projection`]: the [`Projection`] trait and table sets (live / shadow).
//! - [`ledger`]: countries, GDP history, projects, users and the covenant fund.
//! - [`audit`]: every event, for the recent-events queries.
//! - [`runner`]: batch → one transaction with the checkpoint → ack; back-off; shutdown.
//! - [`apply`]: that transaction (shared by the runner, rebuilds and verifications).
//! - [`checkpoint`]: checkpoints and read-your-writes (`wait_for_sequence`).
//! - [`monitor`]: lag and business gauges.
//! - [`rebuild`]: shadow rebuild and atomic swap.
//! - [`verify`]: recompute a read model from the stream and compare it row by row.
//! - [`lease`]: one active runner per projection (and one sealer) across instances.
//! - [`views`]: reads of the read models.
//! - [`personal`]: personal fields opened with their users' keys before a batch is applied
//!   (the `audit` projection keeps them sealed).
//!
//! **Bad events** (unknown type, unparsable payload, malformed headers) are skipped, never
//! silently: each is logged at error level with its sequence, counted in
//! `covenant_projection_skipped_events_total{projection}` and recorded in
//! `projection_skipped_events`, which `covenant projections status` reports. The projection
//! keeps going, so one bad event cannot stall every read model behind it.

pub mod apply;
pub mod audit;
pub mod checkpoint;
pub mod event;
pub mod lease;
pub mod ledger;
mod ledger_sql;
pub mod monitor;
pub mod personal;
pub mod projection;
pub mod rebuild;
pub mod runner;
mod trace;
pub mod verify;
pub mod views;

use std::sync::Arc;

pub use projection::{Projection, Tables};
pub use runner::{Outcome, Runner, RunnerConfig};

/// The schema migrations (`ops/migrations`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../ops/migrations");

/// Runs pending migrations.
///
/// # Errors
/// When the database refuses a migration.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Every projection, by name.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(ledger::LedgerProjection), Arc::new(audit::AuditProjection)]
}

/// The projection called `name`.
pub fn by_name(name: &str) -> Option<Arc<dyn Projection>> {
    all().into_iter().find(|p| p.name() == name)
}
