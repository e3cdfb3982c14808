//! Command dispatch: validate the id, reserve the idempotency key, load (or take from the
//! cache), decide, append; on a conflict evict, back off and re-run on the fresh aggregate,
//! a bounded number of times.

use std::time::Duration;

use covenant_domain::CovenantAggregate;
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use rand::Rng;
use serde::Serialize;
use tracing::Instrument as _;

use crate::error::{CommandError, LogError};
use crate::idempotency::{Begin, IdempotencyStore, Receipt, Reservation, digest};
use crate::log::EventLog;
use crate::record::IDEMPOTENCY_KEY;
use crate::snapshot::Snapshots;
use crate::store::{JetStreamStore, Loaded};

/// How many times a command is run against a moving aggregate before it is reported as a
/// conflict.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;

/// Who sends a command and how: the `Actor` header, an optional idempotency key, and
/// operational headers (trace context) to carry on its events.
#[derive(Debug, Clone, Default)]
pub struct CommandContext {
    /// `Actor` header value: user id or `system`.
    pub actor: String,
    /// Client-chosen key; a retry with the same key returns the first result.
    pub idempotency_key: Option<String>,
    /// Unhashed headers such as `traceparent`.
    pub headers: Vec<(String, String)>,
}

impl CommandContext {
    /// A context for the system actor.
    pub fn system() -> Self {
        Self { actor: "system".into(), ..Default::default() }
    }

