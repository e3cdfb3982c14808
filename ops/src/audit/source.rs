//! Reading the audit trail from NATS: events as verifier records, the checkpoint stream,
//! the stream's configuration; and verifying the live stream.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_nats::jetstream::{self, consumer, stream};
use covenant_audit::entry::{headers as h, payload_hash};
use covenant_audit::verify::{self, CheckpointText, KeyRegistry, Record, Report, StreamFacts, Verifier};
use futures::StreamExt as _;

pub use covenant_audit::{checkpoints_stream, checkpoints_subject, origin};

/// The append-only settings of a stream, as the verifier checks them.
pub fn facts(cfg: &stream::Config) -> StreamFacts {
    StreamFacts {
        deny_delete: cfg.deny_delete,
        deny_purge: cfg.deny_purge,
        allow_rollup: cfg.allow_rollup,
        max_msgs_per_subject: cfg.max_messages_per_subject,
        max_msgs: cfg.max_messages,
        max_bytes: cfg.max_bytes,
        max_age_secs: cfg.max_age.as_secs(),
    }
}

/// A stored message as a verifier record (the payload hashed here).
pub fn record(seq: u64, subject: &str, headers: Option<&async_nats::HeaderMap>, payload: &[u8]) -> Record {
    Record::from_headers(seq, subject, |k| headers.and_then(|m| m.get(k)).map(|v| v.as_str()), payload_hash(payload))
}

/// Reads every message of `stream` from `from` to `to` (inclusive; deleted ones are
/// skipped by the server), calling `each` with its sequence, subject, headers, payload and
/// server time. `headers_only` leaves payloads out (the sealer needs only `Audit-Hash`).
///
/// # Errors
/// When the server stops answering.
pub async fn scan(
    stream: &stream::Stream,
    from: u64,
    to: u64,
    headers_only: bool,
    mut each: impl FnMut(u64, async_nats::jetstream::Message, chrono::DateTime<chrono::Utc>),
) -> Result<()> {
    if to < from {
        return Ok(());
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from.max(1) },
            headers_only,
            ..Default::default()
        })
        .await
        .context("creating an ordered consumer")?;
    let mut messages = consumer.messages().await.context("reading the stream")?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .context("no message from the server for 30 s")?;
        let m = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => bail!("reading the stream: {e}"),
            None => bail!("the stream's consumer closed"),
        };
        let info = m.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let t = info.published;
        let published = chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()).unwrap_or_default();
        let seq = info.stream_sequence;
        if seq > to {
            return Ok(());
        }
        each(seq, m, published);
        if seq >= to {
            return Ok(());
        }
    }
}

/// Every checkpoint of `events`' checkpoint stream, oldest first (none when the stream
/// does not exist yet).
///
/// # Errors
/// When the server stops answering.
pub async fn checkpoints(js: &jetstream::Context, events: &str) -> Result<Vec<CheckpointText>> {
    // The lookup answers with the stream's state.
    let Ok(s) = js.get_stream(checkpoints_stream(events)).await else { return Ok(Vec::new()) };
    let info = s.cached_info();
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut out = Vec::new();
    if info.state.messages > 0 {
        scan(&s, first, last, false, |seq, m, _| {
            out.push(CheckpointText { index: seq, text: String::from_utf8_lossy(&m.message.payload).into_owned() });
        })
        .await?;
    }
    Ok(out)
}

/// Verifies the live stream `events` and its checkpoints; `progress(read, total)`.
///
/// # Errors
/// When the stream does not exist or the server stops answering (usage errors, exit 3).
pub async fn verify_stream(
    js: &jetstream::Context,
    events: &str,
    registry: &KeyRegistry,
    trusted: Option<&str>,
    threads: usize,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report> {
    let s = js.get_stream(events).await.with_context(|| format!("stream {events} does not exist"))?;
    let info = s.cached_info().clone();
    let config_findings = verify::check_config(&facts(&info.config));
    let cps = checkpoints(js, events).await?;
    let origin = origin(events);
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut verifier =
        Verifier::new(&origin, &cps, registry, trusted, if info.state.messages == 0 { 1 } else { first });
    verifier.reserve(info.state.messages);
    // By default one core reads the stream (with the server): the others check.
    let threads =
        if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()).max(2) - 1 } else { threads };
    if info.state.messages > 0 {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<(u64, jetstream::Message)>>();
        let origin_c = origin.clone();
        // With one checking thread, it parses, hashes and checks each batch itself; with
        // more, a pool parses and hashes (`collect` keeps the order) and this thread runs
        // the sequential checks. Either way, this task reads the next batch meanwhile.
        let pool = if threads > 1 {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
            Some(pool.with_context(|| format!("starting {threads} verifier threads"))?)
        } else {
            None
        };
        let checker = tokio::task::spawn_blocking(move || {
            use rayon::prelude::*;
            while let Some(batch) = rx.blocking_recv() {
                match &pool {
                    Some(pool) => {
                        let checked: Vec<verify::Checked> = pool
                            .install(|| batch.par_iter().map(|(seq, m)| check_message(&origin_c, *seq, m)).collect());
                        verifier.push_all(&checked);
                    }
                    None => batch.iter().for_each(|(seq, m)| verifier.push_checked(&check_message(&origin_c, *seq, m))),
                }
            }
            verifier
        });
        let mut batch = Vec::with_capacity(4096);
        let mut read = 0u64;
        let total = last - first + 1;
        scan(&s, first, last, false, |seq, m, _| {
            batch.push((seq, m));
            read += 1;
            if batch.len() == 4096 {
                tx.send(std::mem::replace(&mut batch, Vec::with_capacity(4096))).ok();
                progress(read, total);
            }
        })
        .await?;
        if !batch.is_empty() {
            tx.send(batch).ok();
        }
        drop(tx);
        verifier = checker.await.context("the verifier thread failed")?;
        progress(read, read);
    }
    let mut report = verifier.finish();
    let mut findings = config_findings;
    findings.append(&mut report.findings);
    report.findings = findings;
    Ok(report)
}

/// The audit headers of a stored message, borrowed, and the payload hash written beside
/// them. The headers are walked once: a lookup by name builds (allocates) a header name
/// each time.
fn audit_fields(m: &jetstream::Message) -> (verify::Fields<'_>, Option<covenant_audit::Hash>) {
    let mut fields = verify::Fields::default();
    let mut written = None;
    for (name, values) in m.message.headers.iter().flat_map(|hm| hm.iter()) {
        // A lookup answers a name's first value; so does this.
        let Some(value) = values.first() else { continue };
        let name: &str = name.as_ref();
        if name == h::AUDIT_PAYLOAD {
            written = covenant_audit::hash_from_b64(value.as_str()).ok();
        } else {
            fields.set(name, value.as_str());
        }
    }
    (fields, written)
}

/// Parses and hashes one stored message.
fn check_message(origin: &str, seq: u64, m: &jetstream::Message) -> verify::Checked {
    let (fields, written) = audit_fields(m);
    verify::check_fields(origin, seq, &m.message.subject, &fields, payload_hash(&m.message.payload), written)
}

/// The `Audit-Hash` leaf of a message, if it has one.
pub fn leaf(m: &async_nats::jetstream::Message) -> Option<covenant_audit::Hash> {
    m.message
        .headers
        .as_ref()
        .and_then(|hm| hm.get(h::AUDIT_HASH))
        .and_then(|v| covenant_audit::hash_from_b64(v.as_str()).ok())
}
