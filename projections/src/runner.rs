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

use crate::checkpoint;
use crate::event::ProjectedEvent;
use crate::projection::{Applied, Projection, Tables};

/// How long a batch waits for more buffered messages after its first one.
const LINGER: Duration = Duration::from_millis(2);

/// The durable consumer name of a projection.
pub fn consumer_name(projection: &str) -> String {
    format!("projection-{projection}")
}

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
}

/// Default most events per projection transaction.
pub const DEFAULT_BATCH: usize = 5000;

/// Settings of a runner.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Event stream name.
    pub stream: String,
    /// Most messages per batch (and per transaction). 5,000 by default: fewer commits
    /// (PostgreSQL fsyncs each) while a lone event still goes at once; measured with
    /// `covenant bench projections --batch N`.
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
        Self { js, pool, projection, cfg, messages: None, shutdown }
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

    /// Reads the checkpoint (waiting out a PostgreSQL outage) and recreates the durable
    /// consumer to deliver from the next sequence.
    async fn start_consumer(&mut self) -> Result<PullConsumer, RunnerError> {
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

    /// Fetches and applies one batch (the step that tests drive one at a time).
    ///
    /// # Errors
    /// [`RunnerError::Shutdown`] when asked to stop mid-batch (nothing acknowledged);
    /// [`RunnerError::Nats`] when the consumer cannot be (re)created.
    pub async fn try_process_next(&mut self) -> Result<Outcome, RunnerError> {
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
        // Linger briefly for the rest of a backlog: a lone event waits at most LINGER.
        let mut messages = vec![first];
        let until = tokio::time::Instant::now() + LINGER;
        while messages.len() < self.cfg.batch_size {
            let next = match stream.next().now_or_never() {
                Some(m) => m,
                None => match tokio::time::timeout_at(until, stream.next()).await {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            match next {
                Some(Ok(m)) => messages.push(m),
                _ => break,
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
        let Some(last) = messages.last() else { return Ok(Outcome::Idle) };
        let last_seq = self.apply_with_retry(&events).await?;
        // AckPolicy::All: acknowledging the last message acknowledges the batch. A lost ack
        // only means a redelivery, which the checkpoint skips.
        if let Err(e) = last.ack_with(AckKind::Ack).await {
            tracing::debug!(projection = self.name(), error = %e, "ack not sent");
        }
        Ok(Outcome::Applied { events: messages.len(), last_seq })
    }

    /// Applies `events` in one transaction with the checkpoint, retrying with back-off
    /// while PostgreSQL fails. Returns the checkpoint after the batch.
    async fn apply_with_retry(&mut self, events: &[ProjectedEvent]) -> Result<u64, RunnerError> {
        let mut backoff = Duration::from_millis(100);
        let span = process_span(self.name(), events);
        loop {
            let started = Instant::now();
            let applied = apply_batch(&self.pool, self.projection.as_ref(), Tables::LIVE, events, span.as_ref()).await;
            match applied {
                Ok((cp, applied)) => {
                    self.record(&applied, events.len(), started.elapsed());
                    return Ok(cp);
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
        tracing::info!(projection = self.name(), "projection stopped");
        Ok(())
    }
}

/// Most producer spans a batch's process span links to.
const MAX_LINKS: usize = 128;

/// The consumer span of a batch (`process <prefix>.<aggregate>`, or `process <prefix>` for
/// a batch of several aggregate types), linked to the producer spans whose W3C context
/// the events carry: the context that holds it. Made only for a batch that carries a
/// sampled trace context (requests start traces), with the OpenTelemetry API directly (a
/// no-op until a tracer provider is installed).
fn process_span(projection: &'static str, events: &[ProjectedEvent]) -> Option<opentelemetry::Context> {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{Link, SpanBuilder, SpanKind};
    if !events.iter().any(|e| e.traceparent.as_deref().is_some_and(|t| t.ends_with("-01"))) {
        return None;
    }
    let first = events.first().map_or("", |e| e.subject.as_str());
    let prefix = first.rsplitn(3, '.').nth(2).unwrap_or_default();
    let aggregate = events.first().map_or("", |e| e.aggregate.as_str());
    let destination = if events.iter().all(|e| e.aggregate == aggregate) {
        format!("{prefix}.{aggregate}")
    } else {
        prefix.to_owned()
    };
    let links: Vec<Link> = events
        .iter()
        .filter_map(|e| e.traceparent.as_deref().and_then(link_context))
        .take(MAX_LINKS)
        .map(Link::with_context)
        .collect();
    let builder = SpanBuilder::from_name(format!("process {destination}"))
        .with_kind(SpanKind::Consumer)
        .with_attributes([
            KeyValue::new("messaging.system", "nats"),
            KeyValue::new("messaging.destination.name", destination),
            KeyValue::new("messaging.batch.message_count", events.len() as i64),
            KeyValue::new("projection", projection),
        ])
        .with_links(links);
    Some(start(&opentelemetry::Context::new(), builder))
}

/// Starts the span `builder` describes under `parent` (an empty context: a root): the
/// context that holds it (it ends when that context is dropped). The commands crate's
/// `trace::start`, which this crate may not depend on, does the same.
fn start(parent: &opentelemetry::Context, builder: opentelemetry::trace::SpanBuilder) -> opentelemetry::Context {
    use opentelemetry::trace::TraceContextExt as _;
    let tracer = opentelemetry::global::tracer("covenant");
    parent.with_span(builder.start_with_context(&tracer, parent))
}

/// The span context a W3C `traceparent` names (`version-traceid-spanid-flags`, in lower-case
/// hex; a later version may append fields), if it is well formed and valid. Read here
/// rather than through the propagator, which wants a map per event.
fn link_context(traceparent: &str) -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let mut parts = traceparent.split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8());
    let sc = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        flags,
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

/// One transaction: lock the checkpoint, apply the events above it, record skipped
/// events, advance the checkpoint. Returns the new checkpoint and what was applied. With
/// `trace` (the context holding the batch's consumer span), the transaction is a client
/// span under it.
///
/// # Errors
/// Database errors (nothing is then committed).
pub async fn apply_batch(
    pool: &PgPool,
    projection: &dyn Projection,
    tables: Tables,
    events: &[ProjectedEvent],
    trace: Option<&opentelemetry::Context>,
) -> Result<(u64, Applied), sqlx::Error> {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanBuilder, SpanKind};
    // The transaction's client span, a child of the batch's consumer span; it ends with the
    // transaction.
    let _span = trace.map(|parent| {
        let builder = SpanBuilder::from_name(format!("{} transaction", projection.name()))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.operation.name", "projection_batch"),
                KeyValue::new("db.collection.name", projection.name()),
            ]);
        start(parent, builder)
    });
    let started = Instant::now();
    let result = apply_batch_tx(pool, projection, tables, events).await;
    metrics::histogram!("db_client_operation_duration_seconds", "operation" => "projection_batch", "projection" => projection.name())
        .record(started.elapsed().as_secs_f64());
    result
}

async fn apply_batch_tx(
    pool: &PgPool,
    projection: &dyn Projection,
    tables: Tables,
    events: &[ProjectedEvent],
) -> Result<(u64, Applied), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let name = tables.checkpoint(projection.name());
    let cp = checkpoint::lock(&mut tx, &name).await?;
    let fresh: Vec<ProjectedEvent> = events.iter().filter(|e| e.seq > cp).cloned().collect();
    if events.len() > fresh.len() {
        metrics::counter!("covenant_projection_redeliveries_total", "projection" => projection.name())
            .increment((events.len() - fresh.len()) as u64);
    }
    let Some(last) = fresh.last().map(|e| e.seq) else {
        tx.commit().await?;
        return Ok((cp, Applied::default()));
    };
    let applied = projection.apply(&mut tx, tables, &fresh).await?;
    for s in &applied.skipped {
        sqlx::query("INSERT INTO projection_skipped_events (projection, seq, subject, event_type, reason) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
            .bind(projection.name())
            .bind(s.seq as i64)
            .bind(&s.subject)
            .bind(&s.event_type)
            .bind(&s.reason)
            .execute(&mut *tx)
            .await?;
    }
    checkpoint::advance(&mut tx, &name, last).await?;
    tx.commit().await?;
    Ok((last, applied))
}

#[cfg(test)]
mod tests {
    use super::link_context;

    #[test]
    fn a_traceparent_names_its_span_context() {
        let sc = link_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid");
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        let unsampled = link_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").expect("valid");
        assert!(!unsampled.is_sampled());
        // A later version may carry more fields.
        assert!(link_context("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
    }

    #[test]
    fn malformed_or_invalid_traceparents_name_nothing() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(link_context(bad).is_none(), "{bad:?}");
        }
    }
}
