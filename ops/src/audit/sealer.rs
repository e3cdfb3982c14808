//! The sealer: one active at a time (a lease in a KV bucket, updated by revision so two
//! sealers cannot both hold it), it extends the Merkle tree over the event stream with the
//! new `Audit-Hash` leaves and, when the log grew, appends a signed checkpoint to the
//! checkpoint stream. Each append expects the checkpoint stream's last sequence, so a
//! sealer that lost its lease unnoticed cannot append either (fencing). The tree's O(log n)
//! state is kept in the same bucket, checked against the latest checkpoint at start.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_nats::jetstream::{self, kv, stream};
use covenant_audit::merkle::CompactTree;
use covenant_audit::note::{Checkpoint, SignedNote};
use covenant_audit::{hash_from_b64, hash_to_b64};
use serde::{Deserialize, Serialize};

use super::keys::SealerKey;
use super::source;

/// How often the sealer checks for new events (DESIGN: every 10 s).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Serialize, Deserialize)]
struct Frontier {
    size: u64,
    peaks: Vec<String>,
    /// Sequence of the checkpoint this frontier belongs to.
    checkpoint_seq: u64,
}

/// What one round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sealed {
    /// Another sealer holds the lease.
    NotLeader,
    /// Nothing new since the last checkpoint.
    Unchanged(u64),
    /// A checkpoint of this size was appended.
    Checkpoint(u64),
}

/// A sealer over one event stream.
pub struct Sealer {
    js: jetstream::Context,
    events: stream::Stream,
    checkpoints: stream::Stream,
    kv: kv::Store,
    subject: String,
    origin: String,
    lease: covenant_projections::lease::Lease,
    key: SealerKey,
    tree: CompactTree,
    /// Last sequence of the checkpoint stream this sealer knows of.
    last_checkpoint_seq: u64,
    loaded: bool,
}

