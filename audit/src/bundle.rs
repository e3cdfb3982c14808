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
use std::io::Read as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::entry::payload_hash;
use crate::hash::{hash_from_b64, hash_to_b64};
use crate::verify::{self, Checked, CheckpointText, KeyRegistry, Record, Report, StreamFacts, Verifier};

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
    let mut blocks = Blocks { file, path: path.display().to_string(), buf: Vec::new(), filled: 0 };
    let origin = manifest.origin.as_str();
    let threads =
        if opts.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { opts.threads };
    let mut read_so_far = 0u64;
    if threads <= 1 {
        // Everything on this thread: the per-core figure.
        blocks.each(|text| {
            for line in lines(text) {
                verifier.push_checked(&check_line(origin, line)?);
                read_so_far += 1;
            }
            progress(read_so_far);
            Ok(())
        })?;
    } else {
        // A reader thread reads each block and has the pool parse and hash its lines
        // (`collect` keeps their order) while this thread runs the sequential checks on the
        // block before.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| BundleError::Malformed(format!("starting {threads} verifier threads: {e}")))?;
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel(2);
            s.spawn(move || {
                let read = blocks.each(|text| {
                    let lines: Vec<&str> = lines(text).collect();
                    let checked = pool.install(|| lines.par_iter().map(|l| check_line(origin, l)).collect());
                    // A send fails once the receiver hung up (it found a malformed block):
                    // stop reading; nobody reads this error.
                    tx.send(checked).map_err(|_| BundleError::Malformed("the verifier stopped reading".into()))
                });
                if let Err(e) = read {
                    let _ = tx.send(Err(e));
                }
            });
            for block in rx {
                let block: Vec<Checked> = block?;
                read_so_far += block.len() as u64;
                verifier.push_all(&block);
                progress(read_so_far);
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

/// A line of `events.ndjson`, its strings borrowed from the line where they hold no escape.
#[derive(Deserialize)]
struct LineRef<'a> {
    seq: u64,
    #[serde(borrow)]
    subject: Cow<'a, str>,
    #[serde(borrow)]
    headers: HeadersRef<'a>,
    #[serde(borrow)]
    payload_sha256: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    payload: Option<Cow<'a, str>>,
}

/// The audit headers of a line (any other header is ignored).
#[derive(Deserialize)]
struct HeadersRef<'a> {
    #[serde(rename = "Audit-V", borrow, default, deserialize_with = "borrowed")]
    audit_v: Option<Cow<'a, str>>,
    #[serde(rename = "Audit-Prev", borrow, default, deserialize_with = "borrowed")]
    prev: Option<Cow<'a, str>>,
    #[serde(rename = "Audit-Hash", borrow, default, deserialize_with = "borrowed")]
    hash: Option<Cow<'a, str>>,
    #[serde(rename = "Event-Id", borrow, default, deserialize_with = "borrowed")]
    event_id: Option<Cow<'a, str>>,
    #[serde(rename = "Event-Type", borrow, default, deserialize_with = "borrowed")]
    event_type: Option<Cow<'a, str>>,
    #[serde(rename = "Aggregate-Version", borrow, default, deserialize_with = "borrowed")]
    version: Option<Cow<'a, str>>,
    #[serde(rename = "Occurred-At", borrow, default, deserialize_with = "borrowed")]
    occurred_at: Option<Cow<'a, str>>,
    #[serde(rename = "Actor", borrow, default, deserialize_with = "borrowed")]
    actor: Option<Cow<'a, str>>,
    #[serde(rename = "Content-Type", borrow, default, deserialize_with = "borrowed")]
    content_type: Option<Cow<'a, str>>,
}

/// An optional string, borrowed from the line where it holds no escape. Serde borrows a
/// `Cow` field only when the field is the `Cow` itself: an `Option<Cow>` field with
/// `#[serde(borrow)]` still copies every string into a new allocation (9% of a bundle's
/// verification time went to those copies, and more to allocating them).
fn borrowed<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'a>>::deserialize(d)?.map(|b| b.0))
}

impl HeadersRef<'_> {
    fn fields(&self) -> verify::Fields<'_> {
        verify::Fields {
            audit_v: self.audit_v.as_deref(),
            prev: self.prev.as_deref(),
            hash: self.hash.as_deref(),
            event_id: self.event_id.as_deref(),
            event_type: self.event_type.as_deref(),
            version: self.version.as_deref(),
            occurred_at: self.occurred_at.as_deref(),
            actor: self.actor.as_deref(),
            content_type: self.content_type.as_deref(),
        }
    }
}

