//! The cqrs-es `EventStore` for Covenant aggregates on top of the [`EventLog`], with an
//! in-memory cache of loaded aggregates and their chain tips.
//!
//! Each aggregate instance has a cache slot behind its own async mutex: commands to the
//! same aggregate in this process queue on it (so they do not fight each other with
//! conflicts), while commands to different aggregates never wait on each other. Writers in
//! other processes are caught by `Nats-Expected-Last-Subject-Sequence`; a conflict evicts
//! the slot and the command is re-run on the reloaded aggregate.
//!
//! Personal fields (`covenant_domain::personal_fields`) are sealed with their user's key
//! before an append and read back withheld: the command side never needs them to decide,
//! so it never opens them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use covenant_domain::{CovenantAggregate, EventCodec, personal_fields};
use covenant_personal::{KeyStore, Place};
use cqrs_es::{AggregateContext, AggregateError, EventEnvelope, EventStore};

use crate::error::LogError;
use crate::log::{Appended, EventLog};
use crate::record::{ChainTip, NewEvent};
use crate::snapshot::{self, Snapshots};

/// An aggregate as loaded, with the tip its next append must extend.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    /// State after every event up to `tip`.
    pub aggregate: A,
    /// The subject's chain tip.
    pub tip: ChainTip,
}

/// A cache slot: `None` until loaded, or after an eviction.
pub type Slot<A> = Arc<tokio::sync::Mutex<Option<Loaded<A>>>>;

/// cqrs-es aggregate context: the aggregate plus where its chain ends.
#[derive(Debug)]
pub struct StoreContext<A> {
    /// Aggregate id (last subject token).
    pub aggregate_id: String,
    /// Loaded state and tip.
    pub loaded: Loaded<A>,
}

impl<A: CovenantAggregate> AggregateContext<A> for StoreContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.loaded.aggregate
    }
}

/// The JetStream event store of one aggregate type.
pub struct JetStreamStore<A> {
    log: EventLog,
    slots: Arc<Mutex<HashMap<String, Slot<A>>>>,
    capacity: usize,
    snapshots: Option<Snapshots>,
    keys: Option<KeyStore>,
}

impl<A> Clone for JetStreamStore<A> {
    fn clone(&self) -> Self {
        Self {
            log: self.log.clone(),
            slots: self.slots.clone(),
            capacity: self.capacity,
            snapshots: self.snapshots.clone(),
            keys: self.keys.clone(),
        }
    }
}

impl<A: CovenantAggregate> JetStreamStore<A> {
    /// A store caching up to about `capacity` aggregates (idle ones are dropped beyond it).
    pub fn new(log: EventLog, capacity: usize) -> Self {
        Self { log, slots: Arc::default(), capacity: capacity.max(1), snapshots: None, keys: None }
    }

    /// The same store, sealing personal fields with keys from `keys`. Without it, an event
    /// with a personal field is refused ([`LogError::KeysUnavailable`]), never stored plain.
    #[must_use]
    pub fn with_keys(mut self, keys: KeyStore) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The same store, loading from and writing to `snapshots`.
    pub fn with_snapshots(mut self, snapshots: Snapshots) -> Self {
        self.snapshots = Some(snapshots);
        self
    }

    fn snapshot_key(id: &str) -> String {
        format!("{}.{id}", A::TYPE)
    }

    /// Records a snapshot in the background when `before → after` crossed the interval
    /// (a failed write only means the next load folds more events).
    pub fn snapshot_if_due(&self, id: &str, before: u64, loaded: &Loaded<A>) {
        let Some(snaps) = self.snapshots.clone() else { return };
        if !snapshot::due(before, loaded.tip.version) {
            return;
        }
        let Ok(state) = serde_json::to_value(&loaded.aggregate) else { return };
        let (key, tip) = (Self::snapshot_key(id), loaded.tip);
        tokio::spawn(async move {
            if let Err(e) = snaps.put(&key, &state, &tip).await {
                tracing::warn!(error = %e, key, "snapshot not written");
            }
        });
    }

