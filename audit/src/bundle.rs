//! Audit bundles: an exported log that verifies offline, with no NATS.
//!
//! A bundle is a directory of four files:
//! - `manifest.json`: format, origin, stream, sequence range, the stream's configuration
//!   at export, redacted event types;
//! - `events.ndjson`: one event per line in stream order: `seq`, `subject`, `time`
//!   (server time), `headers` (the audit headers as stored), `payload_sha256` (base64) and
//!   `payload` (base64), or `redacted: true` and no payload;
//! - `checkpoints.txt`: the signed checkpoints, oldest first, separated by blank lines;
//! - `keys.json`: the key registry.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::encoding::{hash_from_b64, hash_to_b64};
use crate::entry::{Hash, payload_hash};
use crate::scan;
use crate::verify::{self, CheckpointText, KeyRegistry, Record, Report, StreamFacts, Verifier};

/// The bundle format name.
pub const FORMAT: &str = "covenant-audit-bundle/1";

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Log origin (`covenant/<stream>`).
    pub origin: String,
    /// Stream name.
    pub stream: String,
    /// When it was exported (RFC 3339).
    pub exported_at: String,
    /// First sequence in the stream at export.
    pub first_seq: u64,
    /// Last sequence exported.
    pub last_seq: u64,
    /// Events exported.
    pub events: u64,
    /// The stream's configuration at export.
    pub config: StreamFacts,
    /// Event types whose payloads were left out.
    #[serde(default)]
    pub redacted_types: Vec<String>,
}

/// One line of `events.ndjson`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleEvent {
    /// Stream sequence.
    pub seq: u64,
    /// Subject.
    pub subject: String,
    /// Server time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The audit headers as stored.
    pub headers: BTreeMap<String, String>,
    /// Base64 SHA-256 of the payload.
    pub payload_sha256: String,
    /// Base64 payload, absent when redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Whether the payload was left out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

impl BundleEvent {
    /// A line for `record` with `payload`, or only its hash when `redact`.
    pub fn new(record: &Record, time: Option<String>, payload: &[u8], redact: bool) -> Self {
        Self {
            seq: record.seq,
            subject: record.subject.clone(),
            time,
            headers: record.header_pairs().into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            payload_sha256: hash_to_b64(&payload_hash(payload)),
            payload: (!redact).then(|| STANDARD.encode(payload)),
            redacted: redact,
        }
    }
}

/// Splits `checkpoints.txt` into notes (each ends after its signature lines).
pub fn split_checkpoints(text: &str) -> Vec<CheckpointText> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_signatures = false;
    for line in text.lines() {
        if line.is_empty() {
            if in_signatures {
                push_note(&mut out, &mut current);
                in_signatures = false;
            } else if !current.is_empty() {
                current.push('\n');
                in_signatures = true;
            }
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    push_note(&mut out, &mut current);
    out
}

fn push_note(out: &mut Vec<CheckpointText>, current: &mut String) {
    if !current.trim().is_empty() {
        out.push(CheckpointText { index: out.len() as u64 + 1, text: std::mem::take(current) });
    }
    current.clear();
}

/// Joins notes into `checkpoints.txt`.
pub fn join_checkpoints<'a>(notes: impl IntoIterator<Item = &'a str>) -> String {
    notes.into_iter().map(|n| format!("{}\n", n.trim_end())).collect::<Vec<_>>().join("\n")
}

/// Why a bundle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file is missing or unreadable.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A file does not parse.
    #[error("{0}")]
    Malformed(String),
}

/// Options of an offline verification.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// A key registry to use instead of the bundle's own (an auditor's copy).
    pub registry: Option<KeyRegistry>,
    /// A checkpoint the auditor trusts (signed note text).
    pub trusted: Option<String>,
    /// Threads hashing in parallel (0 = all cores).
    pub threads: usize,
}