impl Sealer {
    /// Opens (creating when missing) the checkpoint stream and the sealer's bucket for
    /// event stream `events` (which must exist).
    ///
    /// # Errors
    /// When NATS refuses.
    pub async fn open(
        js: &jetstream::Context,
        events: &str,
        replicas: usize,
        key: SealerKey,
        interval: Duration,
    ) -> Result<Self> {
        let events_stream = js.get_stream(events).await.with_context(|| format!("stream {events} does not exist"))?;
        let name = source::checkpoints_stream(events);
        let subject = source::checkpoints_subject(events);
        let checkpoints = js
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                description: Some(format!("Signed checkpoints of {events} (append-only)")),
                subjects: vec![subject.clone()],
                storage: stream::StorageType::File,
                num_replicas: replicas,
                deny_delete: true,
                deny_purge: true,
                allow_rollup: false,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating stream {name}"))?;
        let bucket = format!("{events}_SEALER");
        let kv = match js.get_key_value(&bucket).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: bucket.clone(),
                    description: "Covenant sealer lease and tree state".into(),
                    history: 1,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("creating KV bucket {bucket}"))?,
        };
        Ok(Self {
            js: js.clone(),
            events: events_stream,
            checkpoints,
            lease: covenant_projections::lease::Lease::new(kv.clone(), "lease", interval * 3),
            kv,
            subject,
            origin: source::origin(events),
            key,
            tree: CompactTree::new(),
            last_checkpoint_seq: 0,
            loaded: false,
        })
    }

    /// Takes or renews the lease; `false` when another sealer holds it.
    ///
    /// # Errors
    /// When NATS does not answer.
    pub async fn lease(&self) -> Result<bool> {
        Ok(self.lease.acquire().await?)
    }

    /// Gives the lease up (a clean stop), so another sealer takes over at once.
    pub async fn release(&self) {
        self.lease.release().await;
    }

    /// Loads the tree for the latest checkpoint: from the saved frontier when it matches,
    /// else by re-reading the leaves it covers.
    async fn load(&mut self) -> Result<()> {
        let info = self.checkpoints.get_info().await.context("checkpoint stream info")?;
        let last_seq = info.state.last_sequence;
        let latest = if info.state.messages == 0 {
            None
        } else {
            let m = self.checkpoints.get_raw_message(last_seq).await.context("reading the latest checkpoint")?;
            let text = String::from_utf8_lossy(&m.payload).into_owned();
            let note = SignedNote::parse(&text).context("the latest checkpoint is not a signed note")?;
            let cp = Checkpoint::parse(&note.body).context("the latest checkpoint has a malformed body")?;
            Some((cp.size, cp.root))
        };
        self.tree = CompactTree::new();
        if let Some((size, root)) = latest {
            let saved =
                self.kv.get("frontier").await.ok().flatten().and_then(|b| serde_json::from_slice::<Frontier>(&b).ok());
            let from_saved = saved.filter(|f| f.size == size && f.checkpoint_seq == last_seq).and_then(|f| {
                let peaks = f.peaks.iter().map(|p| hash_from_b64(p).ok()).collect::<Option<Vec<_>>>()?;
                CompactTree::from_parts(f.size, peaks)
            });
            self.tree = match from_saved {
                Some(t) if t.root() == root => t,
                _ => self.rebuild(size).await?,
            };
            if self.tree.root() != root {
                bail!(
                    "the event stream's first {size} events do not match its latest signed checkpoint: \
                     refusing to seal over it (run `covenant audit verify`)"
                );
            }
        }
        self.last_checkpoint_seq = last_seq;
        self.loaded = true;
        Ok(())
    }

    async fn rebuild(&self, size: u64) -> Result<CompactTree> {
        let mut tree = CompactTree::new();
        self.extend(&mut tree, size).await?;
        Ok(tree)
    }

    /// Adds the leaves after `tree.size()` up to `to` (contiguous, each with a hash).
    async fn extend(&self, tree: &mut CompactTree, to: u64) -> Result<()> {
        let mut problem = None;
        source::scan(&self.events, tree.size() + 1, to, true, |seq, m, _| {
            if problem.is_some() {
                return;
            }
            if seq != tree.size() + 1 {
                problem = Some(format!("sequences {}..{seq} are missing from the event stream", tree.size() + 1));
                return;
            }
            match source::leaf(&m) {
                Some(leaf) => tree.push(leaf),
                None => problem = Some(format!("sequence {seq} has no Audit-Hash")),
            }
        })
        .await?;
        if let Some(p) = problem {
            bail!("{p}: refusing to seal (run `covenant audit verify`)");
        }
        Ok(())
    }

    /// One round: lease, new leaves, and a checkpoint when the log grew.
    ///
    /// # Errors
    /// NATS errors, a gap or a leaf without hash in the stream (the sealer never seals
    /// over those), or a lost race for the checkpoint stream.
    pub async fn round(&mut self) -> Result<Sealed> {
        self.round_with(None).await
    }

    async fn round_with(&mut self, handover: Option<&SealerKey>) -> Result<Sealed> {
        if !self.lease().await? {
            self.loaded = false;
            return Ok(Sealed::NotLeader);
        }
        if !self.loaded {
            self.load().await?;
        }
        let last = self.events.get_info().await.context("event stream info")?.state.last_sequence;
        let sealed_before = self.tree.size();
        if last > self.tree.size() {
            let mut tree = self.tree.clone();
            self.extend(&mut tree, last).await?;
            self.tree = tree;
        }
        if self.tree.size() == sealed_before && self.last_checkpoint_seq > 0 && handover.is_none() {
            return Ok(Sealed::Unchanged(sealed_before));
        }
        if self.tree.size() == 0 && handover.is_none() {
            return Ok(Sealed::Unchanged(0));
        }
        let body = Checkpoint { origin: &self.origin, size: self.tree.size(), root: self.tree.root() }.body();
        let mut signatures = vec![self.key.signer()?.sign(&body)];
        if let Some(next) = handover {
            signatures.push(next.signer()?.sign(&body));
        }
        let text = SignedNote { body, signatures }.to_text();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Expected-Last-Sequence", self.last_checkpoint_seq.to_string().as_str());
        let ack = self
            .js
            .publish_with_headers(self.subject.clone(), headers, text.into_bytes().into())
            .await
            .context("publishing the checkpoint")?
            .await;
        let ack = match ack {
            Ok(a) => a,
            Err(e) => {
                // Another sealer appended: reload before trying again.
                self.loaded = false;
                bail!("the checkpoint stream moved (another sealer?): {e}");
            }
        };
        self.last_checkpoint_seq = ack.sequence;
        let frontier = Frontier {
            size: self.tree.size(),
            peaks: self.tree.peaks().iter().map(hash_to_b64).collect(),
            checkpoint_seq: ack.sequence,
        };
        self.kv.put("frontier", serde_json::to_vec(&frontier)?.into()).await.context("saving the tree state")?;
        Ok(Sealed::Checkpoint(self.tree.size()))
    }

    /// Rotation: appends a handover checkpoint signed by the current key and `next`, then
    /// signs with `next` from now on.
    ///
    /// # Errors
    /// As [`Sealer::round`], or when another sealer holds the lease.
    pub async fn handover(&mut self, next: SealerKey) -> Result<u64> {
        match self.round_with(Some(&next)).await? {
            Sealed::NotLeader => {
                bail!("another sealer holds the lease: stop it (or wait for its lease to lapse) first")
            }
            Sealed::Unchanged(_) => bail!("the handover checkpoint was not written"),
            Sealed::Checkpoint(size) => {
                self.key = next;
                Ok(size)
            }
        }
    }

    /// The signing key in use.
    pub fn key(&self) -> &SealerKey {
        &self.key
    }

    /// Replaces the signing key (after a rotation written by another process).
    pub fn set_key(&mut self, key: SealerKey) {
        self.key = key;
    }

    /// The current tree size.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }
}
