//! What the verifier reports: findings, their classes, the verdict and its exit code.

use serde::Serialize;

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
    /// What kind of tampering (DESIGN section 5's classes).
    pub class: Class,
    /// The first stream sequence concerned, when there is one.
    pub sequence: Option<u64>,
    /// The subject concerned, when there is one.
    pub subject: Option<String>,
    /// What was found, in words, for the auditor (versions, sequences, checkpoint numbers).
    pub detail: String,
}

/// The verdict on a log: what was read, what is sealed, and every finding.
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
