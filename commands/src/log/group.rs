//! Group commit: appends to different subjects that arrive while earlier ones are still
//! being stored share one atomic batch, which the server stores (and, at `sync: always`,
//! fsyncs) once. At strict durability one fsync per message is what limits throughput;
//! a batch of 200 is synced once.
//!
//! How it works. A coalescing task holds at most [`LogConfig::group_commit`] permits
//! (commits in flight). It takes one permit, then everything queued (one append per subject,
//! up to [`MAX_BATCH`] messages): an append that finds nothing in flight goes alone, at once
//! and unchanged (its own publish with `Nats-Msg-Id`), so a quiet service pays no latency
//! for grouping; under load the queue fills while the permits are busy, and the next batch
//! takes it whole.
//!
//! Each append's first message carries its own expectation, so the server checks every
//! aggregate's optimistic concurrency inside the batch. The server refuses a batch as a
//! whole (a stale expectation, too many batches in flight, no leader): its appends then go
//! again alone, where a conflict fails only its own command. A commit whose answer was lost
//! (a leader election) may be stored: its appends go again alone too, each expecting the
//! same last sequence, so a stored one is refused as a conflict and recognised by its
//! first event id, never stored twice.
//!
//! [`LogConfig::group_commit`]: crate::LogConfig::group_commit

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::batch::{MAX_BATCH, Outgoing, publish_atomic_to};
use crate::error::LogError;

/// One append waiting for a batch.
struct Pending {
    subject: String,
    expected: u64,
    messages: Vec<(HeaderMap, Bytes)>,
    reply: oneshot::Sender<Turn>,
}

/// What became of an append handed to the group.
pub(super) enum Turn {
    /// Stored in a batch: the stream sequence of its last message.
    Stored(u64),
    /// The batch's commit went out and no answer came: it may be stored. Sent again alone
    /// (its expectation refuses a second copy).
    Unsettled(Vec<(HeaderMap, Bytes)>),
    /// The group could not answer (its task ended): where the append stands is read back.
    Lost(LogError),
    /// Publish it alone (nothing to group it with, or its batch was refused as a whole),
    /// holding the permit when there is one.
    Alone(Vec<(HeaderMap, Bytes)>, Option<OwnedSemaphorePermit>),
}

/// The handle appends go through (one per event log; its task ends with the last clone).
#[derive(Clone)]
pub(super) struct Group {
    queue: mpsc::UnboundedSender<Pending>,
    counts: Arc<Counts>,
}

/// What the group has done so far (also exported as metrics).
#[derive(Default)]
pub(super) struct Counts {
    /// Appends stored as members of a batch of two or more.
    pub(super) grouped: AtomicU64,
    /// Batches the server refused as a whole (their appends went again alone).
    pub(super) refused: AtomicU64,
}

impl Group {
    /// Starts the coalescing task: at most `in_flight` commits at once, each waiting up to
    /// `timeout` for the server.
    pub(super) fn start(client: async_nats::Client, in_flight: usize, timeout: Duration) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let counts = Arc::new(Counts::default());
        let permits = Arc::new(Semaphore::new(in_flight.max(1)));
        tokio::spawn(coalesce(client, rx, permits, timeout, counts.clone()));
        Self { queue, counts }
    }

    /// Appends stored in batches of two or more, and batches refused as a whole.
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.counts.grouped.load(Ordering::Relaxed), self.counts.refused.load(Ordering::Relaxed))
    }

    /// Hands `messages` (one append to `subject`, the first expecting `expected`) to the
    /// group and waits for its turn.
    pub(super) async fn submit(&self, subject: &str, expected: u64, messages: Vec<(HeaderMap, Bytes)>) -> Turn {
        let (reply, answer) = oneshot::channel();
        let pending = Pending { subject: subject.to_owned(), expected, messages, reply };
        if let Err(mpsc::error::SendError(p)) = self.queue.send(pending) {
            return Turn::Alone(p.messages, None);
        }
        // The task answers every append it took; it ends only when the log is dropped.
        answer.await.unwrap_or_else(|_| {
            Turn::Lost(LogError::Unavailable {
                reason: "the group commit task ended".into(),
                outcome_unknown: true,
                cause: None,
            })
        })
    }
}

async fn coalesce(
    client: async_nats::Client,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    permits: Arc<Semaphore>,
    timeout: Duration,
    counts: Arc<Counts>,
) {
    // Appends that could not join the last batch (their subject was in it, or it was full).
    let mut carried: VecDeque<Pending> = VecDeque::new();
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let first = match carried.pop_front() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut batch = Batch::new(first);
        let mut still_carried = VecDeque::new();
        while let Some(p) = carried.pop_front() {
            if let Err(p) = batch.join(p) {
                still_carried.push_back(p);
            }
        }
        carried = still_carried;
        while batch.count < MAX_BATCH {
            let Ok(p) = rx.try_recv() else { break };
            if let Err(p) = batch.join(p) {
                carried.push_back(p);
            }
        }
        if batch.members.len() == 1 {
            let only = batch.members.pop().expect("one member");
            let _ = only.reply.send(Turn::Alone(only.messages, Some(permit)));
            continue;
        }
        tokio::spawn(commit(client.clone(), batch.members, batch.count, permit, timeout, counts.clone()));
    }
}