/// Verifies the bundle in `dir`; `progress` is called with the events read so far.
///
/// # Errors
/// When a file is missing or malformed (a usage error, not a finding).
pub fn verify_dir(dir: &Path, opts: &VerifyOptions, mut progress: impl FnMut(u64)) -> Result<Report, BundleError> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).map_err(|e| BundleError::Io(dir.join(name).display().to_string(), e))
    };
    let manifest: Manifest = serde_json::from_str(&read("manifest.json")?)
        .map_err(|e| BundleError::Malformed(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT {
        return Err(BundleError::Malformed(format!("manifest.json: format `{}` is not {FORMAT}", manifest.format)));
    }
    let registry = match &opts.registry {
        Some(r) => r.clone(),
        None => {
            serde_json::from_str(&read("keys.json")?).map_err(|e| BundleError::Malformed(format!("keys.json: {e}")))?
        }
    };
    let checkpoints = split_checkpoints(&read("checkpoints.txt")?);
    let mut verifier =
        Verifier::new(&manifest.origin, &checkpoints, &registry, opts.trusted.as_deref(), manifest.first_seq);
    verifier.reserve(manifest.events);
    let config = verify::check_config(&manifest.config);
    let path = dir.join("events.ndjson");
    let file = std::fs::File::open(&path).map_err(|e| BundleError::Io(path.display().to_string(), e))?;
    let threads =
        if opts.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { opts.threads };
    let block = if threads <= 1 { BLOCK } else { PARALLEL_BLOCK };
    let mut blocks = Blocks { file, path: path.display().to_string(), block, buf: Vec::new(), filled: 0, eof: false };
    let mut read_so_far = 0u64;
    let mut take = |batch: &[verify::Checked]| {
        read_so_far += batch.len() as u64;
        verifier.push_all(batch);
        progress(read_so_far);
    };
    if threads <= 1 {
        // One thread does everything: the per-core figure. A few lines at a time, so their
        // results are still in the processor's cache when the sequential checks read them.
        let origin = manifest.origin.as_str();
        let mut checked: Vec<verify::Checked> = std::iter::repeat_with(Default::default).take(CHUNK).collect();
        let mut lanes: [Lane; 2] = Default::default();
        let mut scanner = scan::Scanner::default();
        blocks.each(|text| {
            let mut chunk = Vec::with_capacity(CHUNK);
            let mut lines = lines(text).peekable();
            while lines.peek().is_some() {
                chunk.clear();
                chunk.extend(lines.by_ref().take(CHUNK));
                let slots = &mut checked[..chunk.len()];
                check_chunk(slots, &chunk, &mut scanner, origin, &mut lanes)?;
                take(slots);
            }
            Ok(())
        })?;
    } else {
        // A reader thread reads, parses and hashes (on `threads` threads) the next blocks
        // while this one runs the sequential checks.
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel(2);
            let origin = manifest.origin.as_str();
            s.spawn(move || {
                let read = blocks.each(|text| {
                    let lines: Vec<&str> = lines(text).collect();
                    let checked = check_lines(origin, &lines, threads)?;
                    // A send fails once the receiver hung up (it found a malformed block):
                    // stop reading; nobody reads this error.
                    tx.send(Ok(checked)).map_err(|_| BundleError::Malformed("the verifier stopped reading".into()))
                });
                if let Err(e) = read {
                    let _ = tx.send(Err(e));
                }
            });
            for next in rx {
                take(&next?);
            }
            Ok::<(), BundleError>(())
        })?;
    }
    let mut report = verifier.finish();
    let mut findings = config;
    findings.append(&mut report.findings);
    report.findings = findings;
    Ok(report)
}

/// A line of `events.ndjson`, borrowed from the line (the verifier's hot path).
#[derive(Deserialize)]
struct LineRef<'a> {
    seq: u64,
    #[serde(borrow)]
    subject: Cow<'a, str>,
    #[serde(borrow)]
    headers: HeadersRef<'a>,
    #[serde(borrow)]
    payload_sha256: Cow<'a, str>,
    #[serde(borrow, default)]
    payload: Option<Cow<'a, str>>,
}

