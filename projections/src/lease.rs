//! A lease in a JetStream KV bucket: at most one holder of a key at a time among any number
//! of processes, taken over when its holder stops renewing it. One mechanism serves the
//! sealer (one active sealer) and the projection runners (one active runner per projection,
//! so two instances never delete and recreate each other's durable consumer).
//!
//! The value names the holder and when the lease expires; every write goes through the
//! key's revision (`create`, or `update` at the revision read), so of two processes racing
//! for a free lease exactly one wins. Holders renew well before the expiry; a clean stop
//! releases the lease so another holder takes over at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Held {
    holder: String,
    expires_ms: u64,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why the lease could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("lease {key}: {reason}")]
pub struct LeaseError {
    key: String,
    reason: String,
}

/// One key's lease, as one holder sees it.
#[derive(Clone)]
pub struct Lease {
    kv: kv::Store,
    key: String,
    holder: String,
    ttl: Duration,
}

impl Lease {
    /// The lease on `key` in `kv` for a holder of this process, expiring `ttl` after each
    /// renewal.
    pub fn new(kv: kv::Store, key: impl Into<String>, ttl: Duration) -> Self {
        Self::with_holder(kv, key, format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()), ttl)
    }

    /// As [`Lease::new`], with a given holder name.
    pub fn with_holder(kv: kv::Store, key: impl Into<String>, holder: impl Into<String>, ttl: Duration) -> Self {
        Self { kv, key: key.into(), holder: holder.into(), ttl }
    }

    /// How long a lease lasts without renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes or renews the lease; `false` when another holder has it.
    ///
    /// # Errors
    /// When the bucket cannot be read.
    pub async fn acquire(&self) -> Result<bool, LeaseError> {
        let err = |e: &dyn std::fmt::Display| LeaseError { key: self.key.clone(), reason: e.to_string() };
        let value = serde_json::to_vec(&Held {
            holder: self.holder.clone(),
            expires_ms: now_ms() + u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX),
        })
        .map_err(|e| err(&e))?;
        match self.kv.entry(&self.key).await.map_err(|e| err(&e))? {
            None => Ok(self.kv.create(&self.key, value.into()).await.is_ok()),
            Some(e) => {
                let held: Option<Held> = serde_json::from_slice(&e.value).ok();
                let free = e.operation != kv::Operation::Put
                    || held.as_ref().is_none_or(|l| l.holder == self.holder || l.expires_ms < now_ms());
                if !free {
                    return Ok(false);
                }
                // The revision fences a concurrent taker: only one update of it succeeds.
                Ok(self.kv.update(&self.key, value.into(), e.revision).await.is_ok())
            }
        }
    }

    /// Gives the lease up if this holder has it, so another takes over at once.
    pub async fn release(&self) {
        if let Ok(Some(e)) = self.kv.entry(&self.key).await
            && serde_json::from_slice::<Held>(&e.value).is_ok_and(|l| l.holder == self.holder)
        {
            let _ = self.kv.update(&self.key, Vec::new().into(), e.revision).await;
        }
    }
}

/// The bucket of the projection runners' leases beside event stream `stream`
/// (`<stream>_LEASES`, replicated like the stream), created when missing.
///
/// # Errors
/// When NATS refuses.
pub async fn projection_bucket(js: &async_nats::jetstream::Context, stream: &str) -> Result<kv::Store, LeaseError> {
    let bucket = format!("{stream}_LEASES");
    let err = |e: &dyn std::fmt::Display| LeaseError { key: bucket.clone(), reason: e.to_string() };
    if let Ok(kv) = js.get_key_value(&bucket).await {
        return Ok(kv);
    }
    let replicas =
        js.get_stream(stream).await.map_err(|e| err(&e))?.get_info().await.map_err(|e| err(&e))?.config.num_replicas;
    match js
        .create_key_value(kv::Config {
            bucket: bucket.clone(),
            description: "Covenant projection runner leases (one active runner per projection)".into(),
            history: 1,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
    {
        Ok(kv) => Ok(kv),
        // Another instance created it first.
        Err(e) => js.get_key_value(&bucket).await.map_err(|_| err(&e)),
    }
}
