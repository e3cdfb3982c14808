//! Publishing one append alone: one message with `Nats-Msg-Id`, or one atomic batch, each
//! resent through a leader's failover without ever storing a second copy.

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;

use super::EventLog;
use super::failover::Failover;
use crate::batch;
use crate::error::LogError;
use crate::record::{ChainTip, NewEvent, chain_headers};

/// JetStream error code an R3 stream may return right after an ack ("leader changed"):
/// the publish is retried.
const ERR_RETRYABLE_AFTER_ACK: u64 = 10164;

impl EventLog {
    /// Publishes one append on its own: one message with `Nats-Msg-Id`, or one atomic batch.
    /// `maybe_stored`: an earlier attempt went out unanswered (a conflict is then checked
    /// against the message that moved the subject).
    pub(super) async fn publish_alone(
        &self,
        subject: &str,
        tip: &ChainTip,
        events: &[NewEvent],
        extra: &[(String, String)],
        messages: Vec<(HeaderMap, Bytes)>,
        maybe_stored: bool,
    ) -> Result<u64, LogError> {
        let first_id = events.first().map(|e| e.event_id.to_string()).unwrap_or_default();
        if messages.len() == 1 {
            // A retry rebuilds the headers (pure) rather than every publish cloning them.
            let rebuild = || {
                chain_headers(&self.origin, subject, tip, events, extra)
                    .map(|mut v| v.pop().map(|(hm, _)| hm).unwrap_or_default())
            };
            let first = messages.into_iter().next().expect("one message");
            self.publish_one(subject, tip.last_seq, first, rebuild, &first_id, maybe_stored).await
        } else {
            self.publish_batch(subject, tip.last_seq, messages, &first_id, maybe_stored).await
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
                                return self.ours_after(subject, expected, msg_id, 1).await;
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
                    return self.ours_after(subject, expected, first_id, n).await;
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

    /// A resend refused because `subject` moved past `expected`, after an attempt that went
    /// out unanswered: if the message right after `expected` is our first event (`first_id`),
    /// that attempt was stored and its `n` events end `n - 1` later (appends are stored
    /// contiguously); otherwise it is a real conflict.
    async fn ours_after(&self, subject: &str, expected: u64, first_id: &str, n: u64) -> Result<u64, LogError> {
        match self.next_on_subject(subject, expected).await? {
            Some(e) if e.event_id == first_id => Ok(e.seq + n - 1),
            _ => Err(LogError::Conflict { subject: subject.to_owned(), expected }),
        }
    }
}

fn server_code(e: &async_nats::jetstream::context::PublishError) -> Option<u64> {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
        .map(|je| je.error_code().0)
}