    /// The same context with an idempotency key.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// Executes commands of one aggregate type.
pub struct CommandBus<A: CovenantAggregate> {
    store: JetStreamStore<A>,
    services: A::Services,
    idempotency: IdempotencyStore,
    max_attempts: u32,
}

type Result<T, A> = std::result::Result<T, CommandError<<A as Aggregate>::Error>>;

impl<A> CommandBus<A>
where
    A: CovenantAggregate,
    A::Command: Clone + Serialize,
{
    /// A bus over `store`, with the aggregate's services and the idempotency bucket.
    pub fn new(store: JetStreamStore<A>, services: A::Services, idempotency: IdempotencyStore) -> Self {
        Self { store, services, idempotency, max_attempts: DEFAULT_MAX_ATTEMPTS }
    }

    /// The same bus with another attempt bound (at least 1).
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The store (and through it the log).
    pub fn store(&self) -> &JetStreamStore<A> {
        &self.store
    }

    /// Runs `command` on aggregate `id`.
    ///
    /// # Errors
    /// [`CommandError::InvalidInput`] for a bad id; [`CommandError::Refused`] with the
    /// domain's reason; [`CommandError::Conflict`] after the bounded retries;
    /// [`CommandError::Unavailable`] when NATS is down (fails fast, before any work);
    /// [`CommandError::InProgress`] for a key held by a concurrent request.
    pub async fn execute(&self, id: &str, command: A::Command, ctx: &CommandContext) -> Result<Receipt, A> {
        let name = A::command_name(&command);
        // Made only inside a sampled trace (see `covenant_telemetry::sampled`).
        let span = if covenant_telemetry::sampled() {
            tracing::info_span!(
                "command",
                otel.name = %format_args!("command {}.{name}", A::TYPE),
                otel.kind = "internal",
                aggregate = A::TYPE,
                aggregate_id = id,
                command = name,
            )
        } else {
            tracing::Span::none()
        };
        let started = std::time::Instant::now();
        let result = self.execute_inner(id, command, ctx).instrument(span).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(CommandError::Refused(_)) => "refused",
            Err(CommandError::InvalidInput(_)) => "invalid",
            Err(CommandError::Conflict { .. }) => "conflict",
            Err(CommandError::InProgress) => "in_progress",
            Err(CommandError::Unavailable { .. } | CommandError::KeysUnavailable { .. }) => "unavailable",
            Err(CommandError::Internal(_)) => "internal",
        };
        metrics::counter!("covenant_commands_total", "aggregate" => A::TYPE, "command" => name, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("covenant_command_duration_seconds", "aggregate" => A::TYPE, "command" => name)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn execute_inner(&self, id: &str, command: A::Command, ctx: &CommandContext) -> Result<Receipt, A> {
        A::validate_id(id).map_err(|e| CommandError::InvalidInput(e.to_string()))?;
        if let Some(target) = A::command_target(&command)
            && target != id
        {
            return Err(CommandError::InvalidInput(format!("command names `{target}` but was sent to `{id}`")));
        }
        self.store.log().ensure_connected()?;
        let Some(key) = &ctx.idempotency_key else {
            return self.run(id, command, ctx, None).await;
        };
        validate_key(key)?;
        let digest = digest(&format!("{}:{}", A::TYPE, ctx.actor), key);
        let fingerprint = fingerprint(id, &command);
        match self.idempotency.begin(&digest, &fingerprint, &self.store.subject(id)).await? {
            Begin::Done(receipt) => Ok(receipt),
            Begin::InProgress => Err(CommandError::InProgress),
            Begin::Mismatch => {
                Err(CommandError::InvalidInput("idempotency key was already used for a different command".into()))
            }
            Begin::Fresh(reservation) => {
                let result = self.run(id, command, ctx, Some(&reservation)).await;
                match &result {
                    Ok(receipt) => {
                        // If this fails the reservation stays pending and a retry finds the
                        // events by their key header; the command itself did succeed.
                        if let Err(e) = self.idempotency.complete(&reservation, receipt).await {
                            tracing::warn!(error = %e, "idempotency receipt not recorded");
                        }
                    }
                    Err(CommandError::Unavailable { outcome_unknown: true, .. }) => {}
                    Err(_) => {
                        if let Err(e) = self.idempotency.release(&reservation).await {
                            tracing::warn!(error = %e, "idempotency reservation not released");
                        }
                    }
                }
                result
            }
        }
    }

    async fn run(
        &self,
        id: &str,
        command: A::Command,
        ctx: &CommandContext,
        reservation: Option<&Reservation>,
    ) -> Result<Receipt, A> {
        let mut headers = ctx.headers.clone();
        if let Some(r) = reservation {
            headers.push((IDEMPOTENCY_KEY.to_owned(), r.digest.clone()));
        }
        for attempt in 1..=self.max_attempts {
            match self.attempt(id, command.clone(), ctx, &headers).await {
                Err(CommandError::Conflict { .. }) if attempt < self.max_attempts => {
                    let jitter = rand::rng().random_range(0..=5u64 << attempt.min(6));
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(CommandError::Conflict { .. }) => return Err(CommandError::Conflict { attempts: attempt }),
                other => return other,
            }
        }
        Err(CommandError::Conflict { attempts: self.max_attempts })
    }

    async fn attempt(
        &self,
        id: &str,
        command: A::Command,
        ctx: &CommandContext,
        headers: &[(String, String)],
    ) -> Result<Receipt, A> {
        let slot = self.store.slot(id);
        let mut guard = slot.lock().await;
        let loaded = match guard.take() {
            Some(l) => l,
            None => self.store.load(id).await?,
        };
        let mut aggregate = loaded.aggregate.clone();
        let sink = EventSink::default();
        let decided = aggregate.handle(command, &self.services, &sink).await;
        let events = sink.collect().await;
        if let Err(e) = decided {
            *guard = Some(loaded);
            return Err(CommandError::Refused(e));
        }
        if events.is_empty() {
            let receipt = self.receipt(id, loaded.tip.version, loaded.tip.last_seq, Vec::new());
            *guard = Some(loaded);
            return Ok(receipt);
        }
        match self.store.append(id, &loaded.tip, &events, &ctx.actor, headers).await {
            Ok(appended) => {
                let receipt = self.receipt(id, appended.tip.version, appended.last_seq, appended.event_ids);
                let now = Loaded { aggregate, tip: appended.tip };
                self.store.snapshot_if_due(id, loaded.tip.version, &now);
                *guard = Some(now);
                Ok(receipt)
            }
            // On a conflict or an unknown outcome the cached state is no longer trusted: the
            // slot stays empty and the next command reloads from the leader.
            Err(e @ LogError::Conflict { .. }) => Err(e.into()),
            Err(e) => Err(e.into()),
        }
    }

    fn receipt(&self, id: &str, version: u64, sequence: u64, event_ids: Vec<uuid::Uuid>) -> Receipt {
        Receipt { aggregate: A::TYPE.to_owned(), aggregate_id: id.to_owned(), version, sequence, event_ids }
    }
}

/// The longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

fn validate_key<E: std::error::Error>(key: &str) -> std::result::Result<(), CommandError<E>> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || key.chars().any(char::is_control) {
        return Err(CommandError::InvalidInput(format!(
            "idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} bytes without control characters"
        )));
    }
    Ok(())
}

fn fingerprint<C: Serialize>(id: &str, command: &C) -> String {
    let body = serde_json::to_string(command).unwrap_or_default();
    digest(id, &body)
}

/// Opens a bus for `A` over `log` (its own store and cache).
///
/// # Errors
/// [`LogError::Unavailable`] when the idempotency bucket cannot be opened.
pub async fn open_bus<A>(
    log: &EventLog,
    services: A::Services,
    cache_capacity: usize,
    keys: Option<covenant_personal::KeyStore>,
) -> std::result::Result<CommandBus<A>, LogError>
where
    A: CovenantAggregate,
    A::Command: Clone + Serialize,
{
    let idempotency = IdempotencyStore::open(log.clone()).await?;
    let mut store = JetStreamStore::new(log.clone(), cache_capacity).with_snapshots(Snapshots::open(log).await?);
    if let Some(keys) = keys {
        store = store.with_keys(keys);
    }
    Ok(CommandBus::new(store, services, idempotency))
}
