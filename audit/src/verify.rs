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
//! Submodules: `check` (the parallel side: headers read and hashes worked out),
//! `checkpoints` (signatures, key handovers, sizes and roots of the log's checkpoints and of
//! a trusted one) and `tables` (the sequential pass's compact tables and small parsers).

mod check;
mod checkpoints;
mod tables;
pub use check::{Checked, Fields, Record, check, check_fields, check_finish, check_start};
use tables::{Aggregate, Aggregates, EventIds, Known, format_uuid};

use serde::Serialize;

use crate::encoding::hash_to_b64;
use crate::entry::{Hash, genesis};
use crate::merkle::CompactTree;
use crate::note::NoteVerifier;

/// What a finding is (DESIGN section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Class {
    /// A payload differs from the one hashed.
    PayloadEdit,
    /// A hashed header differs from the one hashed.
    HeaderEdit,
    /// Stream sequences are missing (deleted messages).
    Gap,
    /// An aggregate's events are out of version order.
    Reorder,
    /// An event that does not belong: a foreign chain, a duplicate, or a change under a
    /// signed root with the hashes recomputed.
    ForgedInsertion,
    /// Events a checkpoint covers are missing at the end.
    Truncation,
    /// A checkpoint signature that does not verify, or by a key not authorised then.
    BadSignature,
    /// A checkpoint signed by no key of the registry.
    UnknownKey,
    /// Two different roots for one tree size, or a log inconsistent with a trusted
    /// checkpoint.
    Fork,
    /// The log presents an older signed state than a trusted checkpoint.
    Rollback,
    /// The stream is configured so that history could be rewritten.
    Config,
}

impl Class {
    /// The class name as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PayloadEdit => "PAYLOAD_EDIT",
            Self::HeaderEdit => "HEADER_EDIT",
            Self::Gap => "GAP",
            Self::Reorder => "REORDER",
            Self::ForgedInsertion => "FORGED_INSERTION",
            Self::Truncation => "TRUNCATION",
            Self::BadSignature => "BAD_SIGNATURE",
            Self::UnknownKey => "UNKNOWN_KEY",
            Self::Fork => "FORK",
            Self::Rollback => "ROLLBACK",
            Self::Config => "CONFIG",
        }
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Its class.
    pub class: Class,
    /// The first stream sequence concerned, when there is one.
    pub sequence: Option<u64>,
    /// The subject concerned, when there is one.
    pub subject: Option<String>,
    /// What exactly.
    pub detail: String,
}

/// A public key the auditor trusts to sign checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RegistryKey {
    /// The C2SP verifier key, `<name>+<hex id>+<base64 key>`.
    pub vkey: String,
    /// `active` or `retired` (informational: authority follows the handovers).
    #[serde(default)]
    pub status: String,
}

/// The key registry file (`keys.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct KeyRegistry {
    /// The log these keys seal.
    #[serde(default)]
    pub origin: String,
    /// Every sealer key, oldest first.
    pub keys: Vec<RegistryKey>,
}

/// The stream settings that keep the log append-only, as the verifier checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StreamFacts {
    /// Deleting messages is refused.
    pub deny_delete: bool,
    /// Purging is refused.
    pub deny_purge: bool,
    /// Rollup headers are refused.
    pub allow_rollup: bool,
    /// Messages kept per subject (-1 = no limit).
    pub max_msgs_per_subject: i64,
    /// Messages kept in all (-1 = no limit).
    pub max_msgs: i64,
    /// Bytes kept (-1 = no limit).
    pub max_bytes: i64,
    /// Longest a message is kept, in seconds (0 = for ever).
    pub max_age_secs: u64,
}

/// Shortest retention accepted: seven years (the seed's compliance figure).
pub const MIN_RETENTION_SECS: u64 = 7 * 365 * 24 * 3600;

/// Findings about a stream's configuration.
pub fn check_config(f: &StreamFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut bad = |detail: String| out.push(Finding { class: Class::Config, sequence: None, subject: None, detail });
    if !f.deny_delete {
        bad("deny_delete is off: messages can be deleted".into());
    }
    if !f.deny_purge {
        bad("deny_purge is off: the stream can be purged".into());
    }
    if f.allow_rollup {
        bad("allow_rollup is on: a rollup message can erase a subject's history".into());
    }
    if f.max_msgs_per_subject > 0 {
        bad(format!("max_msgs_per_subject is {}: old events of an aggregate are dropped", f.max_msgs_per_subject));
    }
    if f.max_msgs > 0 || f.max_bytes > 0 {
        bad(format!(
            "a size limit is set (max_msgs {}, max_bytes {}): old events are dropped",
            f.max_msgs, f.max_bytes
        ));
    }
    if f.max_age_secs != 0 && f.max_age_secs < MIN_RETENTION_SECS {
        bad(format!("max_age is {} s, under the seven years required", f.max_age_secs));
    }
    out
}

