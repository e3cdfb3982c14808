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
//! - [`CommandSide`]: the four buses on one connection, and the personal-data key store
//!   (`covenant-personal`) the users' bus seals with.
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

use covenant_domain::{Actor, Country, Project, Security, User, UserCommand, UserError};
use covenant_personal::KeyStore;

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
    /// Users' personal-data keys (bucket `<stream>_KEYS`).
    pub keys: KeyStore,
}

/// What forgetting a user did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    /// The sequence of `user.forgotten`; `None` when the user had been forgotten already
    /// (forgetting again finishes what an interrupted forget left).
    pub sequence: Option<u64>,
    /// Whether a key was erased (`false`: it was gone already).
    pub key_erased: bool,
}

impl CommandSide {
    /// Opens the log on `client` (creating or checking the stream) and the buses.
    ///
    /// # Errors
    /// As [`EventLog::open`].
    pub async fn open(client: async_nats::Client, cfg: LogConfig) -> Result<Self, LogError> {
        let log = EventLog::open(client, cfg).await?;
        let directory: covenant_domain::project::ProjectServices = Arc::new(directory::LogDirectory::new(log.clone()));
        let (stream, replicas) = (log.config().stream.clone(), log.config().replicas);
        let keys = KeyStore::create(log.jetstream().clone(), &stream, replicas)
            .await
            .map_err(|e| LogError::unavailable_from("opening the personal-data key store", e))?;
        Ok(Self {
            countries: bus::open_bus(&log, (), DEFAULT_CACHE_CAPACITY, None).await?,
            projects: bus::open_bus(&log, directory, DEFAULT_CACHE_CAPACITY, None).await?,
            users: bus::open_bus(&log, (), DEFAULT_CACHE_CAPACITY, Some(keys.clone())).await?,
            security: bus::open_bus(&log, (), DEFAULT_CACHE_CAPACITY, None).await?,
            keys,
            log,
        })
    }

    /// The email user `id` registered with, read from the stream (its first event) and
    /// opened with the user's key: no PostgreSQL needed. `Ok(None)` when the user is
    /// unknown or its key is gone (forgotten).
    ///
    /// # Errors
    /// [`LogError::Unavailable`] when the stream cannot be read;
    /// [`LogError::KeysUnavailable`] when the key store does not answer;
    /// [`LogError::Corrupt`] when the event does not open or parse.
    pub async fn registered_email(&self, id: &str) -> Result<Option<String>, LogError> {
        let subject = self.users.store().subject(id);
        let first = match self.log.stream().get_first_raw_message_by_subject(&subject, 1).await {
            Ok(m) => m,
            Err(e) if e.kind() == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound => {
                return Ok(None);
            }
            Err(e) => return Err(LogError::unavailable_from("reading a user's registration", e)),
        };
        let event_type = first.headers.get("Event-Type").map(|v| v.as_str().to_owned()).unwrap_or_default();
        let fields = covenant_domain::personal_fields("user", &event_type);
        let Some(key) = self.keys.get(id).await.map_err(|e| LogError::KeysUnavailable(Arc::new(e)))? else {
            return Ok(None);
        };
        let place = covenant_personal::Place { owner: id, event_type: &event_type };
        let corrupt = |reason: String| LogError::Corrupt { seq: first.sequence, reason };
        let opened = covenant_personal::seal::open(&first.payload, fields, place, Some(&key))
            .map_err(|e| corrupt(e.to_string()))?;
        let payload: serde_json::Value = serde_json::from_slice(&opened).map_err(|e| corrupt(e.to_string()))?;
        Ok(payload.get("email").and_then(serde_json::Value::as_str).map(str::to_owned))
    }

    /// Forgets user `id` as `actor` (DESIGN section 11): appends `user.forgotten` (after which the
    /// aggregate refuses every command, logins included), then erases the user's key, which
    /// makes every sealed personal field of the user unreadable, then drops its snapshot.
    /// The event goes first so that no command racing with the forget can seal new data
    /// under a fresh key. Forgetting a forgotten user finishes the rest again, so an
    /// interrupted forget is completed by running it once more. The caller scrubs what it
    /// keeps itself (credentials); the projections scrub the read models on the event.
    ///
    /// # Errors
    /// The command's refusal (not found, not admin) or failure; a key store that does not
    /// answer ([`CommandError::KeysUnavailable`]: the event may be stored, run it again).
    pub async fn forget_user(
        &self,
        id: &str,
        actor: Actor,
        ctx: &CommandContext,
    ) -> Result<Forgotten, CommandError<UserError>> {
        let sequence = match self.users.execute(id, UserCommand::Forget { actor }, ctx).await {
            Ok(receipt) => Some(receipt.sequence),
            Err(CommandError::Refused(UserError::Forgotten)) => None,
            Err(e) => return Err(e),
        };
        let key_erased =
            self.keys.forget(id).await.map_err(|e| CommandError::KeysUnavailable { reason: error::chain(&e) })?;
        self.users.store().delete_snapshot(id).await?;
        tracing::info!(user_id = id, key_erased, "user forgotten");
        Ok(Forgotten { sequence, key_erased })
    }
}
