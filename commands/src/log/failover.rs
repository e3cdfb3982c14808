//! Retrying leader requests while a replicated stream elects a new leader, and settling an
//! append whose acknowledgement was lost.

use std::time::Duration;

use async_nats::connection::State;

use super::EventLog;
use crate::error::LogError;

/// Retries of one leader request through a stream leader's failover: each attempt waits
/// longer (0.75 s, 1.5 s, … up to the request timeout, so a new leader is noticed within a
/// fraction of a second of its election), pauses double from 50 ms to 500 ms, and all of it
/// ends after [`crate::LogConfig::failover_wait`]. A connection that does not come back within
/// 2 s ends it at once: a NATS outage answers UNAVAILABLE quickly, as before.
pub(super) struct Failover<'a> {
    log: &'a EventLog,
    deadline: tokio::time::Instant,
    attempt: u32,
}

impl<'a> Failover<'a> {
    pub(super) fn new(log: &'a EventLog) -> Self {
        Self { log, deadline: tokio::time::Instant::now() + log.cfg.failover_wait, attempt: 1 }
    }

    pub(super) fn attempt_timeout(&self) -> Duration {
        (Duration::from_millis(750) * self.attempt).min(self.log.cfg.request_timeout)
    }

    /// Waits before the next attempt; `false` when there is to be none.
    pub(super) async fn pause(&mut self) -> bool {
        let reconnect_by = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.log.client.connection_state() != State::Connected {
            if tokio::time::Instant::now() >= reconnect_by.min(self.deadline) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pause = (Duration::from_millis(50) * 2u32.pow(self.attempt.min(4))).min(Duration::from_millis(500));
        if tokio::time::Instant::now() + pause >= self.deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        self.attempt += 1;
        metrics::counter!("covenant_leader_retries_total").increment(1);
        true
    }
}

impl EventLog {
    /// After a lost ack: if the subject's last message is ours, the append happened (a
    /// later write on top of it would have needed our tip). Otherwise the outcome stays
    /// unknown: the client may still flush a buffered publish after a reconnect.
    pub(super) async fn confirm_lost_ack(
        &self,
        subject: &str,
        last_event_id: &str,
        reason: String,
        cause: Option<crate::error::Cause>,
    ) -> Result<u64, LogError> {
        let deadline = tokio::time::Instant::now() + self.cfg.request_timeout * 2;
        loop {
            match self.last_event(subject).await {
                Ok(Some(e)) if e.event_id == last_event_id => return Ok(e.seq),
                Ok(_) => return Err(LogError::Unavailable { reason, outcome_unknown: true, cause }),
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(e) => {
                    // The read-back's failure is the latest cause; the first is in the reason.
                    let reason = match &cause {
                        Some(c) => format!("{reason}: {c}"),
                        None => reason,
                    };
                    let cause: crate::error::Cause = std::sync::Arc::new(e);
                    return Err(LogError::Unavailable {
                        reason: format!("{reason}; then reading {subject} back"),
                        outcome_unknown: true,
                        cause: Some(cause),
                    });
                }
            }
        }
    }
}