/// A batch being formed: one append per subject, at most [`MAX_BATCH`] messages.
struct Batch {
    members: Vec<Pending>,
    subjects: HashSet<String>,
    count: usize,
}

impl Batch {
    fn new(first: Pending) -> Self {
        let count = first.messages.len();
        Self { subjects: HashSet::from([first.subject.clone()]), members: vec![first], count }
    }

    /// Adds `p`, or gives it back when its subject is already in the batch (two
    /// expectations on one subject are refused) or it does not fit.
    fn join(&mut self, p: Pending) -> Result<(), Pending> {
        if self.count + p.messages.len() > MAX_BATCH || self.subjects.contains(&p.subject) {
            return Err(p);
        }
        self.count += p.messages.len();
        self.subjects.insert(p.subject.clone());
        self.members.push(p);
        Ok(())
    }
}

/// Commits one batch and answers its members.
async fn commit(
    client: async_nats::Client,
    members: Vec<Pending>,
    count: usize,
    permit: OwnedSemaphorePermit,
    timeout: Duration,
    counts: Arc<Counts>,
) {
    // The messages are kept for a second attempt alone (a refused batch stored nothing).
    let mut outgoing = Vec::with_capacity(count);
    let mut last_offsets = Vec::with_capacity(members.len());
    for m in &members {
        for (i, (headers, payload)) in m.messages.iter().enumerate() {
            outgoing.push(Outgoing {
                subject: m.subject.clone(),
                expected: (i == 0).then_some(m.expected),
                headers: headers.clone(),
                payload: payload.clone(),
            });
        }
        last_offsets.push(outgoing.len() as u64);
    }
    let result = publish_atomic_to(&client, outgoing, timeout).await;
    drop(permit);
    metrics::histogram!("covenant_group_commit_batch_appends").record(members.len() as f64);
    match result {
        Ok(ack) if ack.batch_size.is_none_or(|n| n == count as u64) => {
            counts.grouped.fetch_add(members.len() as u64, Ordering::Relaxed);
            metrics::counter!("covenant_group_commit_appends_total").increment(members.len() as u64);
            // A batch is stored contiguously: its last message has the ack's sequence.
            let first_seq = ack.sequence + 1 - count as u64;
            for (m, last) in members.into_iter().zip(last_offsets) {
                let _ = m.reply.send(Turn::Stored(first_seq + last - 1));
            }
        }
        Ok(ack) => {
            // Not the batch we sent: each append is settled alone.
            tracing::warn!(acknowledged = ?ack.batch_size, sent = count, "group commit acknowledged another count");
            for m in members {
                let _ = m.reply.send(Turn::Unsettled(m.messages));
            }
        }
        Err(LogError::Unavailable { outcome_unknown: true, .. }) => {
            for m in members {
                let _ = m.reply.send(Turn::Unsettled(m.messages));
            }
        }
        Err(e) => {
            // Refused as a whole, nothing stored: each goes again alone, where a stale
            // expectation fails only its own command.
            let reason = match &e {
                LogError::Conflict { .. } => "conflict",
                LogError::Unavailable { .. } => "unavailable",
                _ => "refused",
            };
            counts.refused.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("covenant_group_commit_refused_total", "reason" => reason).increment(1);
            tracing::debug!(error = %e, appends = members.len(), "group commit refused; its appends go again alone");
            for m in members {
                let _ = m.reply.send(Turn::Alone(m.messages, None));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(subject: &str, messages: usize) -> Pending {
        let (reply, _) = oneshot::channel();
        let messages = (0..messages).map(|_| (HeaderMap::new(), Bytes::from_static(b"{}"))).collect();
        Pending { subject: subject.to_owned(), expected: 0, messages, reply }
    }

    #[test]
    fn a_batch_takes_one_append_per_subject() {
        let mut batch = Batch::new(pending("a", 1));
        assert!(batch.join(pending("b", 3)).is_ok());
        // Two expectations on one subject in a batch are refused by the server.
        let again = batch.join(pending("a", 1)).expect_err("a second append to `a` waits for the next batch");
        assert_eq!(again.subject, "a");
        assert_eq!((batch.members.len(), batch.count), (2, 4));
    }

    #[test]
    fn a_batch_holds_at_most_the_servers_limit_of_messages() {
        let mut batch = Batch::new(pending("a", MAX_BATCH - 2));
        assert!(batch.join(pending("b", 2)).is_ok());
        assert!(batch.join(pending("c", 1)).is_err(), "a message over the limit waits for the next batch");
        assert_eq!(batch.count, MAX_BATCH);
    }
}