impl LineRef<'_> {
    /// The line as the fast reader gives it.
    fn view(&self) -> scan::Line<'_> {
        let h = &self.headers;
        scan::Line {
            seq: self.seq,
            subject: &self.subject,
            headers: verify::Fields {
                audit_v: h.audit_v.as_deref(),
                prev: h.prev.as_deref(),
                hash: h.hash.as_deref(),
                event_id: h.event_id.as_deref(),
                event_type: h.event_type.as_deref(),
                version: h.version.as_deref(),
                occurred_at: h.occurred_at.as_deref(),
                actor: h.actor.as_deref(),
                content_type: h.content_type.as_deref(),
            },
            payload_sha256: &self.payload_sha256,
            payload: self.payload.as_deref(),
        }
    }
}

#[derive(Deserialize)]
struct HeadersRef<'a> {
    #[serde(rename = "Audit-V", borrow, default)]
    audit_v: Option<Cow<'a, str>>,
    #[serde(rename = "Audit-Prev", borrow, default)]
    prev: Option<Cow<'a, str>>,
    #[serde(rename = "Audit-Hash", borrow, default)]
    hash: Option<Cow<'a, str>>,
    #[serde(rename = "Event-Id", borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(rename = "Event-Type", borrow, default)]
    event_type: Option<Cow<'a, str>>,
    #[serde(rename = "Aggregate-Version", borrow, default)]
    version: Option<Cow<'a, str>>,
    #[serde(rename = "Occurred-At", borrow, default)]
    occurred_at: Option<Cow<'a, str>>,
    #[serde(rename = "Actor", borrow, default)]
    actor: Option<Cow<'a, str>>,
    #[serde(rename = "Content-Type", borrow, default)]
    content_type: Option<Cow<'a, str>>,
}

/// What a checking thread reuses from line to line, for each of the two lines it checks
/// side by side: the decoded payload and the entry hash's input.
#[derive(Default)]
struct Lane {
    payload: Vec<u8>,
    input: crate::sha::Assembly,
}

/// Parses and hashes `lines` into `slots` (one each), two at a time (see
/// [`check_lines_into`]).
fn check_chunk(
    slots: &mut [verify::Checked],
    lines: &[&str],
    scanner: &mut scan::Scanner,
    origin: &str,
    lanes: &mut [Lane; 2],
) -> Result<(), BundleError> {
    let [l0, l1] = lanes;
    for (slot, line) in slots.chunks_mut(2).zip(lines.chunks(2)) {
        match (slot, line) {
            ([a, b], [la, lb]) => check_lines_into([a, b], [la, lb], scanner, origin, [l0, &mut *l1])?,
            ([a, ..], [la]) => check_lines_into([a], [la], scanner, origin, [l0])?,
            _ => {}
        }
    }
    Ok(())
}

/// Parses and hashes one or two lines into `outs`, their payload and entry hashes worked
/// out side by side (see [`crate::sha::sha256_n`]).
fn check_lines_into<const N: usize>(
    outs: [&mut verify::Checked; N],
    lines: [&str; N],
    scanner: &mut scan::Scanner,
    origin: &str,
    lanes: [&mut Lane; N],
) -> Result<(), BundleError> {
    let (mut started, mut written, mut redacted) = ([false; N], [[0u8; 32]; N], [true; N]);
    for k in 0..N {
        let lane = &mut *lanes[k];
        let slow: LineRef<'_>;
        let l = match scanner.scan(lines[k]) {
            Some(l) => l,
            // Outside the fast reader's subset: serde_json reads it, or says what is wrong.
            None => {
                slow = serde_json::from_str(lines[k])
                    .map_err(|e| BundleError::Malformed(format!("events.ndjson: a line is not an event: {e}")))?;
                slow.view()
            }
        };
        written[k] = hash_from_b64(l.payload_sha256).map_err(|_| {
            BundleError::Malformed(format!("sequence {}: payload_sha256 is not a base64 SHA-256", l.seq))
        })?;
        if let Some(p) = l.payload {
            crate::encoding::decode_into(p.as_bytes(), &mut lane.payload)
                .map_err(|_| BundleError::Malformed(format!("sequence {}: the payload is not base64", l.seq)))?;
            redacted[k] = false;
        }
        started[k] = verify::check_start(&mut *outs[k], &mut lane.input, origin, l.seq, l.subject, &l.headers);
    }
    // A redacted line's payload hash is the one it keeps.
    let actual: [Hash; N] = if redacted.iter().all(|r| !r) {
        crate::sha::sha256_n(std::array::from_fn(|k| &lanes[k].payload[..]))
    } else {
        std::array::from_fn(|k| if redacted[k] { written[k] } else { payload_hash(&lanes[k].payload) })
    };
    let written = std::array::from_fn(|k| (!redacted[k]).then_some(written[k]));
    verify::check_finish(outs, lanes.map(|l| &mut l.input), started, actual, written);
    Ok(())
}

