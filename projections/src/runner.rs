//! The projection runner: one durable pull consumer per projection (`projection-<name>`),
//! each fetched batch applied to PostgreSQL in one transaction that also advances
//! `projection_checkpoints`, then acknowledged. Events at or below the checkpoint are
//! skipped, so a redelivery never applies twice.
//!
//! PostgreSQL is the checkpoint's home: at start the consumer is (re)created to deliver
//! from `checkpoint + 1`, so a crash between commit and ack, or an ack lost in flight,
//! costs a redelivery at most. While PostgreSQL is unreachable the batch is kept and
//! retried with back-off; nothing is acknowledged that was not committed. One runner per
//! projection is active at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use futures::FutureExt;
use futures::StreamExt;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::apply::apply_batch;
use crate::checkpoint;
use crate::event::ProjectedEvent;
use crate::projection::{Applied, Gap, Projection, Tables, consumer_name};
use crate::trace::process_span;

mod consumer;

/// Why the runner stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// JetStream refused or could not be reached for consumer management.
    #[error("JetStream: {0}")]
    Nats(String),
    /// Shutdown was requested.
    #[error("shutting down")]
    Shutdown,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A batch was applied (or skipped as already applied) up to `last_seq`.
    Applied {
        /// Messages in the batch.
        events: usize,
        /// The checkpoint after it.
        last_seq: u64,
    },
    /// Nothing to do within the fetch wait.
    Idle,
    /// Another instance holds this projection's lease; this runner waits.
    Standby,
    /// Delivery skipped `missing`: the run before it was applied up to `checkpoint` and
    /// the consumer will deliver again from there.
    Gap {
        /// The checkpoint after the step.
        checkpoint: u64,
        /// The first sequence that did not arrive.
        missing: u64,
    },
}

/// How many times a hole is fetched again before the runner reports it halted (it goes
/// on trying, with back-off, and never moves past it).
const GAP_REFETCHES: u32 = 3;

/// Default most events per projection transaction.
pub const DEFAULT_BATCH: usize = 5000;

/// Settings of a runner.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Event stream name.
    pub stream: String,
    /// Most messages per batch (and per transaction). 5,000 by default: fewer commits
    /// (PostgreSQL fsyncs each) while a lone event still goes at once; measured with
    /// `covenant-bench projections --batch N`.
    pub batch_size: usize,
    /// How long one fetch waits for messages.
    pub fetch_wait: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self { stream: "COVENANT_EVENTS".into(), batch_size: DEFAULT_BATCH, fetch_wait: Duration::from_millis(500) }
    }
}

/// Runs one projection.
pub struct Runner {
    js: jetstream::Context,
    pool: PgPool,
    projection: Arc<dyn Projection>,
    cfg: RunnerConfig,
    messages: Option<pull::Stream>,
    shutdown: watch::Receiver<bool>,
    /// The hole being re-fetched, and how many times it was.
    gap: Option<(u64, u32)>,
    /// With several instances: the lease that makes this runner the projection's one
    /// active runner, whether it holds it, and when it last renewed it.
    lease: Option<(crate::lease::Lease, bool, Instant)>,
    /// Users' keys, to open personal fields.
    keys: covenant_personal::KeyStore,
}

impl Runner {
    /// A runner that stops when `shutdown` turns true.
    pub fn new(
        js: jetstream::Context,
        pool: PgPool,
        projection: Arc<dyn Projection>,
        cfg: RunnerConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let keys = covenant_personal::KeyStore::attach(js.clone(), &cfg.stream);
        Self { js, pool, projection, cfg, messages: None, shutdown, gap: None, lease: None, keys }
    }

    /// Runs only while holding `lease` (several instances: one active runner per
    /// projection; the others stand by and take over within the lease's time to live).
    #[must_use]
    pub fn with_lease(mut self, lease: crate::lease::Lease) -> Self {
        self.lease = Some((lease, false, Instant::now()));
        self
    }

