//! The verifier: replays a log (the live stream or an exported bundle, in stream order)
//! and its checkpoints, and reports every finding with its class, sequence and subject.
//! No I/O: callers feed it [`Record`]s and checkpoint texts.
//!
//! Checks, per event, in stream order: sequence gaps (deleted messages), the audit headers,
//! unique event ids, `Audit-Hash` recomputed from the headers, `Audit-Prev` and the payload
//! hash (`h_k`), the link to the previous event of the same aggregate and contiguous
//! versions. Then the checkpoints: each one's signature (the key registry, with handovers
//! for rotation), sizes never shrinking, one root per size, and each root against the
//! Merkle tree of the `Audit-Hash` leaves; and an auditor's trusted checkpoint, for
//! rollback and fork detection. The unsealed tail is reported.
//!
//! Classification of an event that fails, with `content` = its `Audit-Hash` recomputes and
//! `link` = its `Audit-Prev` and version continue the previous event of its aggregate:
//!
//! | content | link | class |
//! |---|---|---|
//! | ok | version not the next one | `REORDER` |
//! | ok | next version, other predecessor | `FORGED_INSERTION` |
//! | fails | ok | `PAYLOAD_EDIT` when the payload's hash differs from the one written beside it, else `HEADER_EDIT` |
//! | fails | `Audit-Prev` unknown to this log | `FORGED_INSERTION` (copied from another log, or forged) |
//! | fails | otherwise | `HEADER_EDIT` |
//!
//! A repeated `Event-Id` is `FORGED_INSERTION`; missing stream sequences are `GAP`.
//! After a failure the verifier continues from the event's own claims, so one edit gives
//! one finding rather than a cascade.
//!
//! Submodules: `record` (an event as read, and [`check`], the part that may run on any
//! thread), `checkpoints` (signatures, key handovers, sizes and roots of the log's
//! checkpoints and of a trusted one) and `config` (the stream's append-only settings).

mod checkpoints;
mod config;
mod record;
mod report;
pub use checkpoints::{CheckpointText, KeyRegistry, RegistryKey};
use checkpoints::{ParsedCheckpoint, Source, Target};
pub use config::{MIN_RETENTION_SECS, StreamFacts, check_config};
pub use record::{Checked, Fields, Record, check, check_fields};
pub use report::{Class, Finding, Report};

use hashbrown::{HashMap, HashSet};
use uuid::Uuid;

use crate::entry::genesis;
use crate::hash::Hash;
use crate::merkle::CompactTree;
use crate::note::NoteVerifier;

/// Most events [`Verifier::reserve`] makes room for up front (about 150 MB of tables).
pub const MAX_RESERVE: usize = 1 << 22;

/// Most findings kept (the rest are counted).
pub const MAX_FINDINGS: usize = 1000;

/// The last event seen of an aggregate.
struct Tip {
    version: u64,
    hash: Hash,
}

/// The streaming verifier: records go in, in stream order; [`Verifier::finish`] gives the
/// report. Its tables (hashbrown with foldhash, seeded per process, so a log's author
/// cannot prepare colliding keys) hold every aggregate's tip, every event id and every
/// hash of the log.
pub struct Verifier {
    origin: String,
    next_seq: u64,
    tips: HashMap<String, Tip>,
    event_ids: HashMap<Uuid, u64>,
    /// Every `h_0` and `h_k` of the log (their first 8 bytes: a quarter of the memory, and
    /// a chance match of a forged hash is 2^-64 per event), to tell a foreign `Audit-Prev`
    /// from an edited one.
    known: HashSet<u64>,
    tree: CompactTree,
    /// The checkpoint sizes the tree's root is compared at, ascending.
    targets: Vec<Target>,
    target_at: usize,
    /// The first leaf position that is not trustworthy (after a gap): roots past it are
    /// not compared again.
    tree_broken_at: Option<u64>,
    last_good_size: u64,
    checkpoints: Vec<ParsedCheckpoint>,
    trusted: Option<(u64, Hash)>,
    findings: Vec<Finding>,
    dropped: u64,
    warnings: Vec<String>,
    events: u64,
}

