//! Retrying leader requests while a replicated stream elects a new leader.

use std::time::Duration;

use async_nats::connection::State;

use super::EventLog;

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
