//! Figures read at scrape time into the metrics recorder, so `/metrics` is the exporter's
//! rendering alone: the process (memory, CPU, file descriptors, threads: the BEAM
//! stand-ins, through `metrics-process`), the tokio runtime, the PostgreSQL pool, the log
//! lines dropped.

use metrics::{counter, describe_counter, describe_gauge, gauge};

/// Describes every scrape-time series (call once, after the recorder is installed).
pub fn describe() {
    metrics_process::Collector::default().describe();
    describe_gauge!("tokio_workers", "Worker threads of the tokio runtime.");
    describe_gauge!("tokio_alive_tasks", "Tasks alive in the tokio runtime (runaway concurrency shows here).");
    describe_gauge!("tokio_global_queue_depth", "Tasks waiting in the runtime's global queue.");
    describe_counter!("tokio_busy_seconds_total", "Time the runtime's workers spent busy, in whole seconds.");
    describe_gauge!("db_client_connections", "Connections of the read-model pool by state.");
    describe_gauge!("db_client_connection_max", "Largest size of the read-model pool.");
    describe_counter!(
        "covenant_log_lines_dropped_total",
        "Log lines dropped because the log output (stderr) was not being read and the queue was full."
    );
}

/// Records the process, runtime and pool figures as they are now.
pub fn collect(pool: &sqlx::PgPool) {
    metrics_process::Collector::default().collect();
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let m = handle.metrics();
        gauge!("tokio_workers").set(m.num_workers() as f64);
        gauge!("tokio_alive_tasks").set(m.num_alive_tasks() as f64);
        gauge!("tokio_global_queue_depth").set(m.global_queue_depth() as f64);
        let busy: f64 = (0..m.num_workers()).map(|w| m.worker_total_busy_duration(w).as_secs_f64()).sum();
        counter!("tokio_busy_seconds_total").absolute(busy as u64);
    }
    let size = pool.size();
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(size);
    gauge!("db_client_connections", "state" => "idle").set(f64::from(idle));
    gauge!("db_client_connections", "state" => "used").set(f64::from(size - idle));
    gauge!("db_client_connection_max").set(f64::from(pool.options().get_max_connections()));
    counter!("covenant_log_lines_dropped_total").absolute(covenant_telemetry::dropped_log_lines());
}