impl Verifier {
    /// A verifier for the log `origin` with its checkpoints (oldest first), the auditor's key
    /// registry, optionally a checkpoint the auditor trusts (a signed note), and the
    /// stream's first sequence (events before it are reported as a gap).
    pub fn new(
        origin: &str,
        checkpoints: &[CheckpointText],
        registry: &KeyRegistry,
        trusted: Option<&str>,
        first_seq: u64,
    ) -> Self {
        let mut v = Self {
            origin: origin.to_owned(),
            next_seq: first_seq.max(1),
            tips: HashMap::new(),
            event_ids: HashMap::new(),
            known: HashSet::new(),
            tree: CompactTree::new(),
            targets: Vec::new(),
            target_at: 0,
            tree_broken_at: None,
            last_good_size: 0,
            checkpoints: Vec::new(),
            trusted: None,
            findings: Vec::new(),
            dropped: 0,
            warnings: Vec::new(),
            events: 0,
        };
        if first_seq > 1 {
            v.tree_broken_at = Some(0);
            v.finding(
                Class::Gap,
                Some(1),
                None,
                format!("the stream starts at sequence {first_seq}: 1..{first_seq} are gone"),
            );
        }
        let verifiers: Vec<NoteVerifier> = registry
            .keys
            .iter()
            .filter_map(|k| match NoteVerifier::parse(&k.vkey) {
                Ok(v) => Some(v),
                Err(e) => {
                    v.warnings.push(format!("key registry entry `{}` is unusable: {e}", k.vkey));
                    None
                }
            })
            .collect();
        if verifiers.is_empty() {
            v.warnings.push("the key registry holds no key: checkpoint signatures cannot be checked".into());
        }
        v.read_checkpoints(checkpoints, &verifiers);
        if let Some(text) = trusted {
            v.read_trusted(text, &verifiers);
        }
        v.set_targets();
        v
    }

    fn finding(&mut self, class: Class, sequence: Option<u64>, subject: Option<&str>, detail: String) {
        if self.findings.len() >= MAX_FINDINGS {
            self.dropped += 1;
            return;
        }
        self.findings.push(Finding { class, sequence, subject: subject.map(str::to_owned), detail });
    }

    /// Makes room for `events` more events (a bundle's manifest or a stream's state says
    /// how many), so the tables are not regrown on the way. At most [`MAX_RESERVE`]: a
    /// manifest is the bundle's own claim, and a false one must not make the verifier
    /// allocate gigabytes up front (past that, the tables grow as events arrive).
    pub fn reserve(&mut self, events: u64) {
        let n = usize::try_from(events).unwrap_or(usize::MAX).min(MAX_RESERVE);
        self.event_ids.reserve(n);
        self.known.reserve(n);
    }

    /// Checks one record (hashing on this thread).
    pub fn push(&mut self, record: Record) {
        self.push_checked(&check(&self.origin, &record));
    }

    /// Takes records [`check`] worked out, in stream order.
    pub fn push_all(&mut self, batch: &[Checked]) {
        for c in batch {
            self.push_checked(c);
        }
    }

    /// Takes one record [`check`] worked out; records must come in stream order.
    pub fn push_checked(&mut self, c: &Checked) {
        let seq = c.seq;
        self.events += 1;
        if seq < self.next_seq {
            let detail = format!("sequence {seq} comes after {}", self.next_seq - 1);
            self.finding(Class::Reorder, Some(seq), Some(&c.subject), detail);
            return;
        }
        if seq > self.next_seq {
            let (from, to) = (self.next_seq, seq - 1);
            let detail = if from == to {
                format!("sequence {from} is missing")
            } else {
                format!("sequences {from}..={to} are missing")
            };
            self.finding(Class::Gap, Some(from), None, detail);
            self.tree_broken_at.get_or_insert(self.tree.size());
            // Keep leaf positions aligned with sequences.
            for _ in from..=to {
                self.tree.push([0; 32]);
            }
        }
        self.next_seq = seq + 1;
        self.tree.push(c.claims.as_ref().map_or([0; 32], |c| c.hash));
        self.compare_roots();
        self.check_chain(c);
    }

