//! The domain-agnostic event log on JetStream: append to a subject with an expected tip
//! (writing the hash chain), read a subject, read the stream in order.
//!
//! Nothing else in Covenant writes to JetStream. There is no write lock: appends to
//! different subjects run concurrently over one connection, each guarded only by
//! `Nats-Expected-Last-Subject-Sequence` on its own subject.

use std::time::Duration;
use tracing::Instrument as _;

use async_nats::HeaderMap;
use async_nats::connection::State;
use async_nats::jetstream;
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::Stream;
use bytes::Bytes;

use crate::config::{LogConfig, check_stream_config};
use crate::error::LogError;
use crate::record::{ChainTip, NewEvent, chain_headers};

mod failover;
mod group;
mod publish;
mod read;

use failover::Failover;
use group::{Group, Turn};

/// Most messages one batched direct get returns (the server's own cap is 1,000).
pub const DIRECT_BATCH: usize = 256;

/// The result of an append: where the events landed and the new tip.
#[derive(Debug, Clone)]
pub struct Appended {
    /// Stream sequence of the first event.
    pub first_seq: u64,
    /// Stream sequence of the last event.
    pub last_seq: u64,
    /// The subject's new tip.
    pub tip: ChainTip,
    /// Event ids in order.
    pub event_ids: Vec<uuid::Uuid>,
}

/// The event log. Cheap to clone (it shares one NATS connection).
#[derive(Clone)]
pub struct EventLog {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: Stream,
    cfg: LogConfig,
    origin: String,
    /// Group commit (`None` when [`LogConfig::group_commit`] is 0).
    group: Option<Group>,
}

