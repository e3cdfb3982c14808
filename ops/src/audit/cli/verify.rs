//! `covenant audit verify`: the live stream or a bundle, with progress, and the report.

use super::*;

pub(super) async fn verify(
    s: &Settings,
    registry_path: &std::path::Path,
    explicit_registry: Option<PathBuf>,
    bundle: Option<PathBuf>,
    trusted: Option<PathBuf>,
    json: bool,
    threads: usize,
) -> Result<u8> {
    let trusted = match trusted {
        Some(p) => Some(std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let started = Instant::now();
    let bar = if json { indicatif::ProgressBar::hidden() } else { progress_bar("verifying") };
    let report = match &bundle {
        Some(dir) => {
            // An auditor's own registry (--keys) wins over the bundle's copy.
            let registry = match &explicit_registry {
                Some(p) => Some(keys::load_registry(p)?),
                None => None,
            };
            let opts = covenant_audit::bundle::VerifyOptions { registry, trusted, threads };
            let dir = dir.clone();
            let b = bar.clone();
            tokio::task::spawn_blocking(move || covenant_audit::bundle::verify_dir(&dir, &opts, |n| b.set_position(n)))
                .await??
        }
        None => {
            let registry = keys::load_registry(registry_path)?;
            let nats = connect::nats(s).await?;
            let js = async_nats::jetstream::new(connect::client(&nats.url).await?);
            source::verify_stream(&js, &s.stream, &registry, trusted.as_deref(), threads, |n, total| {
                bar.set_length(total);
                bar.set_position(n);
            })
            .await?
        }
    };
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let rate = report.events as f64 / secs.max(1e-9);
    if json {
        let mut v = serde_json::to_value(&report)?;
        v["verdict"] = verdict(&report).into();
        v["exit_code"] = report.exit_code().into();
        v["first_bad"] = serde_json::to_value(report.first_bad())?;
        v["events_per_second"] = rate.round().into();
        v["source"] = bundle
            .as_ref()
            .map_or_else(|| format!("stream {}", s.stream), |b| format!("bundle {}", b.display()))
            .into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_report(&report, bundle.as_deref(), &s.stream, rate);
    }
    Ok(u8::try_from(report.exit_code()).unwrap_or(1))
}

pub(super) fn verdict(r: &Report) -> &'static str {
    match r.exit_code() {
        0 => "ok",
        1 => "tampered",
        _ => "warnings",
    }
}

pub(super) fn print_report(r: &Report, bundle: Option<&std::path::Path>, stream: &str, rate: f64) {
    let source = bundle.map_or_else(|| format!("stream {stream}"), |b| format!("bundle {}", b.display()));
    println!("audit verify: {source} ({})", r.origin);
    println!("  events        {} (to sequence {}), {:.0} events/s", r.events, r.last_sequence, rate);
    println!(
        "  checkpoints   {} (sealed to {}; unsealed tail {} events){}",
        r.checkpoints,
        r.sealed_size,
        r.unsealed_tail,
        r.trusted_size.map(|t| format!("; trusted checkpoint of size {t}")).unwrap_or_default()
    );
    for w in &r.warnings {
        println!("  warning       {w}");
    }
    if r.findings.is_empty() {
        println!(
            "  result        {}",
            if r.warnings.is_empty() { "OK: nothing was altered" } else { "OK with warnings" }
        );
        return;
    }
    println!("  result        TAMPERED: {} finding(s)", r.findings.len() as u64 + r.findings_dropped);
    if let Some(f) = r.first_bad() {
        println!(
            "  first bad     sequence {} {} {}: {}",
            f.sequence.unwrap_or_default(),
            f.subject.as_deref().unwrap_or("-"),
            f.class.as_str(),
            f.detail
        );
    }
    for f in &r.findings {
        let at = f.sequence.map(|s| format!("sequence {s}")).unwrap_or_else(|| "stream".into());
        println!("  - {:<16} {at} {}: {}", f.class.as_str(), f.subject.as_deref().unwrap_or(""), f.detail);
    }
}

pub(super) fn progress_bar(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{pos}}/{{len}} events, {{per_sec}}, ETA {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