    /// The checks of one record after its place in the log: its claims, its event id and
    /// its link to the previous event of its aggregate.
    fn check_chain(&mut self, c: &Checked) {
        let (seq, subject) = (c.seq, c.subject.as_str());
        let claims = match &c.claims {
            Ok(claims) => *claims,
            Err(why) => {
                self.finding(Class::HeaderEdit, Some(seq), Some(subject), why.clone());
                return;
            }
        };
        if let Some(first) = self.event_ids.get(&claims.event_id) {
            let detail = format!("event id {} already appeared at sequence {first}", claims.event_id);
            self.finding(Class::ForgedInsertion, Some(seq), Some(subject), detail);
            return;
        }
        self.event_ids.insert(claims.event_id, seq);
        let (origin, known) = (&self.origin, &mut self.known);
        let tip = self.tips.entry_ref(subject).or_insert_with(|| {
            let g = c.genesis.or_else(|| genesis(origin, subject).ok()).unwrap_or([0; 32]);
            known.insert(prefix(&g));
            Tip { version: 0, hash: g }
        });
        let next_version = claims.version == tip.version + 1;
        let link_ok = next_version && claims.prev == tip.hash;
        let verdict = match (c.content_ok, link_ok) {
            // The payload is the one hashed, but the hash written beside it (the bundle's
            // `payload_sha256`, or `Audit-Payload-Sha256`) is not its hash: an edited record.
            (true, true) if c.payload_differs => Some((
                Class::PayloadEdit,
                "the payload is the one hashed, but the payload hash written beside it is not its hash".into(),
            )),
            (true, true) => None,
            (true, false) if !next_version => Some((
                Class::Reorder,
                format!("version {} follows version {} of its aggregate", claims.version, tip.version),
            )),
            (true, false) => Some((
                Class::ForgedInsertion,
                format!("version {} does not chain to the aggregate's version {}", claims.version, tip.version),
            )),
            (false, true) if c.payload_differs => {
                Some((Class::PayloadEdit, "the payload differs from the one hashed".into()))
            }
            (false, true) => Some((Class::HeaderEdit, "a hashed header differs from the one hashed".into())),
            (false, false) if !known.contains(&prefix(&claims.prev)) => Some((
                Class::ForgedInsertion,
                "Audit-Prev is no hash of this log and Audit-Hash does not recompute: an event from another log, \
                 or forged"
                    .into(),
            )),
            (false, false) => Some((Class::HeaderEdit, "the audit headers do not recompute".into())),
        };
        // Continue from the event's own claims (one edit, one finding), but never move an
        // aggregate backwards.
        if claims.version > tip.version {
            *tip = Tip { version: claims.version, hash: claims.hash };
        }
        known.insert(prefix(&claims.hash));
        if let Some((class, detail)) = verdict {
            self.finding(class, Some(seq), Some(subject), detail);
        }
    }

    fn compare_roots(&mut self) {
        while let Some(&Target { size, root, source }) = self.targets.get(self.target_at) {
            if size != self.tree.size() {
                break;
            }
            self.target_at += 1;
            if self.tree_broken_at.is_some() {
                continue;
            }
            if self.tree.root() == root {
                self.last_good_size = size;
                continue;
            }
            let (class, detail) = match source {
                Source::Trusted => {
                    (Class::Fork, format!("the log's first {size} events do not match the trusted checkpoint"))
                }
                Source::Checkpoint(index) => (
                    Class::ForgedInsertion,
                    format!(
                        "the events up to sequence {size} do not match signed checkpoint #{index}: changed after \
                         sequence {} with every later hash recomputed",
                        self.last_good_size
                    ),
                ),
            };
            self.finding(class, Some(self.last_good_size + 1), None, detail);
            self.tree_broken_at = Some(self.last_good_size);
        }
    }

    /// Ends the run: truncation against the checkpoints, the unsealed tail, the report.
    pub fn finish(mut self) -> Report {
        let len = self.next_seq - 1;
        while let Some(&Target { size, source, .. }) = self.targets.get(self.target_at) {
            self.target_at += 1;
            if size > len {
                self.finding(
                    Class::Truncation,
                    Some(len + 1),
                    None,
                    format!(
                        "{source} covers {size} events, the log holds {len}: sequences {}..={size} are gone",
                        len + 1
                    ),
                );
                break;
            }
        }
        let sealed = self.checkpoints.iter().filter(|c| c.signed).map(|c| c.size).max().unwrap_or(0);
        if self.checkpoints.is_empty() && len > 0 {
            self.warnings.push("no checkpoint: nothing in this log is sealed yet".into());
        }
        self.findings.sort_by_key(|f| (f.sequence.is_some(), f.sequence));
        Report {
            origin: self.origin,
            events: self.events,
            last_sequence: len,
            checkpoints: self.checkpoints.len() as u64,
            sealed_size: sealed.min(len),
            unsealed_tail: len.saturating_sub(sealed),
            trusted_size: self.trusted.map(|t| t.0),
            findings: self.findings,
            warnings: self.warnings,
            findings_dropped: self.dropped,
        }
    }
}

/// The first 8 bytes of a hash, as a number (a key of [`Verifier`]'s `known` set).
fn prefix(h: &Hash) -> u64 {
    u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]])
}
