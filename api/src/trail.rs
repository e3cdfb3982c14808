//! The audit trail's state as the API reports it (GraphQL `auditStatus` and the `/metrics`
//! gauges): the event stream's last sequence and the latest signed checkpoint, read from
//! NATS (the sealer runs in a process of its own).

use async_nats::jetstream;
use chrono::{DateTime, Utc};

/// The latest signed checkpoint.
#[derive(Debug, Clone)]
pub struct Latest {
    /// Events it covers.
    pub size: u64,
    /// Its Merkle root.
    pub root: covenant_audit::Hash,
    /// When it was appended.
    pub at: DateTime<Utc>,
    /// The keys that signed it.
    pub signers: Vec<String>,
}

/// Why the latest checkpoint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointError {
    /// NATS did not answer.
    Unavailable,
    /// The latest message of the checkpoint stream is no signed checkpoint.
    Malformed,
}

/// The event stream's last sequence and its latest checkpoint (`Ok(None)`: none yet).
#[derive(Debug, Clone)]
pub struct Trail {
    /// Last sequence of the event stream.
    pub last_sequence: u64,
    /// The latest checkpoint.
    pub latest: Result<Option<Latest>, CheckpointError>,
}

/// Reads the trail of event stream `stream`; `None` when the event stream cannot be read.
pub async fn read(js: &jetstream::Context, stream: &str) -> Option<Trail> {
    let last_sequence = js.get_stream(stream).await.ok()?.get_info().await.ok()?.state.last_sequence;
    Some(Trail { last_sequence, latest: latest(js, stream).await })
}

async fn latest(js: &jetstream::Context, stream: &str) -> Result<Option<Latest>, CheckpointError> {
    let Ok(cps) = js.get_stream(covenant_audit::checkpoints_stream(stream)).await else { return Ok(None) };
    let info = cps.get_info().await.map_err(|_| CheckpointError::Unavailable)?;
    if info.state.messages == 0 {
        return Ok(None);
    }
    let m = cps.get_raw_message(info.state.last_sequence).await.map_err(|_| CheckpointError::Unavailable)?;
    let note = covenant_audit::note::SignedNote::parse(&String::from_utf8_lossy(&m.payload))
        .map_err(|_| CheckpointError::Malformed)?;
    let cp = covenant_audit::note::Checkpoint::parse(&note.body).map_err(|_| CheckpointError::Malformed)?;
    Ok(Some(Latest {
        size: cp.size,
        root: cp.root,
        at: DateTime::from_timestamp(m.time.unix_timestamp(), m.time.nanosecond()).unwrap_or_default(),
        signers: note.signatures.iter().map(|s| s.name.clone()).collect(),
    }))
}
