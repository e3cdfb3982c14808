//! Figures read at scrape time and appended to `/metrics`: the process (memory, CPU, file
//! descriptors, threads: the BEAM stand-ins), the tokio runtime, and the PostgreSQL pool.
//! Linux `/proc` is read directly; elsewhere the process figures are left out.

use std::fmt::Write as _;

/// Page size of `/proc/self/statm` figures (x86-64 and arm64 Linux use 4 KiB pages).
const PAGE: u64 = 4096;
/// `/proc/self/stat` times are in clock ticks of 1/100 s on Linux.
const TICKS: f64 = 100.0;

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

/// The process figures, in Prometheus text format.
pub fn process_text() -> String {
    let mut out = String::new();
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        let f: Vec<u64> = statm.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        if let [size, resident, ..] = f[..] {
            metric(&mut out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", size * PAGE);
            metric(
                &mut out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                resident * PAGE,
            );
        }
    }
    if let Some(num) = stat_fields() {
        metric(
            &mut out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (num(14) + num(15)) / TICKS,
        );
        metric(&mut out, "process_threads", "gauge", "Number of OS threads in the process.", num(20));
        if let Some(boot) = boot_time() {
            metric(
                &mut out,
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                boot + num(22) / TICKS,
            );
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metric(&mut out, "process_open_fds", "gauge", "Number of open file descriptors.", fds.count());
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits")
        && let Some(max) = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<u64>().ok())
    {
        metric(&mut out, "process_max_fds", "gauge", "Maximum number of open file descriptors.", max);
    }
    out
}

/// Field `i` (1-based, as `proc(5)` numbers them) of `/proc/self/stat`, 0 when absent.
fn stat_fields() -> Option<impl Fn(usize) -> f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let (_, rest) = stat.rsplit_once(") ")?;
    let f: Vec<f64> = rest.split_whitespace().map(|v| v.parse::<f64>().unwrap_or(0.0)).collect();
    Some(move |i: usize| f.get(i - 3).copied().unwrap_or(0.0))
}

/// User and system CPU time of this process so far, in seconds (1/100 s resolution);
/// `None` off Linux.
pub fn cpu_seconds() -> Option<f64> {
    stat_fields().map(|num| (num(14) + num(15)) / TICKS)
}

fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The tokio runtime's figures (stable runtime metrics), in Prometheus text format.
pub fn runtime_text() -> String {
    let mut out = String::new();
    let Ok(handle) = tokio::runtime::Handle::try_current() else { return out };
    let m = handle.metrics();
    metric(&mut out, "tokio_workers", "gauge", "Worker threads of the tokio runtime.", m.num_workers());
    metric(
        &mut out,
        "tokio_alive_tasks",
        "gauge",
        "Tasks alive in the tokio runtime (runaway concurrency shows here).",
        m.num_alive_tasks(),
    );
    metric(
        &mut out,
        "tokio_global_queue_depth",
        "gauge",
        "Tasks waiting in the runtime's global queue.",
        m.global_queue_depth(),
    );
    let busy: f64 = (0..m.num_workers()).map(|w| m.worker_total_busy_duration(w).as_secs_f64()).sum();
    metric(&mut out, "tokio_busy_seconds_total", "counter", "Time the runtime's workers spent busy, in seconds.", busy);
    out
}

/// The PostgreSQL pool's connections by state, in Prometheus text format.
pub fn pool_text(pool: &sqlx::PgPool) -> String {
    let size = pool.size();
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(size);
    let mut out = String::from(
        "# HELP db_client_connections Connections of the read-model pool by state.\n# TYPE db_client_connections gauge\n",
    );
    let _ = writeln!(out, "db_client_connections{{state=\"idle\"}} {idle}");
    let _ = writeln!(out, "db_client_connections{{state=\"used\"}} {}", size - idle);
    let _ = writeln!(
        out,
        "# HELP db_client_connection_max Largest size of the read-model pool.\n# TYPE db_client_connection_max gauge\ndb_client_connection_max {}",
        pool.options().get_max_connections()
    );
    out
}
