//! Serving the HTTP API from this process.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use covenant_api::AppState;
use tokio::sync::watch;

/// A running HTTP server.
pub struct HttpServer {
    /// The address it listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The server task.
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds `addr` and serves the API until `shutdown` turns true, then drains in-flight
/// requests.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(addr: SocketAddr, state: AppState, mut shutdown: watch::Receiver<bool>) -> Result<HttpServer> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("binding the HTTP API to {addr} (set COVENANT_HTTP_ADDR or --http-addr to another address)")
    })?;
    let addr = listener.local_addr()?;
    let app = covenant_api::router(Arc::new(state));
    let task = tokio::spawn(async move {
        let stop = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok(HttpServer { addr, task })
}
