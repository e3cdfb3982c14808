//! Serving the HTTP API from this process: hyper's connection builder over a listener,
//! with what a server facing the internet needs that `axum::serve` does not set: a bound
//! on the connections open at once, and a time limit on a request's headers (which also
//! closes idle keep-alive connections).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::Request;
use covenant_api::AppState;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use metrics::{counter, describe_counter, describe_gauge, gauge};
use tokio::sync::{Semaphore, watch};
use tower::{Service as _, ServiceExt as _};

/// A running HTTP server.
pub struct HttpServer {
    /// The address it listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The server task.
    pub task: tokio::task::JoinHandle<()>,
}

/// What clients may hold of the server's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    /// Most connections open at once (WebSockets included). More wait in the kernel's
    /// listen backlog until one closes, so that the process keeps file descriptors for
    /// PostgreSQL, NATS and its files: lowered at start to what `ulimit -n` leaves.
    pub max: usize,
    /// How long a client has to send a request's headers, counted from its connection or
    /// its previous answer. A connection that sends them slower (slowloris) or sits idle
    /// between requests is closed, and its place freed, after it.
    pub header_timeout: Duration,
}

impl Default for Connections {
    fn default() -> Self {
        Self { max: 4096, header_timeout: Duration::from_secs(10) }
    }
}

/// File descriptors kept back from HTTP connections: the PostgreSQL pool, NATS, the
/// managed servers' pipes, the data directory's files.
const FD_RESERVE: u64 = 256;

/// Serves with [`Connections::default`]; see [`serve_with`].
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(addr: SocketAddr, state: AppState, shutdown: watch::Receiver<bool>) -> Result<HttpServer> {
    serve_with(addr, state, shutdown, Connections::default()).await
}

/// Binds `addr` and serves the API within `connections` until `shutdown` turns true, then
/// stops accepting and drains the connections' requests in flight.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve_with(
    addr: SocketAddr,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
    connections: Connections,
) -> Result<HttpServer> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("binding the HTTP API to {addr} (set COVENANT_HTTP_ADDR or --http-addr to another address)")
    })?;
    let addr = listener.local_addr()?;
    let max = within_fd_limit(connections.max);
    describe_gauge!("http_server_open_connections", "HTTP connections open (WebSockets included).");
    describe_gauge!("http_server_connection_limit", "Most HTTP connections open at once; more wait to be accepted.");
    describe_counter!(
        "http_server_connections_timed_out_total",
        "HTTP connections closed because a request's headers did not arrive in time (slow or idle clients)."
    );
    gauge!("http_server_connection_limit").set(max as f64);
    gauge!("http_server_open_connections").set(0.0);
    counter!("http_server_connections_timed_out_total").increment(0);
    let mut make_service = covenant_api::router(Arc::new(state)).into_make_service_with_connect_info::<SocketAddr>();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(connections.header_timeout);
    // As axum::serve: WebSockets over HTTP/2 use CONNECT.
    builder.http2().enable_connect_protocol();
    let permits = Arc::new(Semaphore::new(max));
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let stop = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        tokio::pin!(stop);
        loop {
            let permit = tokio::select! {
                biased;
                () = &mut stop => break,
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let (stream, peer) = tokio::select! {
                biased;
                () = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_failed(&e).await;
                        continue;
                    }
                },
            };
            let service = make_service.call(peer).await.unwrap_or_else(|e: Infallible| match e {});
            let service = hyper_util::service::TowerToHyperService::new(
                service.map_request(|req: Request<hyper::body::Incoming>| req.map(axum::body::Body::new)),
            );
            let conn =
                graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned());
            gauge!("http_server_open_connections").increment(1.0);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) {
                        counter!("http_server_connections_timed_out_total").increment(1);
                    } else {
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                }
                gauge!("http_server_open_connections").decrement(1.0);
                drop(permit);
            });
        }
        drop(listener);
        graceful.shutdown().await;
    });
    Ok(HttpServer { addr, task })
}

/// `max`, lowered (with a warning) to what the process's file-descriptor limit leaves
/// after [`FD_RESERVE`].
fn within_fd_limit(max: usize) -> usize {
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else { return max };
    let room = usize::try_from(soft.saturating_sub(FD_RESERVE).max(16)).unwrap_or(usize::MAX);
    if room < max {
        tracing::warn!(
            requested = max,
            allowed = room,
            nofile = soft,
            "fewer HTTP connections than asked for: the open-file limit (ulimit -n) leaves only this many"
        );
    }
    max.min(room)
}

/// An `accept` that failed: a connection reset before it was taken is nothing; anything
/// else (the process out of file descriptors, above all) is logged and accepting pauses
/// for a second, as `axum::serve` does.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accepting an HTTP connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