/// Bytes of `events.ndjson` read at a time on one thread: small enough that a block is
/// still in the processor's cache when it is parsed after the read copied it in.
const BLOCK: usize = 256 << 10;

/// Bytes read at a time when several threads parse (each block is split among them).
const PARALLEL_BLOCK: usize = 8 << 20;

/// Lines checked at a time on one thread before the sequential checks take them.
const CHUNK: usize = 128;

/// `events.ndjson` read a block at a time, split into whole lines in place (no allocation
/// per line).
struct Blocks {
    file: std::fs::File,
    path: String,
    /// Bytes read at a time.
    block: usize,
    /// The partial last line of the previous block, then the new block (zeroed once, when
    /// it grows; reads overwrite it).
    buf: Vec<u8>,
    /// Bytes of `buf` holding file contents.
    filled: usize,
    eof: bool,
}

impl Blocks {
    /// Calls `f` with each block of whole lines in turn (the last line of a block may
    /// continue into the next one, so it waits for it), until the file ends or `f` fails.
    fn each(&mut self, mut f: impl FnMut(&str) -> Result<(), BundleError>) -> Result<(), BundleError> {
        while !self.eof {
            let start = self.filled;
            if self.buf.len() < start + self.block {
                self.buf.resize(start + self.block, 0);
            }
            let n = read_full(&mut self.file, &mut self.buf[start..start + self.block])
                .map_err(|e| BundleError::Io(self.path.clone(), e))?;
            self.filled += n;
            self.eof = n == 0;
            let end = if self.eof {
                self.filled
            } else {
                memchr::memrchr(b'\n', &self.buf[..self.filled]).map_or(0, |p| p + 1)
            };
            if end == 0 {
                continue;
            }
            let text = std::str::from_utf8(&self.buf[..end])
                .map_err(|_| BundleError::Malformed("events.ndjson is not UTF-8".into()))?;
            f(text)?;
            self.buf.copy_within(end..self.filled, 0);
            self.filled -= end;
        }
        Ok(())
    }
}

/// The lines of `text` that are not blank, as `str::lines` splits them (a `\r` before the
/// `\n` is not part of the line), found with SIMD.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', text.as_bytes()).chain((!text.ends_with('\n')).then_some(text.len()));
    ends.filter_map(move |end| {
        let line = &text[start..end];
        start = end + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        (!line.trim().is_empty()).then_some(line)
    })
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read as _;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Parses and hashes `lines` on `threads` threads, keeping their order.
fn check_lines(origin: &str, lines: &[&str], threads: usize) -> Result<Vec<verify::Checked>, BundleError> {
    let part = |slots: &mut [verify::Checked], chunk: &[&str]| {
        let mut lanes: [Lane; 2] = Default::default();
        check_chunk(slots, chunk, &mut scan::Scanner::default(), origin, &mut lanes)
    };
    let mut out: Vec<verify::Checked> = std::iter::repeat_with(Default::default).take(lines.len()).collect();
    if threads <= 1 || lines.len() < 1024 {
        part(&mut out, lines)?;
        return Ok(out);
    }
    let per = lines.len().div_ceil(threads);
    std::thread::scope(|s| {
        // This thread checks the first part itself.
        let mut parts = out.chunks_mut(per).zip(lines.chunks(per));
        let first = parts.next();
        let handles: Vec<_> = parts.map(|(slots, chunk)| s.spawn(move || part(slots, chunk))).collect();
        if let Some((slots, chunk)) = first {
            part(slots, chunk)?;
        }
        for h in handles {
            h.join().map_err(|_| BundleError::Malformed("a verifier thread panicked".into()))??;
        }
        Ok::<(), BundleError>(())
    })?;
    Ok(out)
}