/// Parses and hashes one line. A redacted line (no payload) is checked against the
/// payload hash it keeps.
fn check_line(origin: &str, line: &str) -> Result<Checked, BundleError> {
    let l: LineRef<'_> = serde_json::from_str(line)
        .map_err(|e| BundleError::Malformed(format!("events.ndjson: a line is not an event: {e}")))?;
    let written = hash_from_b64(&l.payload_sha256)
        .map_err(|_| BundleError::Malformed(format!("sequence {}: payload_sha256 is not a base64 SHA-256", l.seq)))?;
    thread_local! {
        /// The decoded payload, its allocation reused from line to line.
        static PAYLOAD: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let actual = match &l.payload {
        Some(p) => PAYLOAD.with_borrow_mut(|buf| {
            buf.clear();
            STANDARD
                .decode_vec(p.as_bytes(), buf)
                .map_err(|_| BundleError::Malformed(format!("sequence {}: the payload is not base64", l.seq)))?;
            Ok(payload_hash(buf))
        })?,
        None => written,
    };
    let written = l.payload.is_some().then_some(written);
    Ok(verify::check_fields(origin, l.seq, &l.subject, &l.headers.fields(), actual, written))
}

/// Bytes of `events.ndjson` read at a time.
const BLOCK: usize = 4 << 20;

/// `events.ndjson` read a block at a time, split into whole lines in place.
struct Blocks {
    file: std::fs::File,
    path: String,
    /// The partial last line of the previous block, then the new block.
    buf: Vec<u8>,
    /// Bytes of `buf` holding file contents.
    filled: usize,
}

impl Blocks {
    /// Calls `f` with each block of whole lines in turn (the last line of a block may
    /// continue into the next one, so it waits for it), until the file ends or `f` fails.
    fn each(&mut self, mut f: impl FnMut(&str) -> Result<(), BundleError>) -> Result<(), BundleError> {
        loop {
            self.buf.resize(self.filled + BLOCK, 0);
            let n = match self.file.read(&mut self.buf[self.filled..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                read => read.map_err(|e| BundleError::Io(self.path.clone(), e))?,
            };
            self.filled += n;
            let eof = n == 0;
            let end = if eof {
                self.filled
            } else {
                self.buf[..self.filled].iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1)
            };
            if end > 0 {
                let text = std::str::from_utf8(&self.buf[..end])
                    .map_err(|_| BundleError::Malformed("events.ndjson is not UTF-8".into()))?;
                f(text)?;
                self.buf.copy_within(end..self.filled, 0);
                self.filled -= end;
            }
            if eof {
                return Ok(());
            }
        }
    }
}

/// The lines of `text` that are not blank.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line's strings are borrowed from it where they hold no escape, and read right
    /// where they do (a JSON writer may escape `/` in base64, or any character as `\u`).
    #[test]
    fn a_line_borrows_its_strings_and_still_reads_escapes() {
        let line = r#"{"seq":7,"subject":"s.country.FR","headers":{"Audit-Hash":"ab\/c=","Actor":"user:\u0041","Event-Id":"e-1","X-Other":"\"ignored\""},"payload_sha256":"p","payload":"cGF5\/bG9hZA=="}"#;
        let l: LineRef<'_> = serde_json::from_str(line).expect("a line");
        assert_eq!((l.seq, l.subject.as_ref(), l.payload_sha256.as_ref()), (7, "s.country.FR", "p"));
        let h = &l.headers;
        assert!(matches!(h.event_id, Some(Cow::Borrowed("e-1"))), "{:?}", h.event_id);
        assert!(matches!(h.hash, Some(Cow::Owned(ref v)) if v == "ab/c="), "{:?}", h.hash);
        assert!(matches!(h.actor, Some(Cow::Owned(ref v)) if v == "user:A"), "{:?}", h.actor);
        assert!(matches!(l.payload, Some(Cow::Owned(ref v)) if v == "cGF5/bG9hZA=="), "{:?}", l.payload);
        assert!(h.audit_v.is_none() && h.prev.is_none() && h.content_type.is_none());
        let plain = line.replace(r"\/", "/");
        let l: LineRef<'_> = serde_json::from_str(&plain).expect("a line");
        assert!(matches!(l.payload, Some(Cow::Borrowed("cGF5/bG9hZA=="))), "{:?}", l.payload);
    }
}
