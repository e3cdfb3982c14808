//! Idempotency keys: a command retried with the same key returns the first result and
//! appends nothing.
//!
//! A key is reserved in a JetStream KV bucket (`<stream>_IDEMPOTENCY`, entries kept 24 h)
//! before the command runs, and replaced by the receipt once its events are stored. The
//! events also carry the key's digest in an operational header, so a reservation left
//! pending by a crash (or a lost ack) is resolved by looking for those events on the
//! aggregate's subject: found, the receipt is rebuilt from them; not found and older than
//! the stale limit, the reservation is taken over and the command runs again.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::LogError;
use crate::log::EventLog;
use crate::record::IDEMPOTENCY_KEY;

/// How long a key is remembered.
pub const KEY_TTL: Duration = Duration::from_secs(24 * 3600);

/// What an executed command returns, and what a retried key returns again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Aggregate type (`country`, ...).
    pub aggregate: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Aggregate version after the command.
    pub version: u64,
    /// Stream sequence of the command's last event (of the aggregate's last event when the
    /// command produced none): the read-your-writes token.
    pub sequence: u64,
    /// Ids of the events the command appended, in order (empty for a no-op).
    pub event_ids: Vec<uuid::Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Entry {
    Pending { fingerprint: String, subject: String, after_seq: u64, started_ms: i64 },
    Done { fingerprint: String, receipt: Receipt },
}

/// The outcome of reserving a key.
#[derive(Debug)]
pub enum Begin {
    /// First use: run the command, then [`IdempotencyStore::complete`].
    Fresh(Reservation),
    /// Already done: return this receipt.
    Done(Receipt),
    /// Another request holds the key right now.
    InProgress,
    /// The key was used for a different command.
    Mismatch,
}

/// A held key.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// KV key (digest of the scope and the client's key).
    pub digest: String,
    fingerprint: String,
}

/// The idempotency bucket.
#[derive(Clone)]
pub struct IdempotencyStore {
    kv: kv::Store,
    log: EventLog,
    stale_after: Duration,
}

fn millis_now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The KV key and header value for a client key: hex SHA-256 of scope and key (no user
/// text in subjects or headers).
pub fn digest(scope: &str, key: &str) -> String {
    let mut h = Sha256::new();
    h.update(scope.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl IdempotencyStore {
    /// Opens (or creates) the bucket beside `log`'s stream.
    ///
    /// # Errors
    /// [`LogError::Unavailable`].
    pub async fn open(log: EventLog) -> Result<Self, LogError> {
        let kv = log.kv_bucket("IDEMPOTENCY", "Covenant idempotency keys", KEY_TTL).await?;
        Ok(Self { kv, log, stale_after: Duration::from_secs(30) })
    }

    /// Reserves `digest` for a command with `fingerprint` on `subject`.
    ///
    /// # Errors
    /// [`LogError::Unavailable`].
    pub async fn begin(&self, digest: &str, fingerprint: &str, subject: &str) -> Result<Begin, LogError> {
        let after_seq = self.log.last_event(subject).await?.map_or(0, |e| e.seq);
        let pending = Entry::Pending {
            fingerprint: fingerprint.into(),
            subject: subject.into(),
            after_seq,
            started_ms: millis_now(),
        };
        let reservation = Reservation { digest: digest.into(), fingerprint: fingerprint.into() };
        match self.kv.create(digest, encode(&pending)).await {
            Ok(_) => return Ok(Begin::Fresh(reservation)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(LogError::unavailable_from("idempotency key", e)),
        }
        let entry = self.kv.entry(digest).await.map_err(|e| LogError::unavailable_from("idempotency key", e))?;
        let Some(entry) = entry else { return Ok(Begin::InProgress) };
        match serde_json::from_slice::<Entry>(&entry.value) {
            Ok(Entry::Done { fingerprint: f, .. }) | Ok(Entry::Pending { fingerprint: f, .. }) if f != fingerprint => {
                Ok(Begin::Mismatch)
            }
            Ok(Entry::Done { receipt, .. }) => Ok(Begin::Done(receipt)),
            Ok(Entry::Pending { subject, after_seq, started_ms, .. }) => {
                if let Some(receipt) = self.find_applied(digest, &subject, after_seq).await? {
                    self.complete(&reservation, &receipt).await?;
                    return Ok(Begin::Done(receipt));
                }
                let stale = millis_now() - started_ms > self.stale_after.as_millis() as i64;
                if !stale {
                    return Ok(Begin::InProgress);
                }
                match self.kv.update(digest, encode(&pending), entry.revision).await {
                    Ok(_) => Ok(Begin::Fresh(reservation)),
                    Err(_) => Ok(Begin::InProgress),
                }
            }
            Err(_) => Ok(Begin::InProgress),
        }
    }

    /// Looks for the events a pending reservation's command appended.
    async fn find_applied(&self, digest: &str, subject: &str, after_seq: u64) -> Result<Option<Receipt>, LogError> {
        let events = self.log.read_subject(subject, after_seq).await?;
        let ours: Vec<_> =
            events.iter().filter(|e| e.headers.get(IDEMPOTENCY_KEY).map(|v| v.as_str()) == Some(digest)).collect();
        let Some(last) = ours.last() else { return Ok(None) };
        let (aggregate, aggregate_id) = split_subject(subject);
        Ok(Some(Receipt {
            aggregate,
            aggregate_id,
            version: last.version,
            sequence: last.seq,
            event_ids: ours.iter().filter_map(|e| e.event_id.parse().ok()).collect(),
        }))
    }

    /// Records the receipt of a reserved command.
    ///
    /// # Errors
    /// [`LogError::Unavailable`] (the reservation then stays pending and is resolved from
    /// the stream on the next retry).
    pub async fn complete(&self, r: &Reservation, receipt: &Receipt) -> Result<(), LogError> {
        let done = Entry::Done { fingerprint: r.fingerprint.clone(), receipt: receipt.clone() };
        self.kv
            .put(&r.digest, encode(&done))
            .await
            .map(|_| ())
            .map_err(|e| LogError::unavailable_from("idempotency receipt", e))
    }

    /// Releases a reservation whose command was refused, so a corrected retry may run.
    ///
    /// # Errors
    /// [`LogError::Unavailable`].
    pub async fn release(&self, r: &Reservation) -> Result<(), LogError> {
        self.kv.delete(&r.digest).await.map_err(|e| LogError::unavailable_from("idempotency key release", e))
    }
}

fn encode(e: &Entry) -> Bytes {
    Bytes::from(serde_json::to_vec(e).expect("idempotency entries always serialise"))
}

/// `<prefix...>.<aggregate>.<id>` → (aggregate, id).
fn split_subject(subject: &str) -> (String, String) {
    let mut parts = subject.rsplitn(3, '.');
    let id = parts.next().unwrap_or_default().to_owned();
    let aggregate = parts.next().unwrap_or_default().to_owned();
    (aggregate, id)
}