/// A checkpoint as stored, with where it was read from.
#[derive(Debug, Clone)]
pub struct CheckpointText {
    /// Position in the checkpoint log (1-based), for messages.
    pub index: u64,
    /// The signed note.
    pub text: String,
}

/// The verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Log origin.
    pub origin: String,
    /// Events read.
    pub events: u64,
    /// Last stream sequence read.
    pub last_sequence: u64,
    /// Checkpoints read.
    pub checkpoints: u64,
    /// Size of the latest valid checkpoint.
    pub sealed_size: u64,
    /// Events after it.
    pub unsealed_tail: u64,
    /// Size of the trusted checkpoint, if one was given.
    pub trusted_size: Option<u64>,
    /// Problems, most important first within each check, in stream order.
    pub findings: Vec<Finding>,
    /// Things worth knowing that are not tampering.
    pub warnings: Vec<String>,
    /// Distinct findings dropped after the cap.
    pub findings_dropped: u64,
}

impl Report {
    /// The exit code DESIGN section 5 states: 0 pass, 1 tampered, 2 warnings only.
    pub fn exit_code(&self) -> i32 {
        if !self.findings.is_empty() {
            1
        } else if !self.warnings.is_empty() {
            2
        } else {
            0
        }
    }

    /// The first finding with a sequence (the "first bad sequence"), if any.
    pub fn first_bad(&self) -> Option<&Finding> {
        self.findings.iter().filter(|f| f.sequence.is_some()).min_by_key(|f| f.sequence)
    }
}

/// Most events [`Verifier::reserve`] makes room for up front (about 150 MB of tables).
pub const MAX_RESERVE: usize = 1 << 22;

/// Most findings kept (the rest are counted).
pub const MAX_FINDINGS: usize = 1000;

struct ParsedCheckpoint {
    index: u64,
    size: u64,
    root: Hash,
    /// Whether its signature is valid and authorised.
    signed: bool,
}

