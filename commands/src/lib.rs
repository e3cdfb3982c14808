//! Covenant's command side: the event log on JetStream, the cqrs-es event store over it,
//! and command dispatch with retries and idempotency.
//!
//! Depends on `covenant-domain` (aggregates) and `covenant-audit` (the hash format); never
//! on `covenant-projections` (the two sides meet only through events).
//!
//! Layers, bottom up:
//! - [`log`]: [`EventLog`], domain-agnostic: append to a subject with an expected tip
//!   (hash chain, optimistic concurrency, atomic batches, lost-ack recovery), read a
//!   subject, scan the stream. Tools and benchmarks use it directly.
//! - [`store`]: [`JetStreamStore`], the cqrs-es `EventStore` with an aggregate cache and
//!   [`snapshot`]s in a KV bucket of our own for long aggregates.
//! - [`bus`]: [`CommandBus`], validate → reserve key → decide → append → retry on conflict.
//! - [`CommandSide`]: the four buses on one connection.
//!
//! Also: [`config`] (stream settings and drift checks), [`record`] (event shapes and
//! headers), [`batch`] (atomic batch publish), [`idempotency`], [`directory`], [`error`].

pub mod batch;
pub mod bus;
pub mod config;
pub mod directory;
pub mod error;
pub mod idempotency;
pub mod log;
pub mod record;
pub mod snapshot;
pub mod store;

use std::sync::Arc;

use covenant_domain::{Country, Project, Security, User};

pub use bus::{CommandBus, CommandContext};
pub use config::{DEFAULT_GROUP_COMMIT, LogConfig};
pub use error::{CommandError, LogError};
pub use idempotency::Receipt;
pub use log::EventLog;
pub use record::{ChainTip, NewEvent, StoredEvent};
pub use store::JetStreamStore;

/// Aggregates kept in memory per type before idle ones are dropped.
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

/// Every command bus over one event log.
pub struct CommandSide {
    /// The log they share.
    pub log: EventLog,
    /// Countries.
    pub countries: CommandBus<Country>,
    /// Projects (consulting the country directory).
    pub projects: CommandBus<Project>,
    /// Users.
    pub users: CommandBus<User>,
    /// JWT secret rotations.
    pub security: CommandBus<Security>,
}

impl CommandSide {
    /// Opens the log on `client` (creating or checking the stream) and the buses.
    ///
    /// # Errors
    /// As [`EventLog::open`].
    pub async fn open(client: async_nats::Client, cfg: LogConfig) -> Result<Self, LogError> {
        let log = EventLog::open(client, cfg).await?;
        let directory: covenant_domain::project::ProjectServices = Arc::new(directory::LogDirectory::new(log.clone()));
        Ok(Self {
            countries: bus::open_bus(&log, (), DEFAULT_CACHE_CAPACITY).await?,
            projects: bus::open_bus(&log, directory, DEFAULT_CACHE_CAPACITY).await?,
            users: bus::open_bus(&log, (), DEFAULT_CACHE_CAPACITY).await?,
            security: bus::open_bus(&log, (), DEFAULT_CACHE_CAPACITY).await?,
            log,
        })
    }
}
