//! Atomic batch publish (JetStream ≥ 2.12, ADR-50): every message of a batch is stored, or
//! none is. async-nats 0.51 has the header names but no helper, and synadia's
//! `jetstream-extra` (which has one) is built on async-nats 0.48 (measured 2026-12-05: its
//! 0.3.0 resolves async-nats 0.48.0, whose client is not ours), so this is the helper:
//! the first message is a request (the server answers once it has opened the batch), the
//! middle ones are plain publishes, and the commit is a request answered with the ack.
//!
//! A batch may span subjects, and each message may carry its own
//! `Nats-Expected-Last-Subject-Sequence` (nats-server 2.15 checks each; two expectations on
//! one subject inside a batch are refused). A stale expectation is reported at the commit.
//! `Nats-Msg-Id` is refused inside a batch.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::{NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE, NATS_EXPECTED_LAST_SUBJECT_SEQUENCE};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::response::Response;
use bytes::Bytes;

use crate::error::LogError;

/// The server's limit on messages per atomic batch.
pub const MAX_BATCH: usize = 1000;

/// JetStream error code: the expected last subject sequence did not match.
pub const ERR_WRONG_LAST_SEQUENCE: u64 = 10071;

/// Publishes `messages` to `subject` as one atomic batch, the first expecting the subject's
/// last sequence to be `expected_last_seq`. Returns the commit's ack (its `sequence` is that
/// of the last message).
///
/// # Errors
/// [`LogError::Conflict`] on a stale expectation; [`LogError::Unavailable`] (outcome
/// unknown once the commit was sent) when the server does not answer; [`LogError::Server`]
/// for any other refusal.
pub async fn publish_atomic(
    client: &async_nats::Client,
    subject: &str,
    expected_last_seq: u64,
    messages: Vec<(HeaderMap, Bytes)>,
    timeout: Duration,
) -> Result<PublishAck, LogError> {
    let messages = messages
        .into_iter()
        .enumerate()
        .map(|(i, (headers, payload))| Outgoing {
            subject: subject.to_owned(),
            expected: (i == 0).then_some(expected_last_seq),
            headers,
            payload,
        })
        .collect();
    publish_atomic_to(client, messages, timeout).await.map_err(|e| match e {
        // One subject: the stale expectation was ours.
        LogError::Conflict { .. } => LogError::Conflict { subject: subject.to_owned(), expected: expected_last_seq },
        e => e,
    })
}

/// One message of an atomic batch.
pub struct Outgoing {
    /// Its subject (a batch may span the stream's subjects).
    pub subject: String,
    /// The last sequence its subject must have (`Nats-Expected-Last-Subject-Sequence`).
    pub expected: Option<u64>,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its payload.
    pub payload: Bytes,
}

/// Publishes `messages` as one atomic batch (the server checks every message's
/// expectation; one stale expectation refuses the whole batch). Returns the commit's ack.
///
/// # Errors
/// As [`publish_atomic`]; a [`LogError::Conflict`] names the first message's subject,
/// since the server does not say which expectation was stale.
pub async fn publish_atomic_to(
    client: &async_nats::Client,
    messages: Vec<Outgoing>,
    timeout: Duration,
) -> Result<PublishAck, LogError> {
    let n = messages.len();
    if n == 0 || n > MAX_BATCH {
        return Err(LogError::Invalid(format!("an atomic batch holds 1 to {MAX_BATCH} messages, not {n}")));
    }
    let first_subject = messages[0].subject.clone();
    let first_expected = messages[0].expected.unwrap_or(0);
    let batch_id = uuid::Uuid::new_v4().simple().to_string();
    for (i, Outgoing { subject, expected, mut headers, payload }) in messages.into_iter().enumerate() {
        let seq = i + 1;
        headers.insert(NATS_BATCH_ID, batch_id.as_str());
        headers.insert(NATS_BATCH_SEQUENCE, seq.to_string().as_str());
        if let Some(expected) = expected {
            headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, expected.to_string().as_str());
        }
        if seq == n {
            headers.insert(NATS_BATCH_COMMIT, "1");
            let reply = request(client, &subject, headers, payload, timeout, true).await?;
            return parse_commit(&first_subject, first_expected, &reply);
        }
        if seq == 1 {
            let reply = request(client, &subject, headers, payload, timeout, false).await?;
            check_flow_reply(&first_subject, first_expected, &reply)?;
        } else {
            client
                .publish_with_headers(subject, headers, payload)
                .await
                .map_err(|e| LogError::unavailable_from("batch publish", e))?;
        }
    }
    unreachable_empty()
}

fn unreachable_empty() -> Result<PublishAck, LogError> {
    Err(LogError::Invalid("empty batch".into()))
}

async fn request(
    client: &async_nats::Client,
    subject: &str,
    headers: HeaderMap,
    payload: Bytes,
    timeout: Duration,
    is_commit: bool,
) -> Result<async_nats::Message, LogError> {
    let req = async_nats::Request::new().headers(headers).payload(payload).timeout(Some(timeout));
    client.send_request(subject.to_owned(), req).await.map_err(|e| {
        // Once the commit is out, the batch may have been stored although we saw no answer.
        LogError::Unavailable {
            reason: "batch request".into(),
            outcome_unknown: is_commit,
            cause: Some(std::sync::Arc::new(e)),
        }
    })
}

fn server_error(subject: &str, expected: u64, error: async_nats::jetstream::Error) -> LogError {
    if error.error_code().0 == ERR_WRONG_LAST_SEQUENCE {
        LogError::Conflict { subject: subject.to_owned(), expected }
    } else {
        LogError::server(format!("atomic batch on {subject}"), error)
    }
}

/// The answer to the first message is empty when the batch was opened, or an error.
fn check_flow_reply(subject: &str, expected: u64, reply: &async_nats::Message) -> Result<(), LogError> {
    if reply.payload.is_empty() {
        return Ok(());
    }
    match serde_json::from_slice::<Response<serde_json::Value>>(&reply.payload) {
        Ok(Response::Err { error }) => Err(server_error(subject, expected, error)),
        _ => Ok(()),
    }
}

fn parse_commit(subject: &str, expected: u64, reply: &async_nats::Message) -> Result<PublishAck, LogError> {
    if reply.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
        return Err(LogError::unavailable("no JetStream responders for the batch commit"));
    }
    match serde_json::from_slice::<Response<PublishAck>>(&reply.payload) {
        Ok(Response::Ok(ack)) => Ok(ack),
        Ok(Response::Err { error }) => Err(server_error(subject, expected, error)),
        Err(e) => Err(LogError::server("unexpected batch commit reply", e)),
    }
}
