//! The stream settings that keep the log append-only, and what is wrong with them.

use serde::{Deserialize, Serialize};

use super::{Class, Finding};

/// The stream settings that keep the log append-only, as the verifier checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
