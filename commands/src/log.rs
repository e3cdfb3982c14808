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
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::Stream;
use bytes::Bytes;

use crate::batch;
use crate::config::{LogConfig, check_stream_config};
use crate::error::LogError;
use crate::record::{ChainTip, NewEvent, chain_headers};

mod failover;
mod group;
mod read;

use failover::Failover;
use group::{Group, Turn};

/// Most messages one batched direct get returns (the server's own cap is 1,000).
pub const DIRECT_BATCH: usize = 256;

/// JetStream error code an R3 stream may return right after an ack ("leader changed"):
/// the publish is retried.
const ERR_RETRYABLE_AFTER_ACK: u64 = 10164;

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
                    self.publish_alone(subject, tip, events, extra, messages, &event_ids, false).await
                }
                // Its batch's commit went unanswered: sent again alone, where the
                // expectation makes a second copy impossible (see `publish_batch`).
                Turn::Unsettled(messages) => {
                    self.publish_alone(subject, tip, events, extra, messages, &event_ids, true).await
                }
            },
            None => self.publish_alone(subject, tip, events, extra, messages, &event_ids, false).await,
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

    /// Publishes one append on its own: one message with `Nats-Msg-Id`, or one atomic batch.
    /// `maybe_stored`: an earlier attempt went out unanswered (a conflict is then checked
    /// against the message that moved the subject).
    #[allow(clippy::too_many_arguments)]
    async fn publish_alone(
        &self,
        subject: &str,
        tip: &ChainTip,
        events: &[NewEvent],
        extra: &[(String, String)],
        messages: Vec<(HeaderMap, Bytes)>,
        event_ids: &[uuid::Uuid],
        maybe_stored: bool,
    ) -> Result<u64, LogError> {
        if messages.len() == 1 {
            // A retry rebuilds the headers (pure) rather than every publish cloning them.
            let rebuild = || {
                chain_headers(&self.origin, subject, tip, events, extra)
                    .map(|mut v| v.pop().map(|(hm, _)| hm).unwrap_or_default())
            };
            let first = messages.into_iter().next().expect("one message");
            let id = event_ids[0].to_string();
            self.publish_one(subject, tip.last_seq, first, rebuild, &id, maybe_stored).await
        } else {
            self.publish_batch(subject, tip.last_seq, messages, &event_ids[0].to_string(), maybe_stored).await
        }
    }

    /// Publishes one message with `Nats-Msg-Id` = `msg_id`, resending it while the stream
    /// has no leader (time-outs, no responders, "leader changed") for up to
    /// [`LogConfig::failover_wait`]: the id makes every resend after a stored attempt answer
    /// with the stored sequence, never a second copy.
    async fn publish_one(
        &self,
        subject: &str,
        expected: u64,
        (headers, payload): (HeaderMap, Bytes),
        rebuild: impl Fn() -> Result<HeaderMap, LogError>,
        msg_id: &str,
        maybe_stored: bool,
    ) -> Result<u64, LogError> {
        let mut failover = Failover::new(self);
        let mut headers = Some(headers);
        // Whether an attempt may have reached the stream (its outcome is then unknown).
        let mut sent_any = maybe_stored;
        loop {
            let earlier_sent = sent_any;
            let h = match headers.take() {
                Some(h) => h,
                None => rebuild()?,
            };
            let msg = PublishMessage::build()
                .headers(h)
                .payload(payload.clone())
                .message_id(msg_id)
                .expected_last_subject_sequence(expected);
            let reason = match self.js.send_publish(subject.to_owned(), msg).await {
                Err(e) => format!("publish to {subject}: {e}"),
                Ok(ack) => {
                    sent_any = true;
                    match tokio::time::timeout(failover.attempt_timeout(), ack.into_future()).await {
                        Err(_) => format!("publish to {subject}: no ack in {:?}", failover.attempt_timeout()),
                        Ok(Ok(ack)) => return Ok(ack.sequence),
                        Ok(Err(e)) => match e.kind() {
                            // After an unanswered attempt, the subject may have moved
                            // because that attempt was stored: the message right after
                            // `expected` says whether it is ours (a conflict re-decides the
                            // command, which would store it twice).
                            PublishErrorKind::WrongLastSequence if earlier_sent => {
                                return match self.next_on_subject(subject, expected).await? {
                                    Some(e) if e.event_id == msg_id => Ok(e.seq),
                                    _ => Err(LogError::Conflict { subject: subject.to_owned(), expected }),
                                };
                            }
                            PublishErrorKind::WrongLastSequence => {
                                return Err(LogError::Conflict { subject: subject.to_owned(), expected });
                            }
                            PublishErrorKind::MaxPayloadExceeded => return Err(LogError::Invalid(e.to_string())),
                            // No leader to answer, or one that just changed: resend.
                            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                                format!("publish to {subject}: {e}")
                            }
                            PublishErrorKind::StreamNotFound => format!("no JetStream responder for {subject}"),
                            _ if server_code(&e) == Some(ERR_RETRYABLE_AFTER_ACK) => {
                                format!("publish to {subject}: {e}")
                            }
                            _ => return Err(LogError::server(format!("publish to {subject}"), e)),
                        },
                    }
                }
            };
            if !failover.pause().await {
                return Err(LogError::Unavailable { reason, outcome_unknown: sent_any, cause: None });
            }
        }
    }

    /// Publishes an atomic batch, again while the stream has no leader (up to
    /// [`LogConfig::failover_wait`]), even after a commit went unanswered: the resend expects
    /// the same last subject sequence, so if the unanswered commit was stored the resend is
    /// refused as a conflict, and the message right after `expected` (our first event,
    /// `first_id`) shows the batch is stored. Never a second copy, and a commit lost in a
    /// leader election no longer answers "outcome unknown". `maybe_stored`: an earlier
    /// attempt (a group commit's batch) went out unanswered.
    async fn publish_batch(
        &self,
        subject: &str,
        expected: u64,
        messages: Vec<(HeaderMap, Bytes)>,
        first_id: &str,
        maybe_stored: bool,
    ) -> Result<u64, LogError> {
        let mut failover = Failover::new(self);
        let n = messages.len() as u64;
        let mut sent_any = maybe_stored;
        loop {
            let attempt = messages.clone();
            match batch::publish_atomic(&self.client, subject, expected, attempt, failover.attempt_timeout()).await {
                Ok(ack) => return Ok(ack.sequence),
                Err(LogError::Conflict { .. }) if sent_any => {
                    // A batch is stored contiguously: its last event is n - 1 after its first.
                    return match self.next_on_subject(subject, expected).await? {
                        Some(e) if e.event_id == first_id => Ok(e.seq + n - 1),
                        _ => Err(LogError::Conflict { subject: subject.to_owned(), expected }),
                    };
                }
                Err(LogError::Unavailable { reason, outcome_unknown, cause }) => {
                    sent_any |= outcome_unknown;
                    if !failover.pause().await {
                        return Err(LogError::Unavailable { reason, outcome_unknown: sent_any, cause });
                    }
                }
                Err(e) => return Err(e),
            }
        }
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

fn server_code(e: &async_nats::jetstream::context::PublishError) -> Option<u64> {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
        .map(|je| je.error_code().0)
}
