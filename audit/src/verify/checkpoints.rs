//! The checkpoints a log comes with, and the one an auditor trusts: signatures and key
//! handovers, sizes and roots (the Merkle comparisons happen as events arrive).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Class, Verifier};
use crate::hash::Hash;
use crate::merkle::CompactTree;
use crate::note::{Checkpoint, NoteVerifier, SignedNote};

/// A public key the auditor trusts to sign checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryKey {
    /// The C2SP verifier key, `<name>+<hex id>+<base64 key>`.
    pub vkey: String,
    /// `active` or `retired` (informational: authority follows the handovers).
    #[serde(default)]
    pub status: String,
}

/// The key registry file (`keys.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRegistry {
    /// The log these keys seal.
    #[serde(default)]
    pub origin: String,
    /// Every sealer key, oldest first.
    pub keys: Vec<RegistryKey>,
}

/// A checkpoint as stored, with where it was read from.
#[derive(Debug, Clone)]
pub struct CheckpointText {
    /// Position in the checkpoint log (1-based), for messages.
    pub index: u64,
    /// The signed note.
    pub text: String,
}

/// A checkpoint of the log as read: where, its size and root, and whether its signature
/// is valid and authorised.
pub(super) struct ParsedCheckpoint {
    pub(super) index: u64,
    pub(super) size: u64,
    pub(super) root: Hash,
    pub(super) signed: bool,
}

/// What the tree is compared with when it reaches `size` leaves.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target {
    pub(super) size: u64,
    pub(super) root: Hash,
    pub(super) source: Source,
}

/// Where a [`Target`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The log's checkpoint at this position in the checkpoint log.
    Checkpoint(u64),
    /// The auditor's trusted checkpoint.
    Trusted,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Checkpoint(index) => write!(f, "checkpoint #{index}"),
            Self::Trusted => f.write_str("the trusted checkpoint"),
        }
    }
}

impl Verifier {
    pub(super) fn read_checkpoints(&mut self, checkpoints: &[CheckpointText], keys: &[NoteVerifier]) {
        // The key that may sign now: the first checkpoint's signer, then whoever a
        // handover (a checkpoint signed by the current key and a new one) introduces.
        let mut current: Option<[u8; 4]> = None;
        let mut retired: HashMap<[u8; 4], u64> = HashMap::new();
        let mut roots: HashMap<u64, (Hash, u64)> = HashMap::new();
        let mut max_size = 0u64;
        for cp in checkpoints {
            let Ok(note) = SignedNote::parse(&cp.text) else {
                self.finding(Class::BadSignature, None, None, format!("checkpoint #{} is not a signed note", cp.index));
                continue;
            };
            let Ok(body) = Checkpoint::parse(&note.body) else {
                self.finding(Class::BadSignature, None, None, format!("checkpoint #{} has a malformed body", cp.index));
                continue;
            };
            if body.origin != self.origin {
                self.finding(
                    Class::ForgedInsertion,
                    None,
                    None,
                    format!("checkpoint #{} is for log `{}`, not `{}`", cp.index, body.origin, self.origin),
                );
                continue;
            }
            let mut valid = Vec::new();
            let mut forged = Vec::new();
            let mut unknown = Vec::new();
            for sig in &note.signatures {
                match keys.iter().find(|k| k.id() == sig.key_id && k.name() == sig.name) {
                    Some(k) if k.verify(&note.body, sig) => valid.push(sig.key_id),
                    Some(_) => forged.push(sig.name.clone()),
                    None => unknown.push(sig.name.clone()),
                }
            }
            let (size, root) = (body.size, body.root);
            let authorised = if !forged.is_empty() {
                self.finding(
                    Class::BadSignature,
                    Some(size),
                    None,
                    format!(
                        "checkpoint #{} (size {size}): the signature of {} does not verify",
                        cp.index,
                        forged.join(", ")
                    ),
                );
                false
            } else if valid.is_empty() {
                let class = if unknown.is_empty() { Class::BadSignature } else { Class::UnknownKey };
                self.finding(
                    class,
                    Some(size),
                    None,
                    format!(
                        "checkpoint #{} (size {size}) is signed by no registered key ({})",
                        cp.index,
                        unknown.join(", ")
                    ),
                );
                false
            } else {
                match current {
                    None => {
                        // The first checkpoint introduces its signer (the last one, if it
                        // is already a handover).
                        current = valid.last().copied();
                        true
                    }
                    Some(cur) if valid.contains(&cur) => {
                        if let Some(next) = valid.iter().find(|k| **k != cur) {
                            retired.insert(cur, size);
                            current = Some(*next);
                        }
                        true
                    }
                    Some(_) => {
                        let signer = valid[0];
                        let name = note.signatures.iter().find(|s| s.key_id == signer).map_or("?", |s| s.name.as_str());
                        let why = match retired.get(&signer) {
                            Some(at) => format!("key {name} was retired by the handover at size {at}"),
                            None => format!("key {name} was never introduced by a handover from the current key"),
                        };
                        self.finding(
                            Class::BadSignature,
                            Some(size),
                            None,
                            format!("checkpoint #{} (size {size}): {why}", cp.index),
                        );
                        false
                    }
                }
            };
            if authorised {
                if let Some((other, at)) = roots.get(&size)
                    && *other != root
                {
                    self.finding(
                        Class::Fork,
                        Some(size),
                        None,
                        format!("checkpoints #{at} and #{} both have size {size} but different roots", cp.index),
                    );
                }
                if size < max_size {
                    self.finding(
                        Class::Rollback,
                        Some(size),
                        None,
                        format!("checkpoint #{} has size {size}, below the earlier {max_size}", cp.index),
                    );
                }
                max_size = max_size.max(size);
                roots.entry(size).or_insert((root, cp.index));
            }
            self.checkpoints.push(ParsedCheckpoint { index: cp.index, size, root, signed: authorised });
        }
    }

