//! The domain-agnostic event log on JetStream: append to a subject with an expected tip
//! (writing the hash chain), read a subject, read the stream in order.
//!
//! Nothing else in Covenant writes to JetStream. There is no write lock: appends to
//! different subjects run concurrently over one connection, each guarded only by
//! `Nats-Expected-Last-Subject-Sequence` on its own subject.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::connection::State;
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures::StreamExt;

use crate::batch;
use crate::config::{LogConfig, check_stream_config};
use crate::error::LogError;
use crate::record::{ChainTip, NewEvent, StoredEvent, chain_headers};

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
}

/// The stream's info once it has a leader. A replicated stream that was just created (or
/// whose leader just died) elects one within seconds; until then appends find no responder.
/// Waits at most `patience`, then returns [`LogError::Unavailable`] naming the stream.
async fn wait_for_leader(stream: &mut Stream, patience: Duration) -> Result<jetstream::stream::Info, LogError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let info = stream.info().await.map_err(LogError::unavailable)?.clone();
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
                        js.get_stream(&cfg.stream).await.map_err(LogError::unavailable)?
                    }
                    Err(e) => return Err(LogError::Server(format!("creating stream {}: {e}", cfg.stream))),
                }
            }
            Err(e) => return Err(LogError::unavailable(format!("looking up stream {}: {e}", cfg.stream))),
        };
        let info = wait_for_leader(&mut stream, cfg.request_timeout).await?;
        let problems = check_stream_config(&info.config, &cfg);
        if !problems.is_empty() {
            let problems =
                problems.iter().map(|p| format!("{} = {}", p.setting, p.detail)).collect::<Vec<_>>().join("; ");
            return Err(LogError::Misconfigured { stream: cfg.stream.clone(), problems });
        }
        let origin = cfg.origin();
        Ok(Self { client, js, stream, cfg, origin })
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

    /// The subject's last event, read from the stream leader (never a possibly stale
    /// direct get).
    ///
    /// # Errors
    /// [`LogError::Unavailable`], [`LogError::Corrupt`].
    ///
    /// While the stream has no leader (an election after a leader's death) the read is
    /// retried for up to [`LogConfig::failover_wait`].
    pub async fn last_event(&self, subject: &str) -> Result<Option<StoredEvent>, LogError> {
        self.ensure_connected()?;
        let mut failover = Failover::new(self);
        loop {
            let read =
                tokio::time::timeout(failover.attempt_timeout(), self.stream.get_last_raw_message_by_subject(subject));
            let reason = match read.await {
                Ok(Ok(m)) => return StoredEvent::parse(m.sequence, &m.subject, m.headers, m.payload).map(Some),
                Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer in {:?}", failover.attempt_timeout()),
            };
            if !failover.pause().await {
                return Err(LogError::unavailable(format!("reading last message of {subject}: {reason}")));
            }
        }
    }

    /// The subject's chain tip (genesis when empty).
    ///
    /// # Errors
    /// As [`EventLog::last_event`].
    pub async fn tip(&self, subject: &str) -> Result<ChainTip, LogError> {
        match self.last_event(subject).await? {
            Some(e) => Ok(ChainTip::after(&e)),
            None => ChainTip::genesis(&self.origin, subject),
        }
    }

    /// Every event on `subject` with stream sequence above `after_seq`, up to the subject's
    /// last message at the time of the call (read from the leader), in stream order.
    ///
    /// No consumer is created: aggregate loads and conflict reloads are frequent, and every
    /// ephemeral consumer lingers on the server (two instances reloading each other's
    /// writes once reached nats-server's cap of 1,000 consumers). The events come from
    /// batched direct gets by subject (nats-server ≥ 2.11, one request per
    /// [`DIRECT_BATCH`] events); a replica may answer one and be behind the leader, so the
    /// read goes on until it has reached the leader's last sequence, and falls back to
    /// leader gets, one message each, when a batch brings nothing new.
    ///
    /// # Errors
    /// [`LogError::Unavailable`], [`LogError::Corrupt`].
    pub async fn read_subject(&self, subject: &str, after_seq: u64) -> Result<Vec<StoredEvent>, LogError> {
        let Some(last) = self.last_event(subject).await? else { return Ok(Vec::new()) };
        if last.seq <= after_seq {
            return Ok(Vec::new());
        }
        if last.version == 1 && after_seq == 0 {
            return Ok(vec![last]);
        }
        let mut out: Vec<StoredEvent> = Vec::new();
        let mut from = after_seq + 1;
        while from <= last.seq {
            let mut got = self.direct_batch(subject, from, last.seq).await?;
            if got.is_empty() {
                // A replica behind the leader: ask the leader for the next message.
                let m = self
                    .stream
                    .raw_message_builder()
                    .sequence(from)
                    .next_by_subject(subject.to_owned())
                    .send()
                    .await
                    .map_err(|e| LogError::unavailable(format!("reading {subject} from {from}: {e}")))?;
                got.push(StoredEvent::parse(m.sequence, &m.subject, m.headers, m.payload)?);
            }
            for e in got {
                if e.seq < from || e.seq > last.seq {
                    return Err(LogError::Corrupt {
                        seq: e.seq,
                        reason: format!("read out of order on {subject}: wanted {from}..={}", last.seq),
                    });
                }
                from = e.seq + 1;
                out.push(e);
            }
        }
        Ok(out)
    }

    /// One batched direct get (ADR-31): the messages on `subject` from sequence `from` up
    /// to `up_to`, at most [`DIRECT_BATCH`], in order, ending at the server's end-of-batch
    /// status. Empty when none is found (or the answering replica has none yet).
    async fn direct_batch(&self, subject: &str, from: u64, up_to: u64) -> Result<Vec<StoredEvent>, LogError> {
        let unavailable = |e: &dyn std::fmt::Display| LogError::unavailable(format!("reading {subject}: {e}"));
        let inbox = self.client.new_inbox();
        let mut replies = self.client.subscribe(inbox.clone()).await.map_err(|e| unavailable(&e))?;
        let request = serde_json::json!({
            "seq": from,
            "next_by_subj": subject,
            "batch": DIRECT_BATCH,
            "up_to_seq": up_to,
        });
        self.client
            .publish_with_reply(format!("$JS.API.DIRECT.GET.{}", self.cfg.stream), inbox, request.to_string().into())
            .await
            .map_err(|e| unavailable(&e))?;
        let mut out = Vec::new();
        loop {
            let m = match tokio::time::timeout(self.cfg.request_timeout, replies.next()).await {
                Ok(Some(m)) => m,
                Ok(None) => return Err(unavailable(&"the reply subscription closed")),
                Err(_) => return Err(unavailable(&format!("no direct-get reply in {:?}", self.cfg.request_timeout))),
            };
            match m.status.map(|s| s.as_u16()) {
                // 204: end of batch; 404: nothing (more) on the subject from `from`.
                Some(204 | 404) => break,
                Some(code) if code >= 300 => {
                    return Err(unavailable(&format!(
                        "direct get answered {code} {}",
                        m.description.unwrap_or_default()
                    )));
                }
                _ => {}
            }
            let headers = m.headers.unwrap_or_default();
            let seq = headers
                .get("Nats-Sequence")
                .and_then(|v| v.as_str().parse::<u64>().ok())
                .ok_or_else(|| LogError::Server(format!("a direct-get reply on {subject} has no Nats-Sequence")))?;
            let msg_subject = headers.get("Nats-Subject").map_or(subject, |v| v.as_str()).to_owned();
            out.push(StoredEvent::parse(seq, &msg_subject, headers, m.payload)?);
            if seq >= up_to || out.len() >= DIRECT_BATCH {
                break;
            }
        }
        let _ = replies.unsubscribe().await;
        Ok(out)
    }

    /// Reads the stream (or the messages matching `filter`, `>` for all) from `from_seq`
    /// up to `to_seq` inclusive, calling `each` on every parsed event in order.
    ///
    /// # Errors
    /// [`LogError::Unavailable`], [`LogError::Corrupt`].
    pub async fn scan(
        &self,
        filter: &str,
        from_seq: u64,
        to_seq: u64,
        mut each: impl FnMut(StoredEvent),
    ) -> Result<(), LogError> {
        if to_seq < from_seq {
            return Ok(());
        }
        let mut messages = self.ordered(filter, from_seq).await?;
        let deadline = Duration::from_secs(30).max(self.cfg.request_timeout);
        loop {
            let next = tokio::time::timeout(deadline, messages.next())
                .await
                .map_err(|_| LogError::unavailable(format!("reading {filter}: no message for {deadline:?}")))?;
            let m = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(LogError::unavailable(format!("reading {filter}: {e}"))),
                None => return Err(LogError::unavailable(format!("reading {filter}: consumer closed"))),
            };
            let seq = m.info().map_err(|e| LogError::Server(e.to_string()))?.stream_sequence;
            let headers = m.message.headers.clone().unwrap_or_default();
            each(StoredEvent::parse(seq, &m.message.subject, headers, m.message.payload.clone())?);
            if seq >= to_seq {
                return Ok(());
            }
        }
    }

    /// An ordered consumer from `from_seq`; creation is retried briefly, since right after
    /// a node loss or leader change the first attempts may time out.
    async fn ordered(&self, filter: &str, from_seq: u64) -> Result<consumer::pull::Ordered, LogError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let created = self
                .stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: filter.to_owned(),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from_seq.max(1) },
                    ..Default::default()
                })
                .await;
            let result = match created {
                Ok(c) => c.messages().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(m) => return Ok(m),
                Err(e) if attempt >= 4 => {
                    return Err(LogError::unavailable(format!("ordered consumer on {filter}: {e}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250 * attempt)).await,
            }
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
        let span = crate::trace::child(
            || format!("send {destination}"),
            crate::trace::SpanKind::Producer,
            || {
                use crate::trace::KeyValue;
                vec![
                    KeyValue::new("messaging.system", "nats"),
                    KeyValue::new("messaging.destination.name", destination.to_owned()),
                    KeyValue::new("messaging.batch.message_count", events.len() as i64),
                ]
            },
        );
        let mut extra = extra.to_vec();
        if let Some(cx) = &span {
            crate::trace::inject(cx, &mut extra);
        }
        // A leaf span: it ends when the append returns (its context travels in the headers).
        let _open = span;
        self.append_inner(subject, tip, events, &extra).await
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
        let result = if messages.len() == 1 {
            // A retry rebuilds the headers (pure) rather than every publish cloning them.
            let rebuild = || {
                chain_headers(&self.origin, subject, tip, events, extra)
                    .map(|mut v| v.pop().map(|(hm, _)| hm).unwrap_or_default())
            };
            let first = messages.into_iter().next().expect("one message");
            self.publish_one(subject, tip.last_seq, first, rebuild, &last_id).await
        } else {
            self.publish_batch(subject, tip.last_seq, messages).await
        };
        let last_seq = match result {
            Ok(seq) => seq,
            Err(LogError::Unavailable { outcome_unknown: true, reason }) => {
                self.confirm_lost_ack(subject, &last_id, reason).await?
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
    ) -> Result<u64, LogError> {
        let mut failover = Failover::new(self);
        let mut headers = Some(headers);
        // Whether an attempt may have reached the stream (its outcome is then unknown).
        let mut sent_any = false;
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
                            _ => return Err(LogError::Server(format!("publish to {subject}: {e}"))),
                        },
                    }
                }
            };
            if !failover.pause().await {
                return Err(LogError::Unavailable { reason, outcome_unknown: sent_any });
            }
        }
    }

    /// The first message on `subject` after stream sequence `after`, read from the leader
    /// (retried through a failover like [`EventLog::last_event`]).
    async fn next_on_subject(&self, subject: &str, after: u64) -> Result<Option<StoredEvent>, LogError> {
        let mut failover = Failover::new(self);
        loop {
            let get = self.stream.raw_message_builder().sequence(after + 1).next_by_subject(subject.to_owned()).send();
            let reason = match tokio::time::timeout(failover.attempt_timeout(), get).await {
                Ok(Ok(m)) => return StoredEvent::parse(m.sequence, &m.subject, m.headers, m.payload).map(Some),
                Ok(Err(e)) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => return Ok(None),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer in {:?}", failover.attempt_timeout()),
            };
            if !failover.pause().await {
                return Err(LogError::Unavailable {
                    reason: format!("reading {subject} after {after}: {reason}"),
                    outcome_unknown: true,
                });
            }
        }
    }

    /// Publishes an atomic batch, again while the stream has no leader as long as no commit
    /// went out (an unanswered commit may have been stored: the caller reads the subject
    /// back instead).
    async fn publish_batch(
        &self,
        subject: &str,
        expected: u64,
        messages: Vec<(HeaderMap, Bytes)>,
    ) -> Result<u64, LogError> {
        let mut failover = Failover::new(self);
        loop {
            let attempt = messages.clone();
            match batch::publish_atomic(&self.client, subject, expected, attempt, failover.attempt_timeout()).await {
                Ok(ack) => return Ok(ack.sequence),
                Err(LogError::Unavailable { reason, outcome_unknown: false }) => {
                    if !failover.pause().await {
                        return Err(LogError::Unavailable { reason, outcome_unknown: false });
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// After a lost ack: if the subject's last message is ours, the append happened (a
    /// later write on top of it would have needed our tip). Otherwise the outcome stays
    /// unknown: the client may still flush a buffered publish after a reconnect.
    async fn confirm_lost_ack(&self, subject: &str, last_event_id: &str, reason: String) -> Result<u64, LogError> {
        let deadline = tokio::time::Instant::now() + self.cfg.request_timeout * 2;
        loop {
            match self.last_event(subject).await {
                Ok(Some(e)) if e.event_id == last_event_id => return Ok(e.seq),
                Ok(_) => return Err(LogError::Unavailable { reason, outcome_unknown: true }),
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(e) => {
                    return Err(LogError::Unavailable { reason: format!("{reason}; then {e}"), outcome_unknown: true });
                }
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
            .map_err(|e| LogError::unavailable(format!("KV bucket {bucket}: {e}")))
    }

    /// The stream's last sequence (0 when empty).
    ///
    /// # Errors
    /// [`LogError::Unavailable`].
    pub async fn last_sequence(&self) -> Result<u64, LogError> {
        let mut s = self.stream.clone();
        let info = s.info().await.map_err(LogError::unavailable)?;
        Ok(info.state.last_sequence)
    }
}

fn server_code(e: &async_nats::jetstream::context::PublishError) -> Option<u64> {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
        .map(|je| je.error_code().0)
}

/// Retries of one leader request through a stream leader's failover: each attempt waits
/// longer (0.75 s, 1.5 s, … up to the request timeout, so a new leader is noticed within a
/// fraction of a second of its election), pauses double from 50 ms to 500 ms, and all of it
/// ends after [`LogConfig::failover_wait`]. A connection that does not come back within
/// 2 s ends it at once: a NATS outage answers UNAVAILABLE quickly, as before.
struct Failover<'a> {
    log: &'a EventLog,
    deadline: tokio::time::Instant,
    attempt: u32,
}

impl<'a> Failover<'a> {
    fn new(log: &'a EventLog) -> Self {
        Self { log, deadline: tokio::time::Instant::now() + log.cfg.failover_wait, attempt: 1 }
    }

    fn attempt_timeout(&self) -> Duration {
        (Duration::from_millis(750) * self.attempt).min(self.log.cfg.request_timeout)
    }

    /// Waits before the next attempt; `false` when there is to be none.
    async fn pause(&mut self) -> bool {
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
