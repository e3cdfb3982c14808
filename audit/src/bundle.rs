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
use crate::entry::payload_hash;
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
    let mut blocks = Blocks { file, path: path.display().to_string(), buf: Vec::new(), filled: 0, eof: false };
    let mut read_so_far = 0u64;
    let mut take = |batch: Vec<verify::Checked>| {
        read_so_far += batch.len() as u64;
        verifier.push_all(batch);
        progress(read_so_far);
    };
    if threads <= 1 {
        // One thread does everything: the per-core figure.
        while let Some(batch) = blocks.next_checked(&manifest.origin, 1)? {
            take(batch);
        }
    } else {
        // A reader thread reads, parses and hashes (on `threads` threads) the next blocks
        // while this one runs the sequential checks.
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel(2);
            let origin = manifest.origin.as_str();
            s.spawn(move || {
                loop {
                    let next = blocks.next_checked(origin, threads);
                    let last = !matches!(next, Ok(Some(_)));
                    if tx.send(next).is_err() || last {
                        break;
                    }
                }
            });
            for next in rx {
                match next? {
                    Some(batch) => take(batch),
                    None => break,
                }
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

/// Parses and hashes one line; `buf` is reused for the decoded payload.
fn check_line(origin: &str, line: &str, buf: &mut Vec<u8>) -> Result<verify::Checked, BundleError> {
    match scan::scan(line) {
        Some(l) => check_scanned(origin, &l, buf),
        // Outside the fast reader's subset: serde_json reads it, or says what is wrong.
        None => {
            let l: LineRef<'_> = serde_json::from_str(line)
                .map_err(|e| BundleError::Malformed(format!("events.ndjson: a line is not an event: {e}")))?;
            let h = &l.headers;
            let headers = verify::Fields {
                audit_v: h.audit_v.as_deref(),
                prev: h.prev.as_deref(),
                hash: h.hash.as_deref(),
                event_id: h.event_id.as_deref(),
                event_type: h.event_type.as_deref(),
                version: h.version.as_deref(),
                occurred_at: h.occurred_at.as_deref(),
                actor: h.actor.as_deref(),
                content_type: h.content_type.as_deref(),
            };
            let line = scan::Line {
                seq: l.seq,
                subject: &l.subject,
                headers,
                payload_sha256: &l.payload_sha256,
                payload: l.payload.as_deref(),
            };
            check_scanned(origin, &line, buf)
        }
    }
}

/// Hashes a line read by either reader.
fn check_scanned(origin: &str, l: &scan::Line<'_>, buf: &mut Vec<u8>) -> Result<verify::Checked, BundleError> {
    let written = hash_from_b64(l.payload_sha256)
        .map_err(|_| BundleError::Malformed(format!("sequence {}: payload_sha256 is not a base64 SHA-256", l.seq)))?;
    let (actual, written) = match l.payload {
        Some(p) => {
            buf.clear();
            STANDARD
                .decode_vec(p.as_bytes(), buf)
                .map_err(|_| BundleError::Malformed(format!("sequence {}: the payload is not base64", l.seq)))?;
            (payload_hash(buf), Some(written))
        }
        None => (written, None),
    };
    Ok(verify::check_fields(origin, l.seq, l.subject, &l.headers, actual, written))
}

/// Bytes of `events.ndjson` read at a time.
const BLOCK: usize = 8 << 20;

/// `events.ndjson` read a block at a time, split into whole lines in place (no allocation
/// per line).
struct Blocks {
    file: std::fs::File,
    path: String,
    /// The partial last line of the previous block, then the new block (zeroed once, when
    /// it grows; reads overwrite it).
    buf: Vec<u8>,
    /// Bytes of `buf` holding file contents.
    filled: usize,
    eof: bool,
}

impl Blocks {
    /// The next block's events checked on `threads` threads; `None` at the end.
    fn next_checked(&mut self, origin: &str, threads: usize) -> Result<Option<Vec<verify::Checked>>, BundleError> {
        loop {
            if self.eof {
                return Ok(None);
            }
            let start = self.filled;
            if self.buf.len() < start + BLOCK {
                self.buf.resize(start + BLOCK, 0);
            }
            let n = read_full(&mut self.file, &mut self.buf[start..start + BLOCK])
                .map_err(|e| BundleError::Io(self.path.clone(), e))?;
            self.filled += n;
            self.eof = n == 0;
            // Complete lines only; the partial last line waits for the next block (or EOF).
            let end = if self.eof {
                self.filled
            } else {
                self.buf[..self.filled].iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1)
            };
            if end == 0 {
                continue;
            }
            let text = std::str::from_utf8(&self.buf[..end])
                .map_err(|_| BundleError::Malformed("events.ndjson is not UTF-8".into()))?;
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let checked = check_lines(origin, &lines, threads)?;
            self.buf.copy_within(end..self.filled, 0);
            self.filled -= end;
            return Ok(Some(checked));
        }
    }
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
    let part = |chunk: &[&str]| -> Result<Vec<verify::Checked>, BundleError> {
        let mut buf = Vec::with_capacity(1024);
        chunk.iter().map(|l| check_line(origin, l, &mut buf)).collect()
    };
    if threads <= 1 || lines.len() < 1024 {
        return part(lines);
    }
    let per = lines.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = lines.chunks(per).map(|c| s.spawn(move || part(c))).collect();
        let mut out = Vec::with_capacity(lines.len());
        for h in handles {
            out.extend(h.join().map_err(|_| BundleError::Malformed("a verifier thread panicked".into()))??);
        }
        Ok(out)
    })
}
