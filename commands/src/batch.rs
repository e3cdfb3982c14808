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
use async_nats::RequestErrorKind;
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
    let mut framed: Vec<(String, HeaderMap, Bytes)> = messages
        .into_iter()
        .enumerate()
        .map(|(i, Outgoing { subject, expected, mut headers, payload })| {
            let seq = i + 1;
            headers.insert(NATS_BATCH_ID, batch_id.as_str());
            headers.insert(NATS_BATCH_SEQUENCE, seq.to_string().as_str());
            if let Some(expected) = expected {
                headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, expected.to_string().as_str());
            }
            if seq == n {
                headers.insert(NATS_BATCH_COMMIT, "1");
            }
            (subject, headers, payload)
        })
        .collect();
    let (commit_subject, commit_headers, commit_payload) = framed.pop().expect("n >= 1");
    if n == 1 {
        let reply = request(client, &commit_subject, commit_headers, commit_payload, timeout).await;
        return commit_outcome(&first_subject, first_expected, reply);
    }
    let mut middle = framed.into_iter();
    let (subject, headers, payload) = middle.next().expect("n >= 2");
    // The first message is a request (the server answers once it has opened the batch, or
    // says why not), but its answer is awaited beside the commit's, not before the rest is
    // sent: nats-server stages each batch on disk, and waiting first added that staging to
    // every batch's round (sync always, group commit 2, 64 in flight: 4,697 and 5,294
    // commands/s waiting, 5,916 and 5,872 not). The order holds on the one connection:
    // `biased` polls the first request first, which queues it before waiting for its answer.
    let start = request(client, &subject, headers, payload, timeout);
    let rest = async {
        for (subject, headers, payload) in middle {
            client
                .publish_with_headers(subject, headers, payload)
                .await
                .map_err(|e| LogError::unavailable_from("batch publish", e))?;
        }
        Ok::<_, LogError>(request(client, &commit_subject, commit_headers, commit_payload, timeout).await)
    };
    let (started, committed) = tokio::join!(biased; start, rest);
    match started {
        // Refused at the start (not enabled, too many batches in flight): nothing stored.
        Ok(reply) => check_flow_reply(&first_subject, first_expected, &reply)?,
        // No server took the first message: the batch cannot exist.
        Err(e) if e.kind() == RequestErrorKind::NoResponders => {
            return Err(LogError::unavailable_from("batch start: no JetStream responder", e));
        }
        // Its answer was lost: the commit's answer decides.
        Err(_) => {}
    }
    commit_outcome(&first_subject, first_expected, committed?)
}

async fn request(
    client: &async_nats::Client,
    subject: &str,
    headers: HeaderMap,
    payload: Bytes,
    timeout: Duration,
) -> Result<async_nats::Message, async_nats::RequestError> {
    let req = async_nats::Request::new().headers(headers).payload(payload).timeout(Some(timeout));
    client.send_request(subject.to_owned(), req).await
}

/// What the commit's answer says: the ack, the server's refusal, or (no answer) an outcome
/// unknown, since the batch may be stored although its answer was lost.
fn commit_outcome(
    subject: &str,
    expected: u64,
    reply: Result<async_nats::Message, async_nats::RequestError>,
) -> Result<PublishAck, LogError> {
    match reply {
        Ok(reply) => parse_commit(subject, expected, &reply),
        Err(e) if e.kind() == RequestErrorKind::NoResponders => {
            Err(LogError::unavailable_from("batch commit: no JetStream responder", e))
        }
        Err(e) => Err(LogError::Unavailable {
            reason: "batch commit".into(),
            outcome_unknown: true,
            cause: Some(std::sync::Arc::new(e)),
        }),
    }
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
