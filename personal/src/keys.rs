//! Users' data keys, in a JetStream KV bucket of ours beside the event stream
//! (`<stream>_KEYS`): one entry per user id, 32 random bytes, no history, never expiring.
//!
//! The bucket is outside the event stream on purpose: the stream is immutable, the bucket is
//! not. Forgetting a user erases its entry (the server overwrites the stored message, and a
//! purge marker records the deletion), after which the user's sealed fields can be read by
//! no one. Backups: the bucket is the only copy of the keys, so a backup of the stream
//! without it restores events whose personal fields no one can read, and a backup of the
//! bucket restores keys of users forgotten since; see the RUNBOOK ("Personal data").

use async_nats::jetstream::stream::DeleteMessageErrorKind;
use async_nats::jetstream::{self, ErrorCode, kv};
use bytes::Bytes;

use crate::seal::DataKey;

/// How long a key read that times out is tried again: longer than a replicated bucket's
/// leader election (5–6 s in the R3 chaos runs), as long as the event log's default
/// failover wait (`LogConfig::failover_wait`).
const FAILOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// How long a timed-out key read waits for a lost connection to come back before it gives
/// up (the event log's failover waits as long).
const RECONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The bucket's name for event stream `stream`.
pub fn bucket_name(stream: &str) -> String {
    format!("{stream}_KEYS")
}

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the key store could not answer. Never a reason to store or show a personal field in
/// plaintext: callers fail (commands) or wait and retry (projections).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// NATS did not answer, or the bucket is missing.
    #[error("the personal-data key store ({bucket}) is unavailable: {what}")]
    Unavailable {
        /// The bucket.
        bucket: String,
        /// What was being done.
        what: &'static str,
        /// The client's error.
        #[source]
        cause: Option<Cause>,
    },
    /// An entry is not a 32-byte key.
    #[error("the personal-data key of {owner} in {bucket} is malformed")]
    Malformed {
        /// The bucket.
        bucket: String,
        /// The key's owner.
        owner: String,
    },
}

/// The data keys of one event stream's users.
#[derive(Clone)]
pub struct KeyStore {
    js: jetstream::Context,
    bucket: String,
    kv: std::sync::Arc<tokio::sync::OnceCell<kv::Store>>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore").field("bucket", &self.bucket).finish_non_exhaustive()
    }
}

impl KeyStore {
    /// The key store of `stream`, creating its bucket (with `replicas` replicas) when absent:
    /// what the command side does at start.
    ///
    /// # Errors
    /// [`KeyError::Unavailable`].
    pub async fn create(js: jetstream::Context, stream: &str, replicas: usize) -> Result<Self, KeyError> {
        let store = Self::attach(js, stream);
        if store.js.get_key_value(&store.bucket).await.is_err() {
            // A KV bucket's stream as async-nats makes it (`create_key_value`), but for one
            // setting: it allows message deletes, so that a forgotten user's key is erased
            // (the server overwrites it) rather than only unlinked by a purge. KV streams
            // otherwise deny deletes, and that setting cannot be changed later.
            let config = jetstream::stream::Config {
                name: format!("KV_{}", store.bucket),
                description: Some(
                    "Covenant personal-data keys, one per user: deleting one erases that user's personal data".into(),
                ),
                subjects: vec![format!("$KV.{}.>", store.bucket)],
                max_messages_per_subject: 1,
                allow_rollup: true,
                deny_delete: false,
                deny_purge: false,
                allow_direct: true,
                discard: jetstream::stream::DiscardPolicy::New,
                num_replicas: replicas.max(1),
                ..Default::default()
            };
            store.js.create_stream(config).await.map_err(|e| store.unavailable("creating the bucket", e))?;
        }
        Ok(store)
    }