    fn name(&self) -> &'static str {
        self.projection.name()
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleeps `d`, or returns early (true) when shutdown is requested.
    async fn pause(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => self.stopping(),
            _ = self.shutdown.changed() => true,
        }
    }

    /// Fetches and applies one batch (the step that tests drive one at a time).
    ///
    /// # Errors
    /// [`RunnerError::Shutdown`] when asked to stop mid-batch (nothing acknowledged);
    /// [`RunnerError::Nats`] when the consumer cannot be (re)created.
    pub async fn try_process_next(&mut self) -> Result<Outcome, RunnerError> {
        if !self.active().await {
            // Standing by: no consumer of ours, so the active runner's is never touched.
            self.messages = None;
            let wait = self.lease.as_ref().map_or(self.cfg.fetch_wait, |(l, _, _)| l.ttl() / 3);
            if self.pause(wait).await {
                return Err(RunnerError::Shutdown);
            }
            return Ok(Outcome::Standby);
        }
        let mut stream = match self.messages.take() {
            Some(s) => s,
            None => {
                let consumer = self.start_consumer().await?;
                consumer
                    .stream()
                    .max_messages_per_batch(self.cfg.batch_size)
                    .messages()
                    .await
                    .map_err(|e| RunnerError::Nats(format!("consuming: {e}")))?
            }
        };
        // Wait for the first message, then take whatever else is already buffered, so a
        // lone event is applied at once and a backlog goes in full batches.
        let first = tokio::select! {
            m = tokio::time::timeout(self.cfg.fetch_wait, stream.next()) => m,
            _ = self.shutdown.changed() => return Err(RunnerError::Shutdown),
        };
        let first = match first {
            Err(_) => {
                self.messages = Some(stream);
                return Ok(Outcome::Idle);
            }
            Ok(Some(Ok(m))) => m,
            Ok(other) => {
                let why = other
                    .map_or("consumer stream ended".to_owned(), |e| e.err().map(|e| e.to_string()).unwrap_or_default());
                tracing::warn!(projection = self.name(), error = %why, "consumer stream failed; recreating the consumer");
                self.pause(Duration::from_millis(200)).await;
                return Ok(Outcome::Idle);
            }
        };
        // The write that produced this event is answered by a task woken with it (by the
        // same read from the NATS socket): let it run first, so the projection's work does
        // not delay the writer's answer.
        tokio::task::yield_now().await;
        // Take what is already buffered, without waiting for more: a lone event is applied
        // at once (a mutation reading its entity back waits for it), and what arrives while
        // a batch is applied makes the next one (the consumer keeps pulling meanwhile).
        let mut messages = vec![first];
        while messages.len() < self.cfg.batch_size {
            let Some(next) = stream.next().now_or_never() else { break };
            match next {
                Some(Ok(m)) => messages.push(m),
                Some(Err(e)) => {
                    // The batch ends here; a lasting failure shows again at the next poll.
                    tracing::warn!(projection = self.name(), error = %e, "message stream error; the batch ends before it");
                    break;
                }
                None => break,
            }
        }
        self.messages = Some(stream);
        let mut events = Vec::with_capacity(messages.len());
        for m in &messages {
            match ProjectedEvent::from_message(m) {
                Ok(e) => events.push(e),
                Err(reason) => {
                    tracing::warn!(projection = self.name(), %reason, "message without JetStream metadata ignored")
                }
            }
        }
        if messages.is_empty() {
            return Ok(Outcome::Idle);
        }
        self.open_personal(&mut events).await?;
        let (last_seq, gap) = self.apply_with_retry(&events).await?;
        // AckPolicy::All: acknowledging a message acknowledges every one before it, so the
        // ack goes to the last message the checkpoint covers, never past a hole. A lost ack
        // only means a redelivery, which the checkpoint skips.
        let covered = messages.iter().rev().find(|m| m.info().is_ok_and(|i| i.stream_sequence <= last_seq));
        if let Some(m) = covered
            && let Err(e) = m.ack_with(AckKind::Ack).await
        {
            tracing::debug!(projection = self.name(), error = %e, "ack not sent");
        }
        match gap {
            None => {
                if self.gap.take().is_some() {
                    tracing::info!(
                        projection = self.name(),
                        checkpoint = last_seq,
                        "the hole was filled by a re-fetch"
                    );
                }
                metrics::gauge!("covenant_projection_gap_sequence", "projection" => self.name()).set(0.0);
                Ok(Outcome::Applied { events: messages.len(), last_seq })
            }
            Some(gap) => self.on_gap(gap, last_seq).await,
        }
    }

    /// A hole in the delivered sequences: what came before it is applied; the consumer is
    /// recreated from the checkpoint so the missing messages are fetched again. A hole that
    /// re-fetching does not fill halts the projection where it is (it never moves past),
    /// visible as `covenant_projection_gap_sequence` and the `ProjectionSequenceGap` alert.
    async fn on_gap(&mut self, gap: Gap, checkpoint: u64) -> Result<Outcome, RunnerError> {
        let name = self.name();
        self.messages = None;
        metrics::counter!("covenant_projection_sequence_gaps_total", "projection" => name).increment(1);
        metrics::gauge!("covenant_projection_gap_sequence", "projection" => name).set(gap.missing as f64);
        let tries = match self.gap {
            Some((missing, n)) if missing == gap.missing => n + 1,
            _ => 1,
        };
        self.gap = Some((gap.missing, tries));
        if tries <= GAP_REFETCHES {
            tracing::warn!(
                projection = name,
                checkpoint,
                missing = gap.missing,
                next = gap.next,
                attempt = tries,
                "sequences were not delivered; fetching them again"
            );
        } else {
            let in_stream = match self.js.get_stream(&self.cfg.stream).await {
                Ok(s) => match s.get_raw_message(gap.missing).await {
                    Ok(_) => "it is in the stream",
                    Err(_) => "the stream does not return it",
                },
                Err(_) => "the stream cannot be read",
            };
            tracing::error!(
                projection = name,
                checkpoint,
                missing = gap.missing,
                next = gap.next,
                attempts = tries,
                in_stream,
                "projection halted at a hole in the stream: it will not move past it"
            );
            let wait = Duration::from_secs(1 << (tries - GAP_REFETCHES).min(5));
            if self.pause(wait).await {
                return Err(RunnerError::Shutdown);
            }
        }
        Ok(Outcome::Gap { checkpoint, missing: gap.missing })
    }

    /// Applies `events` in one transaction with the checkpoint, retrying with back-off
    /// while PostgreSQL fails. Returns the checkpoint after the batch.
    async fn apply_with_retry(&mut self, events: &[ProjectedEvent]) -> Result<(u64, Option<Gap>), RunnerError> {
        let mut backoff = Duration::from_millis(100);
        let span = process_span(self.name(), events);
        loop {
            let started = Instant::now();
            let applied = apply_batch(&self.pool, self.projection.as_ref(), Tables::LIVE, events, Some(&span)).await;
            match applied {
                Ok((cp, applied)) => {
                    self.record(&applied, events.len(), started.elapsed());
                    return Ok((cp, applied.gap));
                }
                Err(e) => {
                    tracing::warn!(projection = self.name(), error = %e, retry_in = ?backoff, "batch not applied; PostgreSQL unavailable?");
                    if self.pause(backoff).await {
                        return Err(RunnerError::Shutdown);
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Opens the batch's personal fields, retrying with back-off while the key store does
    /// not answer (the batch waits; it is never applied without its keys).
    async fn open_personal(&mut self, events: &mut [ProjectedEvent]) -> Result<(), RunnerError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match crate::personal::open_events(&self.keys, events, self.projection.opens_personal_fields()).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let error = crate::personal::describe(&e);
                    tracing::warn!(projection = self.name(), %error, retry_in = ?backoff, "batch waits for the personal-data key store");
                    if self.pause(backoff).await {
                        return Err(RunnerError::Shutdown);
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn record(&self, applied: &Applied, n: usize, took: Duration) {
        let name = self.name();
        metrics::counter!("covenant_projection_events_total", "projection" => name).increment(n as u64);
        metrics::histogram!("covenant_projection_batch_duration_seconds", "projection" => name)
            .record(took.as_secs_f64());
        for s in &applied.skipped {
            tracing::error!(projection = name, seq = s.seq, subject = %s.subject, event_type = %s.event_type, reason = %s.reason, "event skipped");
        }
        metrics::counter!("covenant_projection_skipped_events_total", "projection" => name)
            .increment(applied.skipped.len() as u64);
        if let Some(f) = applied.fund {
            crate::monitor::set_business_gauges(&f);
            metrics::counter!("covenant_projects_created_total").increment(applied.projects_created);
        }
    }

    /// Runs until shutdown: steps batch after batch; on a JetStream error, waits and
    /// recreates the consumer.
    ///
    /// # Errors
    /// None in practice; returns `Ok` on shutdown.
    pub async fn run(mut self) -> Result<(), RunnerError> {
        while !self.stopping() {
            match self.try_process_next().await {
                Ok(_) => {}
                Err(RunnerError::Shutdown) => break,
                Err(e) => {
                    tracing::warn!(projection = self.name(), error = %e, "projection paused; retrying");
                    self.messages = None;
                    if self.pause(Duration::from_secs(1)).await {
                        break;
                    }
                }
            }
        }
        if let Some((lease, true, _)) = &self.lease {
            lease.release().await;
        }
        tracing::info!(projection = self.name(), "projection stopped");
        Ok(())
    }
}
