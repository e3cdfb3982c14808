//! Lag and business gauges, computed from the stream's state and the read models (never
//! from a scratch recount): a projection that is stopped still shows its lag rising.

use async_nats::jetstream;
use sqlx::PgPool;

use crate::checkpoint::{self, PROJECTIONS};
use crate::projection::consumer_name;
use crate::views::{self, Fund};

/// One projection's position.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectionStatus {
    /// Projection name.
    pub name: String,
    /// Last applied stream sequence.
    pub checkpoint: u64,
    /// The stream's last sequence.
    pub stream_last_seq: u64,
    /// Events not yet applied (`stream_last_seq - checkpoint`).
    pub lag: u64,
    /// The durable consumer's pending count, if it exists.
    pub consumer_pending: Option<u64>,
    /// Events skipped so far (unknown type, unparsable payload).
    pub skipped: u64,
}

/// Sets `covenant_countries`, `covenant_projects`, `covenant_users`, `covenant_fund_usd`.
pub fn set_business_gauges(f: &Fund) {
    metrics::gauge!("covenant_countries").set(f.countries as f64);
    metrics::gauge!("covenant_projects").set(f.projects as f64);
    metrics::gauge!("covenant_users").set(f.users as f64);
    metrics::gauge!("covenant_fund_usd").set(f.total_usd as f64);
}

/// Reads positions and sets the lag gauges.
pub struct Monitor {
    js: jetstream::Context,
    stream: String,
    pool: PgPool,
}

/// Why a status could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// NATS.
    #[error("JetStream: {0}")]
    Nats(String),
    /// PostgreSQL.
    #[error("read models: {0}")]
    Database(#[from] sqlx::Error),
}

impl Monitor {
    /// A monitor of the projections of `stream`.
    pub fn new(js: jetstream::Context, stream: impl Into<String>, pool: PgPool) -> Self {
        Self { js, stream: stream.into(), pool }
    }

    /// Reads every projection's status and sets `covenant_projection_lag_events`,
    /// `nats_consumer_pending_messages`, `covenant_projection_divergence` (from the last
    /// verification) and the business gauges.
    ///
    /// # Errors
    /// When NATS or PostgreSQL cannot be read.
    pub async fn tick(&self) -> Result<Vec<ProjectionStatus>, MonitorError> {
        // The lookups answer with the stream's and each consumer's state (one request each).
        let stream = self.js.get_stream(&self.stream).await.map_err(|e| MonitorError::Nats(e.to_string()))?;
        let last = stream.cached_info().state.last_sequence;
        // Consumer pending comes from NATS alone, so it keeps moving while PostgreSQL is
        // down (that is when it matters).
        let mut pendings = Vec::new();
        for name in PROJECTIONS {
            let consumer = consumer_name(name);
            let pending = match stream.get_consumer::<async_nats::jetstream::consumer::pull::Config>(&consumer).await {
                // Not yet acknowledged: undelivered plus delivered-but-unacknowledged (a
                // runner holding a batch it cannot commit keeps its messages unacknowledged).
                Ok(c) => {
                    let info = c.cached_info();
                    Some(info.num_pending + info.num_ack_pending as u64)
                }
                Err(_) => None,
            };
            if let Some(p) = pending {
                metrics::gauge!("nats_consumer_pending_messages", "stream" => self.stream.clone(), "consumer" => consumer).set(p as f64);
            }
            pendings.push(pending);
        }
        let mut out = Vec::new();
        for (name, pending) in PROJECTIONS.into_iter().zip(pendings) {
            let cp = checkpoint::get(&self.pool, name).await?;
            let skipped: i64 =
                sqlx::query_scalar("SELECT count(*) FROM projection_skipped_events WHERE projection = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await?;
            let lag = last.saturating_sub(cp);
            metrics::gauge!("covenant_projection_lag_events", "projection" => name, "stream" => self.stream.clone())
                .set(lag as f64);
            out.push(ProjectionStatus {
                name: name.into(),
                checkpoint: cp,
                stream_last_seq: last,
                lag,
                consumer_pending: pending,
                skipped: skipped as u64,
            });
        }
        // What the last `covenant projections verify` found, for the divergence alert.
        let verified: Vec<(String, i64)> =
            sqlx::query_as("SELECT projection, differing FROM projection_verifications").fetch_all(&self.pool).await?;
        for (name, differing) in verified {
            metrics::gauge!("covenant_projection_divergence", "projection" => name).set(differing as f64);
        }
        set_business_gauges(&views::fund(&self.pool).await?);
        Ok(out)
    }
}