/// The streaming verifier.
pub struct Verifier {
    origin: String,
    next_seq: u64,
    aggregates: Aggregates,
    event_ids: EventIds,
    known: Known,
    tree: CompactTree,
    /// Checkpoint sizes to compare the tree with, ascending, with their roots.
    targets: Vec<(u64, Hash, &'static str, u64)>,
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
    /// registry and, optionally, a checkpoint the auditor trusts (a signed note).
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
            aggregates: Aggregates::default(),
            event_ids: EventIds::default(),
            known: Known::default(),
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
        let mut targets: Vec<(u64, Hash, &'static str, u64)> =
            v.checkpoints.iter().filter(|c| c.signed).map(|c| (c.size, c.root, "checkpoint", c.index)).collect();
        if let Some((size, root)) = v.trusted {
            targets.push((size, root, "trusted", 0));
        }
        targets.sort_by_key(|t| t.0);
        v.targets = targets;
        v.check_empty_targets();
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
        let checked = check(&self.origin, &record);
        self.push_checked(&checked);
    }

    /// Checks records whose hashes [`check`] worked out, in stream order, as
    /// [`Verifier::push_checked`] does one by one. The tables' entries for each group of
    /// records are looked up first, all at once: independent reads the processor overlaps,
    /// where one record after another would wait for each in turn.
    pub fn push_all(&mut self, batch: &[Checked]) {
        const GROUP: usize = 64;
        for group in batch.chunks(GROUP) {
            for c in group {
                std::hint::black_box(self.aggregates.touch(c.key));
                if let Ok(claims) = &c.claims {
                    std::hint::black_box(self.event_ids.touch(claims.event_id));
                }
            }
            if self.in_order(group) {
                // The group's leaves go into the tree at once (its perfect subtrees hashed a
                // level at a time); no checkpoint's size falls inside it.
                let mut leaves = [[0u8; 32]; GROUP];
                for (leaf, c) in leaves.iter_mut().zip(group) {
                    *leaf = c.claims.as_ref().map_or([0; 32], |c| c.hash);
                }
                self.tree.extend(&leaves[..group.len()]);
                self.events += group.len() as u64;
                self.next_seq += group.len() as u64;
                self.compare_roots();
                for c in group {
                    self.check_chain(c);
                }
            } else {
                for c in group {
                    self.push_checked(c);
                }
            }
        }
    }

    /// Whether `group` continues the log without a gap or a repeat, and no checkpoint to
    /// compare falls before its last leaf.
    fn in_order(&self, group: &[Checked]) -> bool {
        let (first, len) = (self.next_seq, group.len() as u64);
        group.iter().zip(first..).all(|(c, seq)| c.seq == seq)
            && self.targets.get(self.target_at).is_none_or(|t| t.0 >= self.tree.size() + len)
    }

    /// Checks one record whose hashes [`check`] worked out; records must come in stream
    /// order.
    pub fn push_checked(&mut self, c: &Checked) {
        let (seq, subject) = (c.seq, c.subject.as_str());
        self.events += 1;
        if seq < self.next_seq {
            self.finding(
                Class::Reorder,
                Some(seq),
                Some(subject),
                format!("sequence {seq} comes after {}", self.next_seq - 1),
            );
            return;
        }
        if seq > self.next_seq {
            let (from, to) = (self.next_seq, seq - 1);
            self.finding(
                Class::Gap,
                Some(from),
                None,
                if from == to {
                    format!("sequence {from} is missing")
                } else {
                    format!("sequences {from}..={to} are missing")
                },
            );
            self.tree_broken_at.get_or_insert(self.tree.size());
            // Keep leaf positions aligned with sequences.
            for _ in from..=to {
                self.tree.push([0; 32]);
            }
        }
        self.next_seq = seq + 1;
        let leaf = c.claims.as_ref().map_or([0; 32], |c| c.hash);
        self.tree.push(leaf);
        self.compare_roots();
        self.check_chain(c);
    }

    /// The checks of one record after its place in the log: its claims, its event id and
    /// its link to the previous event of its aggregate.
    fn check_chain(&mut self, c: &Checked) {
        let Checked { seq, ref subject, key, genesis: first_genesis, ref claims, content_ok, payload_differs } = *c;
        let subject = subject.as_str();
        let claims = match claims {
            Ok(c) => *c,
            Err(why) => {
                self.finding(Class::HeaderEdit, Some(seq), Some(subject), why.clone());
                return;
            }
        };
        if let Some(first) = self.event_ids.insert(claims.event_id, seq) {
            self.finding(
                Class::ForgedInsertion,
                Some(seq),
                Some(subject),
                format!("event id {} already appeared at sequence {first}", format_uuid(claims.event_id)),
            );
            return;
        }
        let (origin, known) = (&self.origin, &mut self.known);
        let agg: &mut Aggregate = self.aggregates.entry(key, || {
            let g = first_genesis.or_else(|| genesis(origin, subject).ok()).unwrap_or([0; 32]);
            known.insert(&g);
            g
        });
        let next_version = claims.version == agg.version + 1;
        let link_ok = next_version && claims.prev == agg.hash;
        let verdict = match (content_ok, link_ok) {
            // The payload is the one hashed, but the hash written beside it (the bundle's
            // `payload_sha256`, or `Audit-Payload-Sha256`) is not its hash: an edited record.
            (true, true) if payload_differs => Some((
                Class::PayloadEdit,
                "the payload is the one hashed, but the payload hash written beside it is not its hash".into(),
            )),
            (true, true) => None,
            (true, false) if !next_version => Some((
                Class::Reorder,
                format!("version {} follows version {} of its aggregate", claims.version, agg.version),
            )),
            (true, false) => Some((
                Class::ForgedInsertion,
                format!("version {} does not chain to the aggregate's version {}", claims.version, agg.version),
            )),
            (false, true) if payload_differs => {
                Some((Class::PayloadEdit, "the payload differs from the one hashed".into()))
            }
            (false, true) => Some((Class::HeaderEdit, "a hashed header differs from the one hashed".into())),
            (false, false) if !self.known.contains(&claims.prev) => Some((
                Class::ForgedInsertion,
                "Audit-Prev is no hash of this log and Audit-Hash does not recompute: an event from another log, \
                 or forged"
                    .into(),
            )),
            (false, false) => Some((Class::HeaderEdit, "the audit headers do not recompute".into())),
        };
        // Continue from the event's own claims (one edit, one finding), but never move an
        // aggregate backwards.
        if claims.version > agg.version {
            agg.version = claims.version;
            agg.hash = claims.hash;
        }
        self.known.insert(&claims.hash);
        if let Some((class, detail)) = verdict {
            self.finding(class, Some(seq), Some(subject), detail);
        }
    }

    fn compare_roots(&mut self) {
        while let Some(&(size, root, what, index)) = self.targets.get(self.target_at) {
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
            let (class, detail) = if what == "trusted" {
                (Class::Fork, format!("the log's first {size} events do not match the trusted checkpoint"))
            } else {
                (
                    Class::ForgedInsertion,
                    format!(
                        "the events up to sequence {size} do not match signed checkpoint #{index}: changed after \
                         sequence {} with every later hash recomputed",
                        self.last_good_size
                    ),
                )
            };
            self.finding(class, Some(self.last_good_size + 1), None, detail);
            self.tree_broken_at = Some(self.last_good_size);
        }
    }

    /// Ends the run: truncation against the checkpoints, the unsealed tail, the report.
    pub fn finish(mut self) -> Report {
        let len = self.next_seq - 1;
        while let Some(&(size, _, what, index)) = self.targets.get(self.target_at) {
            self.target_at += 1;
            if size > len {
                let source = if what == "trusted" {
                    "the trusted checkpoint".to_owned()
                } else {
                    format!("checkpoint #{index}")
                };
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
        if self.event_ids.full {
            self.warnings.push(format!("event ids after the first {} events were not checked for repeats", u32::MAX));
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

/// The root hash as it appears in checkpoints.
pub fn root_b64(root: &Hash) -> String {
    hash_to_b64(root)
}
