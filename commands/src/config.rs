//! The event stream's configuration: what Covenant creates, and the checks it runs on a
//! stream that already exists (append-only guarantees that a config drift would break).

use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};

/// Seven years, the retention the audit trail promises.
pub const SEVEN_YEARS: Duration = Duration::from_secs(7 * 365 * 24 * 3600 + 2 * 24 * 3600);

/// Batches in flight per process when group commit is on (see [`LogConfig::group_commit`]):
/// nats-server stages each atomic batch on disk before its commit, so a few large batches
/// beat many small ones (measured with 64 commands in flight at sync always, see the
/// commands benchmark).
pub const DEFAULT_GROUP_COMMIT: usize = 2;

/// Where and how events are stored. Tests vary the names so each gets its own stream.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Stream name, `COVENANT_EVENTS` in production.
    pub stream: String,
    /// Subject prefix; subjects are `<prefix>.<aggregate>.<id>`.
    pub subject_prefix: String,
    /// JetStream replicas: 1 locally, 3 in a cluster.
    pub replicas: usize,
    /// Retention (`max_age`).
    pub max_age: Duration,
    /// Duplicate-detection window for `Nats-Msg-Id` (at least 2 minutes).
    pub duplicate_window: Duration,
    /// How long one publish or read may wait for the server.
    pub request_timeout: Duration,
    /// How long a command keeps retrying while the stream has no leader (a replicated
    /// stream's leader died and the survivors elect another: nats-server's followers wait
    /// 4–9 s before they campaign) before it answers UNAVAILABLE. Retried publishes carry
    /// the same `Nats-Msg-Id`, so a retry never stores an event twice.
    pub failover_wait: Duration,
    /// Group commit: how many atomic batches one process keeps in flight, each holding the
    /// appends (to different subjects) that queued while the others were being stored;
    /// 0 (the default) turns grouping off: every append is its own publish. It pays where
    /// the server fsyncs every ack (`sync_interval: always`): one fsync per batch instead
    /// of one per event. Elsewhere it costs, since nats-server stages each batch on disk.
    /// The server accepts 50 batches in flight per stream, shared by every instance.
    pub group_commit: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            stream: "COVENANT_EVENTS".into(),
            subject_prefix: "covenant.events".into(),
            replicas: 1,
            max_age: SEVEN_YEARS,
            duplicate_window: Duration::from_secs(120),
            request_timeout: Duration::from_secs(5),
            failover_wait: Duration::from_secs(15),
            group_commit: 0,
        }
    }
}

impl LogConfig {
    /// The audit origin, `covenant/<stream>`: every hash of this log starts with it.
    pub fn origin(&self) -> String {
        format!("covenant/{}", self.stream)
    }

    /// The subject of one aggregate instance.
    pub fn subject(&self, aggregate_type: &str, id: &str) -> String {
        format!("{}.{aggregate_type}.{id}", self.subject_prefix)
    }

    /// The stream configuration Covenant creates.
    pub fn stream_config(&self) -> Config {
        Config {
            name: self.stream.clone(),
            description: Some("Covenant event store and audit log (append-only)".into()),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::New,
            max_messages: -1,
            max_bytes: -1,
            max_messages_per_subject: -1,
            max_age: self.max_age,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            deny_delete: true,
            deny_purge: true,
            allow_rollup: false,
            allow_direct: true,
            allow_atomic_publish: true,
            ..Default::default()
        }
    }
}

/// One way an existing stream departs from what the audit trail relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The stream setting, as `nats stream info` names it.
    pub setting: &'static str,
    /// What was found and what is required.
    pub detail: String,
}

/// Compares an existing stream's config with `want`; an empty list means it is sound.
/// Replica count and direct get are checked too, since durability and reads depend on them.
pub fn check_stream_config(have: &Config, want: &LogConfig) -> Vec<ConfigProblem> {
    let mut p = Vec::new();
    let mut bad = |setting: &'static str, ok: bool, detail: String| {
        if !ok {
            p.push(ConfigProblem { setting, detail });
        }
    };
    let subject = format!("{}.>", want.subject_prefix);
    bad("subjects", have.subjects.contains(&subject), format!("{:?} does not include {subject}", have.subjects));
    bad("storage", have.storage == StorageType::File, format!("{:?}, must be file", have.storage));
    bad("deny_delete", have.deny_delete, "false, must be true".into());
    bad("deny_purge", have.deny_purge, "false, must be true".into());
    bad("allow_rollup_hdrs", !have.allow_rollup, "true, must be false".into());
    bad("allow_atomic", have.allow_atomic_publish, "false, must be true".into());
    bad("allow_msg_ttl", !have.allow_message_ttl, "true, must be false (messages could expire)".into());
    bad(
        "max_msgs_per_subject",
        have.max_messages_per_subject <= 0,
        format!("{}, must be unlimited", have.max_messages_per_subject),
    );
    bad("max_msgs", have.max_messages <= 0, format!("{}, must be unlimited", have.max_messages));
    bad("max_bytes", have.max_bytes <= 0, format!("{}, must be unlimited", have.max_bytes));
    bad("retention", have.retention == RetentionPolicy::Limits, format!("{:?}, must be limits", have.retention));
    bad(
        "max_age",
        have.max_age.is_zero() || have.max_age >= want.max_age,
        format!("{:?}, must be at least {:?}", have.max_age, want.max_age),
    );
    bad(
        "duplicate_window",
        have.duplicate_window >= Duration::from_secs(120),
        format!("{:?}, must be at least 2m", have.duplicate_window),
    );
    bad(
        "num_replicas",
        have.num_replicas == want.replicas,
        format!("{}, configured {}", have.num_replicas, want.replicas),
    );
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_created_config_passes_its_own_checks() {
        let cfg = LogConfig::default();
        assert_eq!(check_stream_config(&cfg.stream_config(), &cfg), vec![]);
    }

    #[test]
    fn each_drift_is_named() {
        let cfg = LogConfig::default();
        let mut s = cfg.stream_config();
        s.deny_delete = false;
        s.allow_rollup = true;
        s.max_messages_per_subject = 10;
        s.max_age = Duration::from_secs(60);
        let names: Vec<_> = check_stream_config(&s, &cfg).into_iter().map(|p| p.setting).collect();
        assert_eq!(names, ["deny_delete", "allow_rollup_hdrs", "max_msgs_per_subject", "max_age"]);
    }
}
