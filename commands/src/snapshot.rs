//! Aggregate snapshots in a KV bucket of our own (`<stream>_SNAPSHOTS`), keyed by
//! `<aggregate>.<id>`, each holding the state after a known stream sequence, version and
//! chain hash. A load starts from the snapshot and folds only the later events, checking
//! the chain from the snapshot's hash on. Snapshots are a cache: deleting the bucket is
//! always safe. (cqrs-es 0.5's own snapshot mode applies events twice; this does not use it.)

use async_nats::jetstream::kv;
use bytes::Bytes;
use covenant_audit::{hash_from_b64, hash_to_b64};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::LogError;
use crate::log::EventLog;
use crate::record::ChainTip;

/// A snapshot is written each time an aggregate's version crosses a multiple of this.
pub const SNAPSHOT_EVERY: u64 = 100;

#[derive(Serialize, Deserialize)]
struct Stored<S> {
    seq: u64,
    version: u64,
    hash: String,
    state: S,
}

/// The snapshot bucket.
#[derive(Clone)]
pub struct Snapshots {
    kv: kv::Store,
}

impl Snapshots {
    /// Opens (or creates) the bucket beside `log`'s stream.
    ///
    /// # Errors
    /// [`LogError::Unavailable`].
    pub async fn open(log: &EventLog) -> Result<Self, LogError> {
        let kv = log
            .kv_bucket("SNAPSHOTS", "Covenant aggregate snapshots (a cache; safe to delete)", std::time::Duration::ZERO)
            .await?;
        Ok(Self { kv })
    }

    /// The latest snapshot of `key`, if any. A snapshot that no longer parses (the state's
    /// shape changed) is ignored: the aggregate is then loaded from its full history.
    ///
    /// # Errors
    /// [`LogError::Unavailable`].
    pub async fn get<S: DeserializeOwned>(&self, key: &str) -> Result<Option<(S, ChainTip)>, LogError> {
        let Some(bytes) = self.kv.get(key).await.map_err(|e| LogError::unavailable_from("reading a snapshot", e))?
        else {
            return Ok(None);
        };
        let Ok(s) = serde_json::from_slice::<Stored<S>>(&bytes) else { return Ok(None) };
        let Ok(hash) = hash_from_b64(&s.hash) else { return Ok(None) };
        Ok(Some((s.state, ChainTip { last_seq: s.seq, version: s.version, hash })))
    }

    /// Stores `state` as of `tip`.
    ///
    /// # Errors
    /// [`LogError::Unavailable`].
    pub async fn put<S: Serialize>(&self, key: &str, state: &S, tip: &ChainTip) -> Result<(), LogError> {
        let s = Stored { seq: tip.last_seq, version: tip.version, hash: hash_to_b64(&tip.hash), state };
        let bytes = serde_json::to_vec(&s).map_err(|e| LogError::Invalid(e.to_string()))?;
        self.kv
            .put(key, Bytes::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| LogError::unavailable_from("writing a snapshot", e))
    }
}

impl Snapshots {
    /// Deletes the snapshot of `key` (a forgotten user's: states from before personal fields
    /// were sealed held the email).
    ///
    /// # Errors
    /// [`LogError::Unavailable`].
    pub async fn delete(&self, key: &str) -> Result<(), LogError> {
        self.kv.purge(key).await.map_err(|e| LogError::unavailable_from("deleting a snapshot", e))
    }
}

/// Whether an append that moved the version from `before` to `after` should snapshot.
pub fn due(before: u64, after: u64) -> bool {
    after / SNAPSHOT_EVERY > before / SNAPSHOT_EVERY
}
