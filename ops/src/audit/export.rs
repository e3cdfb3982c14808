//! `covenant audit export DIR`: the stream, its checkpoints and the key registry as a
//! bundle that verifies offline (see `covenant_audit::bundle`).

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use async_nats::jetstream;
use covenant_audit::bundle::{BundleEvent, FORMAT, Manifest, join_checkpoints};
use covenant_audit::verify::KeyRegistry;

use super::source;

/// What an export wrote.
#[derive(Debug, Clone, Copy)]
pub struct Exported {
    /// Events written.
    pub events: u64,
    /// Of which redacted.
    pub redacted: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
}

/// Writes the bundle of stream `events` into `dir` (created; it must be empty), leaving
/// out the payloads of `redact` event types; `progress(done, total)`.
///
/// # Errors
/// A non-empty directory, file errors, NATS errors.
pub async fn export(
    js: &jetstream::Context,
    events: &str,
    registry: &KeyRegistry,
    dir: &Path,
    redact: &[String],
    mut progress: impl FnMut(u64, u64),
) -> Result<Exported> {
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} is not empty: export into a new directory", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stream = js.get_stream(events).await.with_context(|| format!("stream {events} does not exist"))?;
    let info = stream.get_info().await.context("stream info")?;
    let cps = source::checkpoints(js, events).await?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let path = dir.join("events.ndjson");
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
    );
    let (mut n, mut redacted) = (0u64, 0u64);
    let mut failed = None;
    if info.state.messages > 0 {
        let total = last - first + 1;
        source::scan(&stream, first, last, false, |seq, m, time| {
            let r = source::record(seq, &m.message.subject, m.message.headers.as_ref(), &m.message.payload);
            let hide = r.event_type.as_ref().is_some_and(|t| redact.contains(t));
            let line = BundleEvent::new(&r, Some(time.to_rfc3339()), &m.message.payload, hide);
            let written = serde_json::to_writer(&mut out, &line)
                .map_err(std::io::Error::other)
                .and_then(|()| out.write_all(b"\n"));
            if let Err(e) = written {
                failed.get_or_insert(e);
            }
            n += 1;
            redacted += u64::from(hide);
            if n % 4096 == 0 {
                progress(n, total);
            }
        })
        .await?;
    }
    if let Some(e) = failed {
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    out.flush()?;
    progress(n, n);
    let manifest = Manifest {
        format: FORMAT.into(),
        origin: source::origin(events),
        stream: events.into(),
        exported_at: chrono::Utc::now().to_rfc3339(),
        first_seq: if info.state.messages == 0 { 1 } else { first },
        last_seq: last,
        events: n,
        config: source::facts(&info.config),
        redacted_types: redact.to_vec(),
    };
    std::fs::write(dir.join("manifest.json"), serde_json::to_string_pretty(&manifest)? + "\n")?;
    std::fs::write(dir.join("checkpoints.txt"), join_checkpoints(cps.iter().map(|c| c.text.as_str())))?;
    std::fs::write(dir.join("keys.json"), serde_json::to_string_pretty(registry)? + "\n")?;
    Ok(Exported { events: n, redacted, checkpoints: cps.len() as u64 })
}