    pub(super) fn read_trusted(&mut self, text: &str, keys: &[NoteVerifier]) {
        let parsed = SignedNote::parse(text).ok().and_then(|n| {
            let body = Checkpoint::parse(&n.body).ok().map(|c| (c.origin.to_owned(), c.size, c.root))?;
            let ok = n.signatures.iter().any(|s| keys.iter().any(|k| k.id() == s.key_id && k.verify(&n.body, s)));
            Some((body, ok))
        });
        match parsed {
            None => self.finding(
                Class::BadSignature,
                None,
                None,
                "the trusted checkpoint is not a signed checkpoint".into(),
            ),
            Some(((origin, ..), _)) if origin != self.origin => self.finding(
                Class::Fork,
                None,
                None,
                format!("the trusted checkpoint is for log `{origin}`, not `{}`", self.origin),
            ),
            Some((_, false)) => self.finding(
                Class::UnknownKey,
                None,
                None,
                "the trusted checkpoint is not signed by a registered key".into(),
            ),
            Some(((_, size, root), true)) => {
                let latest = self.checkpoints.iter().filter(|c| c.signed).map(|c| c.size).max().unwrap_or(0);
                if latest < size {
                    self.finding(
                        Class::Rollback,
                        Some(latest + 1),
                        None,
                        format!("the log's latest checkpoint has size {latest}, older than the trusted one ({size})"),
                    );
                }
                if let Some(c) = self.checkpoints.iter().find(|c| c.signed && c.size == size && c.root != root) {
                    self.finding(
                        Class::Fork,
                        Some(size),
                        None,
                        format!("checkpoint #{} has the trusted size {size} but another root", c.index),
                    );
                }
                self.trusted = Some((size, root));
            }
        }
    }

    /// The signed checkpoints and the trusted one, smallest first: the sizes at which the
    /// tree's root is compared. Those of size 0 are compared now.
    pub(super) fn set_targets(&mut self) {
        let mut targets: Vec<Target> = self
            .checkpoints
            .iter()
            .filter(|c| c.signed)
            .map(|c| Target { size: c.size, root: c.root, source: Source::Checkpoint(c.index) })
            .collect();
        if let Some((size, root)) = self.trusted {
            targets.push(Target { size, root, source: Source::Trusted });
        }
        targets.sort_by_key(|t| t.size);
        self.targets = targets;
        while let Some(&Target { size: 0, root, source }) = self.targets.get(self.target_at) {
            if root != CompactTree::new().root() {
                self.finding(Class::Fork, Some(0), None, format!("{source} of size 0 has a non-empty root"));
            }
            self.target_at += 1;
        }
    }
}
