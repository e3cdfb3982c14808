//! `covenant-bench soak`: minutes of mixed load on the API in a process of its own (the
//! server of `covenant-bench http`), sampling that process's resident memory. After the
//! warm-up, memory must stay flat (every sample within ±10% of their median) and under
//! 256 MiB.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::http::{Target, load};

/// Options of the soak run.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakBench {
    /// Minutes of load in all, warm-up included.
    #[arg(long, default_value_t = 10)]
    pub minutes: u64,
    /// Minutes of warm-up, whose memory samples are shown but not held to the targets.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Share of requests that are `updateGdp` mutations, in percent (the rest are reads).
    #[arg(long, default_value_t = 20)]
    pub mutations: u32,
    /// Seconds between memory samples.
    #[arg(long, default_value_t = 10)]
    pub interval: u64,
}

/// The memory ceiling after warm-up.
const CEILING: u64 = 256 * 1024 * 1024;

/// Runs the soak and prints a line per sample, then the verdicts.
///
/// # Errors
/// Bad options, a service that cannot start, or a failed request.
pub async fn run(o: &SoakBench) -> Result<()> {
    if o.minutes == 0 || o.warmup >= o.minutes {
        bail!("--minutes must be at least 1 and more than --warmup");
    }
    if o.concurrency == 0 || o.interval == 0 || o.mutations > 100 {
        bail!("--concurrency and --interval must be at least 1, --mutations at most 100");
    }
    let t = Target::start().await?;
    println!(
        "soak: {} min of signed-in GraphQL at c={} ({}% updateGdp, the rest reads) against the API in a process of \
         its own; its resident memory every {} s; targets after {} min of warm-up: flat (within ±10% of the median) \
         and under 256 MiB",
        o.minutes, o.concurrency, o.mutations, o.interval, o.warmup
    );
    let client = crate::http::client();
    let started = Instant::now();
    let (end, warm) = (Duration::from_secs(o.minutes * 60), Duration::from_secs(o.warmup * 60));
    let mut after_warmup = Vec::new();
    while started.elapsed() < end {
        let seconds = o.interval.min((end - started.elapsed()).as_secs().max(1));
        let f = load(&client, t.server.addr, o.concurrency, seconds, o.mutations, t.token.clone()).await?;
        let Some(rss) = t.server.rss() else { bail!("the server's memory cannot be read here (not Linux)") };
        let at = started.elapsed();
        let phase = if at <= warm { "warm-up" } else { "" };
        println!(
            "  {:>5.0} s  {:>7.0} req/s  p99 {:>7.2} ms  RSS {:>7.1} MiB  {phase}",
            at.as_secs_f64(),
            f.per_sec,
            f.p99.as_secs_f64() * 1e3,
            mib(rss)
        );
        if at > warm {
            after_warmup.push(rss);
        }
    }
    t.stop().await;
    let mut sorted = after_warmup.clone();
    sorted.sort_unstable();
    let (Some(&min), Some(&max)) = (sorted.first(), sorted.last()) else {
        bail!("no sample after the warm-up: run longer than --warmup by at least --interval");
    };
    let median = sorted[sorted.len() / 2];
    let flat = min as f64 >= 0.9 * median as f64 && max as f64 <= 1.1 * median as f64;
    let verdict = |ok: bool| if ok { "MET" } else { "NOT MET" };
    println!(
        "  RSS after warm-up: median {:.1} MiB, range {:.1}–{:.1} MiB ({:+.1}% / {:+.1}% of the median): flat   {}",
        mib(median),
        mib(min),
        mib(max),
        (min as f64 / median as f64 - 1.0) * 100.0,
        (max as f64 / median as f64 - 1.0) * 100.0,
        verdict(flat)
    );
    println!("  RSS after warm-up under 256 MiB: max {:.1} MiB   {}", mib(max), verdict(max < CEILING));
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
