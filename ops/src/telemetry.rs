//! The tracing subscriber, built once in `main`.

use tracing_subscriber::EnvFilter;

/// Installs a human-readable subscriber filtered by `RUST_LOG` (default `info`, with
/// async-nats's connection chatter and sqlx's notices at `warn`), writing to stderr.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn,sqlx::postgres::notice=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
