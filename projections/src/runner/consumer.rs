//! Whether this runner may consume (the lease), and its durable consumer, recreated to
//! deliver from the checkpoint.

use super::*;

impl Runner {
    /// Whether this runner may consume: no lease, or the lease held (renewed every third
    /// of its time to live; a standby asks at that pace too).
    pub(super) async fn active(&mut self) -> bool {
        let name = self.projection.name();
        let Some((lease, held, checked)) = &mut self.lease else { return true };
        if *held && checked.elapsed() < lease.ttl() / 3 {
            return true;
        }
        let now = match lease.acquire().await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(projection = name, error = %e, "the projection lease cannot be read");
                false
            }
        };
        if now != *held {
            if now {
                tracing::info!(projection = name, "took the projection lease: this instance runs it");
            } else {
                tracing::info!(projection = name, "another instance holds the projection lease: standing by");
            }
        }
        *held = now;
        *checked = Instant::now();
        metrics::gauge!("covenant_projection_active", "projection" => name).set(if now { 1.0 } else { 0.0 });
        now
    }

    /// Reads the checkpoint (waiting out a PostgreSQL outage) and recreates the durable
    /// consumer to deliver from the next sequence.
    pub(super) async fn start_consumer(&mut self) -> Result<PullConsumer, RunnerError> {
        let mut backoff = Duration::from_millis(100);
        let cp = loop {
            match checkpoint::get(&self.pool, self.name()).await {
                Ok(cp) => break cp,
                Err(e) => {
                    tracing::warn!(projection = self.name(), error = %e, "read models unavailable; retrying");
                    if self.pause(backoff).await {
                        return Err(RunnerError::Shutdown);
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        let stream = self.js.get_stream(&self.cfg.stream).await.map_err(|e| RunnerError::Nats(e.to_string()))?;
        let name = consumer_name(self.name());
        let _ = stream.delete_consumer(&name).await;
        let deliver_policy =
            if cp == 0 { DeliverPolicy::All } else { DeliverPolicy::ByStartSequence { start_sequence: cp + 1 } };
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(name.clone()),
                description: Some(format!("Covenant projection {}", self.name())),
                deliver_policy,
                ack_policy: AckPolicy::All,
                ack_wait: Duration::from_secs(60),
                max_ack_pending: 100_000,
                ..Default::default()
            })
            .await
            .map_err(|e| RunnerError::Nats(format!("creating consumer {name}: {e}")))?;
        tracing::info!(projection = self.name(), checkpoint = cp, "projection consumer ready");
        Ok(consumer)
    }
}