    /// The key store of `stream` without touching NATS: the bucket is looked up at first use
    /// (readers, which must never create an empty bucket in place of a lost one).
    pub fn attach(js: jetstream::Context, stream: &str) -> Self {
        Self { js, bucket: bucket_name(stream), kv: std::sync::Arc::default() }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn unavailable(&self, what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> KeyError {
        KeyError::Unavailable { bucket: self.bucket.clone(), what, cause: Some(Box::new(e)) }
    }

    /// Whether the NATS connection is up, or comes back within `wait`.
    async fn connected_within(&self, wait: std::time::Duration) -> bool {
        let client = self.js.client();
        let until = tokio::time::Instant::now() + wait;
        while client.connection_state() != async_nats::connection::State::Connected {
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        true
    }

    async fn kv(&self) -> Result<&kv::Store, KeyError> {
        self.kv
            .get_or_try_init(|| async {
                self.js.get_key_value(&self.bucket).await.map_err(|e| self.unavailable("opening the bucket", e))
            })
            .await
    }

    /// The key of `owner`; `None` when it has none (never had one, or was forgotten).
    ///
    /// # Errors
    /// [`KeyError`].
    pub async fn get(&self, owner: &str) -> Result<Option<DataKey>, KeyError> {
        let kv = self.kv().await?;
        // A read that times out is tried again while a replicated bucket elects a new leader
        // (as the event log's appends are), so a dying node does not fail the command; a
        // connection that does not come back answers at once, as a NATS outage should.
        let deadline = tokio::time::Instant::now() + FAILOVER_WAIT;
        let mut pause = std::time::Duration::from_millis(50);
        let read = loop {
            let read = kv.get(owner).await;
            let timed_out = matches!(&read, Err(e) if e.kind() == kv::EntryErrorKind::TimedOut);
            if !timed_out
                || tokio::time::Instant::now() + pause >= deadline
                || !self.connected_within(RECONNECT_WAIT).await
            {
                break read;
            }
            tracing::debug!(bucket = %self.bucket, "a key read timed out; trying again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(500));
        };
        let Some(bytes) = read.map_err(|e| self.unavailable("reading a key", e))? else {
            return Ok(None);
        };
        DataKey::from_bytes(&bytes)
            .map(Some)
            .ok_or_else(|| KeyError::Malformed { bucket: self.bucket.clone(), owner: owner.to_owned() })
    }

    /// The key of `owner`, created when it has none. The caller must know that `owner` was
    /// not forgotten (the User aggregate refuses every command after `user.forgotten`).
    ///
    /// # Errors
    /// [`KeyError`].
    pub async fn get_or_create(&self, owner: &str) -> Result<DataKey, KeyError> {
        if let Some(key) = self.get(owner).await? {
            return Ok(key);
        }
        let fresh = DataKey::generate();
        let kv = self.kv().await?;
        match kv.create(owner, Bytes::copy_from_slice(fresh.as_bytes())).await {
            Ok(_) => Ok(fresh),
            // Another instance created it first: use theirs.
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => self.get(owner).await?.ok_or_else(|| {
                KeyError::Unavailable { bucket: self.bucket.clone(), what: "reading a key just created", cause: None }
            }),
            Err(e) => Err(self.unavailable("creating a key", e)),
        }
    }

    /// Erases the key of `owner`: its stored message is overwritten by the server, then a
    /// purge marker records the deletion. Returns whether there was a key to erase (forgetting
    /// twice is harmless).
    ///
    /// # Errors
    /// [`KeyError::Unavailable`].
    pub async fn forget(&self, owner: &str) -> Result<bool, KeyError> {
        let kv = self.kv().await?;
        let entry = kv.entry(owner).await.map_err(|e| self.unavailable("reading a key", e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else { return Ok(false) };
        // Erase first: a purge alone only drops the message from the index.
        if kv.stream.cached_info().config.deny_delete {
            tracing::error!(
                bucket = %self.bucket,
                "the key bucket denies message deletes (it was made as a plain KV bucket): the key is unlinked by a purge, not overwritten"
            );
        } else if let Err(e) = kv.stream.delete_message(entry.revision).await {
            // Another forget erased it between our read and our delete (a projection
            // passing `user.forgotten` does): erased all the same.
            let gone = matches!(e.kind(), DeleteMessageErrorKind::JetStream(j) if j.error_code() == ErrorCode::SEQUENCE_NOT_FOUND);
            if !gone {
                return Err(self.unavailable("erasing a key", e));
            }
            kv.purge(owner).await.map_err(|e| self.unavailable("marking a key deleted", e))?;
            return Ok(false);
        }
        kv.purge(owner).await.map_err(|e| self.unavailable("marking a key deleted", e))?;
        Ok(true)
    }
}
