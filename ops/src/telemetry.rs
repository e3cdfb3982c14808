//! The tracing subscriber, built once in `main`.

use tracing_subscriber::EnvFilter;

/// Installs a human-readable subscriber filtered by `RUST_LOG` (default `info`, with
/// async-nats's connection chatter and sqlx's notices at `warn`), writing to stderr.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn,sqlx::postgres::notice=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Histogram buckets in seconds (explicit, so p95 can be aggregated with
/// `histogram_quantile`): 1 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0];

/// Installs the process-wide Prometheus recorder once and returns its handle (later calls
/// return the same handle). Its upkeep runs every 5 s on the current runtime when called
/// inside one.
pub fn install_metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .expect("static, non-empty buckets")
                .install_recorder()
                .expect("the metrics recorder is installed once per process");
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let h = handle.clone();
                rt.spawn(async move {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                        h.run_upkeep();
                    }
                });
            }
            handle
        })
        .clone()
}
