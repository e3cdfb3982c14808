//! Shared test helpers: a nats-server per test, a uniquely named stream per log, and whole-
//! stream reads.

use std::time::Duration;

use covenant_commands::{CommandSide, EventLog, LogConfig, StoredEvent};
use covenant_ops::managed::nats::{NatsServer, SyncPolicy};

/// Starts a single-node nats-server on a free port with a temporary store.
pub async fn nats() -> NatsServer {
    NatsServer::start_temp(SyncPolicy::Default)
        .await
        .expect("nats-server >= 2.12 starts (run the README's test command to install it)")
}

/// A log configuration with a stream name and subject prefix of its own.
pub fn log_config() -> LogConfig {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    LogConfig {
        stream: format!("T_{}", tag.to_uppercase()),
        subject_prefix: format!("t{tag}.events"),
        request_timeout: Duration::from_secs(2),
        ..LogConfig::default()
    }
}

/// A NATS client that reconnects forever, quickly.
pub async fn client(url: &str) -> async_nats::Client {
    covenant_ops::connect::client(url).await.expect("connect to the test nats-server")
}

/// The command side on its own connection (its own cache: a separate "process").
pub async fn side(url: &str, cfg: &LogConfig) -> CommandSide {
    CommandSide::open(client(url).await, cfg.clone()).await.expect("open the command side")
}

/// Every event in the stream, in stream order.
pub async fn all_events(log: &EventLog) -> Vec<StoredEvent> {
    let last = log.last_sequence().await.expect("stream info");
    let mut out = Vec::new();
    log.scan(">", 1, last, |e| out.push(e)).await.expect("scan the stream");
    out
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually(timeout: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