/// The stream's info once it has a leader. A replicated stream that was just created (or
/// whose leader just died) elects one within seconds; until then appends find no responder.
/// Waits at most `patience`, then returns [`LogError::Unavailable`] naming the stream.
async fn wait_for_leader(stream: &mut Stream, patience: Duration) -> Result<jetstream::stream::Info, LogError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let info = stream.info().await.map_err(|e| LogError::unavailable_from("stream info", e))?.clone();
        let led = info.cluster.as_ref().is_none_or(|c| c.leader.is_some());
        if led {
            return Ok(info);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(LogError::unavailable(format!("stream {} has no leader yet", info.config.name)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl EventLog {
    /// Opens the log on `client`, creating the stream if it does not exist and refusing a
    /// stream whose configuration breaks the append-only guarantees.
    ///
    /// # Errors
    /// [`LogError::Misconfigured`] listing each drifted setting; [`LogError::Unavailable`].
    pub async fn open(client: async_nats::Client, cfg: LogConfig) -> Result<Self, LogError> {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(cfg.request_timeout);
        let mut stream = match js.get_stream(&cfg.stream).await {
            Ok(s) => s,
            Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(je) if je.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                match js.create_stream(cfg.stream_config()).await {
                    Ok(s) => s,
                    // Another instance created it between our get and create.
                    Err(e) if matches!(e.kind(), CreateStreamErrorKind::JetStream(je) if je.error_code() == jetstream::ErrorCode::STREAM_NAME_EXIST) => {
                        js.get_stream(&cfg.stream)
                            .await
                            .map_err(|e| LogError::unavailable_from(format!("looking up stream {}", cfg.stream), e))?
                    }
                    Err(e) => return Err(LogError::server(format!("creating stream {}", cfg.stream), e)),
                }
            }
            Err(e) => return Err(LogError::unavailable_from(format!("looking up stream {}", cfg.stream), e)),
        };
        let info = wait_for_leader(&mut stream, cfg.request_timeout).await?;
        let problems = check_stream_config(&info.config, &cfg);
        if !problems.is_empty() {
            let problems =
                problems.iter().map(|p| format!("{} = {}", p.setting, p.detail)).collect::<Vec<_>>().join("; ");
            return Err(LogError::Misconfigured { stream: cfg.stream.clone(), problems });
        }
        let origin = cfg.origin();
        let group = (cfg.group_commit > 0).then(|| Group::start(client.clone(), cfg.group_commit, cfg.request_timeout));
        Ok(Self { client, js, stream, cfg, origin, group })
    }

    /// The configuration this log was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.cfg
    }

    /// The audit origin (`covenant/<stream>`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The JetStream context (for read-side tools and tests).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Group commit so far: appends stored in batches of two or more, and batches the
    /// server refused as a whole (their appends went again alone). Zeros when it is off.
    pub fn group_commit_counts(&self) -> (u64, u64) {
        self.group.as_ref().map_or((0, 0), Group::counts)
    }

    /// The stream handle.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The subject of one aggregate instance.
    pub fn subject(&self, aggregate_type: &str, id: &str) -> String {
        self.cfg.subject(aggregate_type, id)
    }

    /// Fails fast when the connection is down rather than queueing behind a reconnect.
    ///
    /// # Errors
    /// [`LogError::Unavailable`] when not connected.
    pub fn ensure_connected(&self) -> Result<(), LogError> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            other => Err(LogError::unavailable(format!("NATS connection is {other:?}"))),
        }
    }

    /// Appends `events` to `subject`, extending `tip`: one message, or one atomic batch.
    /// `extra` headers (operational: trace context, idempotency key) are added unhashed.
    ///
    /// After a lost acknowledgement, the subject's last message is read back and compared
    /// by `Event-Id`, so a stored append is reported as stored.
    ///
    /// # Errors
    /// [`LogError::Conflict`] when the subject moved past `tip`; [`LogError::Unavailable`]
    /// (with `outcome_unknown` when the events may have been stored); [`LogError::Invalid`].
    pub async fn append(
        &self,
        subject: &str,
        tip: &ChainTip,
        events: &[NewEvent],
        extra: &[(String, String)],
    ) -> Result<Appended, LogError> {
        // The producer span; its W3C context travels in the messages' headers (unhashed),
        // so the projection that applies them links back to it.
        let destination = subject.rsplit_once('.').map_or(subject, |(d, _)| d);
        // Made only inside a sampled trace (see `covenant_telemetry::sampled`).
        let span = if covenant_telemetry::sampled() {
            tracing::info_span!(
                "send",
                otel.name = %format_args!("send {destination}"),
                otel.kind = "producer",
                messaging.system = "nats",
                messaging.destination.name = destination,
                messaging.batch.message_count = events.len() as i64,
            )
        } else {
            tracing::Span::none()
        };
        let mut extra = extra.to_vec();
        covenant_telemetry::propagation::inject(&span, &mut extra);
        self.append_inner(subject, tip, events, &extra).instrument(span).await
    }

    async fn append_inner(
        &self,
        subject: &str,
        tip: &ChainTip,
        events: &[NewEvent],
        extra: &[(String, String)],
    ) -> Result<Appended, LogError> {
        if events.is_empty() {
            return Err(LogError::Invalid("nothing to append".into()));
        }
        self.ensure_connected()?;
        let chained = chain_headers(&self.origin, subject, tip, events, extra)?;
        let last_hash = chained.last().map(|(_, h)| *h).unwrap_or(tip.hash);
        let messages: Vec<(HeaderMap, Bytes)> =
            chained.into_iter().zip(events).map(|((hm, _), e)| (hm, e.payload.clone())).collect();
        let event_ids: Vec<uuid::Uuid> = events.iter().map(|e| e.event_id).collect();
        let last_id = event_ids.last().map(uuid::Uuid::to_string).unwrap_or_default();
        let started = std::time::Instant::now();
        let result = match &self.group {
            Some(group) => match group.submit(subject, tip.last_seq, messages).await {
                Turn::Stored(seq) => Ok(seq),
                Turn::Lost(e) => Err(e),
                Turn::Alone(messages, _permit) => {
                    self.publish_alone(subject, tip, events, extra, messages, false).await
                }
                // Its batch's commit went unanswered: sent again alone, where the
                // expectation makes a second copy impossible (see `publish_batch`).
                Turn::Unsettled(messages) => self.publish_alone(subject, tip, events, extra, messages, true).await,
            },
            None => self.publish_alone(subject, tip, events, extra, messages, false).await,
        };
        let last_seq = match result {
            Ok(seq) => seq,
            Err(LogError::Unavailable { outcome_unknown: true, reason, cause }) => {
                self.confirm_lost_ack(subject, &last_id, reason, cause).await?
            }
            Err(e) => return Err(e),
        };
        let n = events.len() as u64;
        metrics::counter!("covenant_events_appended_total").increment(n);
        metrics::histogram!("covenant_append_duration_seconds").record(started.elapsed().as_secs_f64());
        Ok(Appended {
            first_seq: last_seq + 1 - n,
            last_seq,
            tip: ChainTip { last_seq, version: tip.version + n, hash: last_hash },
            event_ids,
        })
    }

    /// Opens the KV bucket `<stream>_<suffix>` beside the stream, creating it (with the
    /// stream's replica count) when absent.
    ///
    /// # Errors
    /// [`LogError::Unavailable`].
    pub async fn kv_bucket(
        &self,
        suffix: &str,
        description: &str,
        max_age: Duration,
    ) -> Result<jetstream::kv::Store, LogError> {
        let bucket = format!("{}_{suffix}", self.cfg.stream);
        if let Ok(kv) = self.js.get_key_value(&bucket).await {
            return Ok(kv);
        }
        self.js
            .create_key_value(jetstream::kv::Config {
                bucket: bucket.clone(),
                description: description.into(),
                history: 1,
                max_age,
                num_replicas: self.cfg.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| LogError::unavailable_from(format!("KV bucket {bucket}"), e))
    }

    /// The stream's last sequence (0 when empty).
    ///
    /// # Errors
    /// [`LogError::Unavailable`].
    pub async fn last_sequence(&self) -> Result<u64, LogError> {
        let mut s = self.stream.clone();
        let info = s.info().await.map_err(|e| LogError::unavailable_from("stream info", e))?;
        Ok(info.state.last_sequence)
    }
}
