//! Reads of the event log: a subject's last event and tip (from the leader), a subject's
//! events in stream order (batched direct gets, no consumer), the stream in order (an
//! ordered consumer), each retried through a leader's failover where it needs the leader.

use std::time::Duration;

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

use super::{DIRECT_BATCH, EventLog, Failover};
use crate::error::LogError;
use crate::record::{ChainTip, StoredEvent};

impl EventLog {
    /// The subject's last event, read from the stream leader (never a possibly stale
    /// direct get).
    ///
    /// # Errors
    /// [`LogError::Unavailable`], [`LogError::Corrupt`].
    ///
    /// While the stream has no leader (an election after a leader's death) the read is
    /// retried for up to [`crate::LogConfig::failover_wait`].
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
                    .map_err(|e| LogError::unavailable_from(format!("reading {subject} from {from}"), e))?;
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
                .ok_or_else(|| LogError::server_msg(format!("a direct-get reply on {subject} has no Nats-Sequence")))?;
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
                Some(Err(e)) => return Err(LogError::unavailable_from(format!("reading {filter}"), e)),
                None => return Err(LogError::unavailable(format!("reading {filter}: consumer closed"))),
            };
            let seq = m.info().map_err(|e| LogError::server_msg(format!("reading {filter}: {e}")))?.stream_sequence;
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

    /// The first message on `subject` after stream sequence `after`, read from the leader
    /// (retried through a failover like [`EventLog::last_event`]).
    pub(super) async fn next_on_subject(&self, subject: &str, after: u64) -> Result<Option<StoredEvent>, LogError> {
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
                    cause: None,
                });
            }
        }
    }
}
