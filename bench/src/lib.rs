//! Benchmarks. Each prints its figure beside a baseline measured in the same run, since
//! absolute times on shared machines drift. They are commands of their own binary
//! (`covenant-bench …`), not tests, and not part of the service's binary.

pub mod audit;
pub mod commands;
pub mod http;
pub mod observability;
pub mod projections;
pub mod soak;

use std::time::Duration;

use hdrhistogram::Histogram;

/// Throughput and latency of one measured run.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    /// Operations per second.
    pub per_sec: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

impl Figures {
    /// From `n` operations over `elapsed` with latencies in microseconds.
    pub fn new(n: u64, elapsed: Duration, h: &Histogram<u64>) -> Self {
        Self {
            per_sec: n as f64 / elapsed.as_secs_f64(),
            p50: Duration::from_micros(h.value_at_quantile(0.5)),
            p99: Duration::from_micros(h.value_at_quantile(0.99)),
        }
    }

    /// A table row.
    pub fn row(&self, label: &str) -> String {
        format!(
            "{label:<28} {:>10.0} /s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            self.per_sec,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        )
    }
}

/// User and system CPU time process `pid` (this process when `None`) has used so far;
/// `None` off Linux or when it cannot be read.
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        let process = match pid {
            None => procfs::process::Process::myself(),
            Some(pid) => procfs::process::Process::new(i32::try_from(pid).ok()?),
        };
        let stat = process.ok()?.stat().ok()?;
        Some(Duration::from_secs_f64((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// A latency histogram in microseconds (1 µs to 60 s, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}