    /// Deletes the snapshot of `id`, if snapshots are kept.
    ///
    /// # Errors
    /// [`LogError::Unavailable`].
    pub async fn delete_snapshot(&self, id: &str) -> Result<(), LogError> {
        match &self.snapshots {
            Some(s) => s.delete(&Self::snapshot_key(id)).await,
            None => Ok(()),
        }
    }

    /// The underlying log.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// The subject of aggregate `id`.
    pub fn subject(&self, id: &str) -> String {
        self.log.subject(A::TYPE, id)
    }

    /// The cache slot of `id` (created empty if absent).
    pub fn slot(&self, id: &str) -> Slot<A> {
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if slots.len() >= self.capacity && !slots.contains_key(id) {
            // Drop idle slots (nobody holds a clone of their Arc).
            slots.retain(|_, s| Arc::strong_count(s) > 1);
        }
        slots.entry(id.to_owned()).or_default().clone()
    }

    /// Loads `id` from the stream leader, checking the chain as it folds: contiguous
    /// versions, each `Audit-Prev` equal to the previous hash, each hash recomputed.
    ///
    /// # Errors
    /// [`LogError::Corrupt`] on a broken chain or an undecodable event;
    /// [`LogError::Unavailable`].
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, LogError> {
        let subject = self.subject(id);
        let origin = self.log.origin().to_owned();
        let snapshot = match &self.snapshots {
            // A cache: when its bucket cannot be read (its stream between leaders, or
            // gone), the load folds the full history, which reads through the log's
            // failover, rather than failing the command.
            Some(s) => s.get::<A>(&Self::snapshot_key(id)).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, aggregate = A::TYPE, id, "snapshot not read; loading the full history");
                None
            }),
            None => None,
        };
        let (mut aggregate, mut tip) = match snapshot {
            Some(found) => found,
            None => (A::default(), ChainTip::genesis(&origin, &subject)?),
        };
        for e in self.log.read_subject(&subject, tip.last_seq).await? {
            let corrupt = |reason: String| LogError::Corrupt { seq: e.seq, reason };
            if e.version != tip.version + 1 {
                return Err(corrupt(format!("version {} follows {}", e.version, tip.version)));
            }
            if e.prev != tip.hash || e.recompute_hash(&origin)? != e.hash {
                return Err(corrupt("audit hash chain does not verify".into()));
            }
            let event = decode_withheld::<A>(id, &e.event_type, &e.payload).map_err(corrupt)?;
            cqrs_es::Aggregate::apply(&mut aggregate, event);
            tip = ChainTip::after(&e);
        }
        Ok(Loaded { aggregate, tip })
    }

    /// Appends `events` decided on `loaded`, as `actor`, with operational `extra` headers.
    ///
    /// # Errors
    /// As [`EventLog::append`].
    pub async fn append(
        &self,
        id: &str,
        tip: &ChainTip,
        events: &[A::Event],
        actor: &str,
        extra: &[(String, String)],
    ) -> Result<Appended, LogError> {
        let mut new = Vec::with_capacity(events.len());
        for e in events {
            let payload = self.seal(id, e.type_name(), e.encode()).await?;
            new.push(NewEvent::json(e.type_name(), actor, payload));
        }
        self.log.append(&self.subject(id), tip, &new, extra).await
    }

    /// `payload` with its personal fields sealed with `id`'s key (unchanged when it has none).
    async fn seal(&self, id: &str, event_type: &str, payload: Vec<u8>) -> Result<Vec<u8>, LogError> {
        let fields = personal_fields(A::TYPE, event_type);
        if fields.is_empty() {
            return Ok(payload);
        }
        let keys = self.keys.as_ref().ok_or_else(|| {
            LogError::KeysUnavailable(Arc::new(std::io::Error::other("this event store has no key store configured")))
        })?;
        let key = keys.get_or_create(id).await.map_err(|e| LogError::KeysUnavailable(Arc::new(e)))?;
        covenant_personal::seal::seal(&payload, fields, Place { owner: id, event_type }, &key)
            .map_err(|e| LogError::Invalid(format!("sealing the personal fields of {event_type}: {e}")))
    }
}

