//! Reading the audit trail from NATS: events as verifier records, the checkpoint stream,
//! the stream's configuration; and verifying the live stream.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_nats::jetstream::{self, consumer, stream};
use covenant_audit::entry::{headers as h, payload_hash};
use covenant_audit::sha::{Assembly, sha256_n};
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
    let Ok(mut s) = js.get_stream(checkpoints_stream(events)).await else { return Ok(Vec::new()) };
    let info = s.info().await.context("checkpoint stream info")?;
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
    let mut s = js.get_stream(events).await.with_context(|| format!("stream {events} does not exist"))?;
    let info = s.info().await.context("stream info")?.clone();
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
        // Parsing, hashing and checking run on other threads while this one reads the
        // next batch.
        let checker = tokio::task::spawn_blocking(move || {
            while let Some(batch) = rx.blocking_recv() {
                verifier.push_all(&check_messages(&origin_c, &batch, threads));
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
            written = covenant_audit::encoding::hash_from_b64(value.as_str()).ok();
        } else {
            fields.set(name, value.as_str());
        }
    }
    (fields, written)
}

/// Checks one or two stored messages into `outs`, their hashes worked out side by side
/// (see `covenant_audit::sha::sha256_n`).
fn check_into<const N: usize>(
    outs: [&mut verify::Checked; N],
    origin: &str,
    messages: [&(u64, jetstream::Message); N],
    inputs: [&mut Assembly; N],
) {
    let mut started = [false; N];
    let mut written = [None; N];
    for k in 0..N {
        let (seq, m) = messages[k];
        let (fields, w) = audit_fields(m);
        written[k] = w;
        started[k] = verify::check_start(&mut *outs[k], &mut *inputs[k], origin, *seq, &m.message.subject, &fields);
    }
    let payloads: [covenant_audit::Hash; N] = sha256_n(messages.map(|(_, m)| &m.message.payload[..]));
    verify::check_finish(outs, inputs, started, payloads, written);
}

/// Checks `messages` on `threads` threads, in order, two at a time on each.
pub fn check_messages(origin: &str, messages: &[(u64, jetstream::Message)], threads: usize) -> Vec<verify::Checked> {
    let part = |slots: &mut [verify::Checked], chunk: &[(u64, jetstream::Message)]| {
        let (mut a, mut b) = (Assembly::default(), Assembly::default());
        for (slot, pair) in slots.chunks_mut(2).zip(chunk.chunks(2)) {
            match (slot, pair) {
                ([x, y], [mx, my]) => check_into([x, y], origin, [mx, my], [&mut a, &mut b]),
                ([x, ..], [mx]) => check_into([x], origin, [mx], [&mut a]),
                _ => {}
            }
        }
    };
    let mut out: Vec<verify::Checked> = std::iter::repeat_with(Default::default).take(messages.len()).collect();
    if threads <= 1 || messages.len() < 1024 {
        part(&mut out, messages);
        return out;
    }
    let per = messages.len().div_ceil(threads);
    std::thread::scope(|s| {
        // This thread checks the first part itself.
        let mut parts = out.chunks_mut(per).zip(messages.chunks(per));
        let first = parts.next();
        let handles: Vec<_> = parts.map(|(slots, chunk)| s.spawn(move || part(slots, chunk))).collect();
        if let Some((slots, chunk)) = first {
            part(slots, chunk);
        }
        for h in handles {
            h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
    });
    out
}

/// The `Audit-Hash` leaf of a message, if it has one.
pub fn leaf(m: &async_nats::jetstream::Message) -> Option<covenant_audit::Hash> {
    m.message
        .headers
        .as_ref()
        .and_then(|hm| hm.get(h::AUDIT_HASH))
        .and_then(|v| covenant_audit::encoding::hash_from_b64(v.as_str()).ok())
}