/// Decodes a stored event with its personal fields withheld (the command side holds no keys).
fn decode_withheld<A: CovenantAggregate>(id: &str, event_type: &str, payload: &[u8]) -> Result<A::Event, String> {
    let fields = personal_fields(A::TYPE, event_type);
    if fields.is_empty() {
        return A::Event::decode(event_type, payload).map_err(|e| e.to_string());
    }
    let withheld = covenant_personal::seal::open(payload, fields, Place { owner: id, event_type }, None)
        .map_err(|e| e.to_string())?;
    A::Event::decode(event_type, &withheld).map_err(|e| e.to_string())
}

fn to_aggregate_error<E: std::error::Error>(e: LogError) -> AggregateError<E> {
    match e {
        LogError::Conflict { .. } => AggregateError::AggregateConflict,
        LogError::Unavailable { .. } => AggregateError::DatabaseConnectionError(Box::new(e)),
        LogError::Corrupt { .. } => AggregateError::DeserializationError(Box::new(e)),
        other => AggregateError::UnexpectedError(Box::new(other)),
    }
}

/// The cqrs-es face of the store, so `CqrsFramework` can drive it too. Metadata key
/// `actor` sets the `Actor` header (default `system`); other keys become extra headers.
impl<A: CovenantAggregate> EventStore<A> for JetStreamStore<A> {
    type AC = StoreContext<A>;

    async fn load_events(&self, aggregate_id: &str) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let subject = self.subject(aggregate_id);
        let stored = self.log.read_subject(&subject, 0).await.map_err(to_aggregate_error)?;
        let id = aggregate_id;
        stored
            .into_iter()
            .map(|e| {
                let payload = decode_withheld::<A>(id, &e.event_type, &e.payload)
                    .map_err(|err| AggregateError::DeserializationError(err.into()))?;
                let metadata = HashMap::from([
                    ("stream_sequence".to_owned(), e.seq.to_string()),
                    ("event_id".to_owned(), e.event_id.clone()),
                    ("actor".to_owned(), e.actor.clone()),
                ]);
                Ok(EventEnvelope {
                    aggregate_id: aggregate_id.to_owned(),
                    sequence: e.version as usize,
                    payload,
                    metadata,
                })
            })
            .collect()
    }

    async fn load_aggregate(&self, aggregate_id: &str) -> Result<StoreContext<A>, AggregateError<A::Error>> {
        let slot = self.slot(aggregate_id);
        let mut guard = slot.lock().await;
        let loaded = match guard.as_ref() {
            Some(l) => l.clone(),
            None => {
                let l = self.load(aggregate_id).await.map_err(to_aggregate_error)?;
                *guard = Some(l.clone());
                l
            }
        };
        Ok(StoreContext { aggregate_id: aggregate_id.to_owned(), loaded })
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: StoreContext<A>,
        mut metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let id = context.aggregate_id;
        let actor = metadata.remove("actor").unwrap_or_else(|| "system".into());
        let extra: Vec<(String, String)> = metadata.into_iter().collect();
        let slot = self.slot(&id);
        let result = self.append(&id, &context.loaded.tip, &events, &actor, &extra).await;
        let mut guard = slot.lock().await;
        let appended = match result {
            Ok(a) => a,
            Err(e) => {
                *guard = None;
                return Err(to_aggregate_error(e));
            }
        };
        *guard = Some(Loaded { aggregate: context.loaded.aggregate, tip: appended.tip });
        Ok(events
            .into_iter()
            .enumerate()
            .map(|(i, payload)| EventEnvelope {
                aggregate_id: id.clone(),
                sequence: (context.loaded.tip.version + 1 + i as u64) as usize,
                payload,
                metadata: HashMap::from([("stream_sequence".to_owned(), (appended.first_seq + i as u64).to_string())]),
            })
            .collect())
    }
}
