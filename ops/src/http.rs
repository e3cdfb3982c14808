//! Serving the HTTP API from this process: hyper's HTTP/1.1 connections over a listener,
//! with what a server facing the internet needs that `axum::serve` does not set: a bound
//! on the connections open at once (WebSockets included), and a time limit on a request's
//! headers (which also closes idle keep-alive connections).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{ConnectInfo, Request};
use covenant_api::AppState;
use covenant_api::http::ConnectionHold;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::{counter, describe_counter, describe_gauge, gauge};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

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
    /// Most connections open at once, WebSockets included (a WebSocket keeps its
    /// connection's place until it closes). More wait in the kernel's listen backlog until
    /// one closes, so that the process keeps file descriptors for PostgreSQL, NATS and its
    /// files: lowered at start to what `ulimit -n` leaves.
    pub max: usize,
    /// How long a client has to send a request's headers, counted from its connection or
    /// its previous answer. A connection that sends them slower (slowloris) or sits idle
    /// between requests is closed, and its place freed, after it.
    pub header_timeout: Duration,
    /// Most connections open at once from one client address (an IPv6 address's /64
    /// network counts as one), or none. Without it one client could hold every place of
    /// [`Self::max`] and the service would accept no one else; past it, the client's next
    /// connection is answered `503` and closed.
    pub per_address: Option<usize>,
}

impl Default for Connections {
    fn default() -> Self {
        Self { max: 4096, header_timeout: Duration::from_secs(10), per_address: Some(256) }
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
/// stops accepting and waits for the requests in flight (each connection closes after its
/// current answer). WebSockets are not waited for: they end with the process.
///
/// HTTP/1.1 only: HTTP/2 without TLS (prior knowledge) has no header timeout in hyper, so
/// an idle HTTP/2 connection would hold its place for ever. A proxy terminating TLS
/// speaks HTTP/1.1 to the service.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve_with(
    addr: SocketAddr,
    state: AppState,
    shutdown: watch::Receiver<bool>,
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
    describe_counter!(
        "http_server_connections_refused_total",
        "HTTP connections answered 503 and closed: their client address held its most connections already."
    );
    gauge!("http_server_connection_limit").set(max as f64);
    // Not set to 0: the connections of another server in this process (tests) count too.
    gauge!("http_server_open_connections").increment(0.0);
    counter!("http_server_connections_timed_out_total").increment(0);
    counter!("http_server_connections_refused_total").increment(0);
    let addresses = Addresses::new(connections.per_address);
    let router = covenant_api::router(Arc::new(state));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(connections.header_timeout);
    let permits = Arc::new(Semaphore::new(max));
    let task = tokio::spawn(async move {
        // Each connection task holds a receiver: the sender is closed once they all ended.
        let (ended_tx, ended_rx) = watch::channel(());
        let mut stop = shutdown.clone();
        loop {
            let permit = tokio::select! {
                biased;
                () = stopped(&mut stop) => break,
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let (stream, peer) = tokio::select! {
                biased;
                () = stopped(&mut stop) => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_failed(&e).await;
                        continue;
                    }
                },
            };
            let Some(address) = addresses.take(peer.ip()) else {
                drop(permit);
                refuse(stream);
                continue;
            };
            // The connection's place: freed when the connection ends and any WebSocket it
            // became is closed.
            let hold = ConnectionHold::new(Open::new(permit, address));
            // What `into_make_service_with_connect_info` would add, and the place beside it.
            let service = hyper_util::service::TowerToHyperService::new(router.clone().map_request(
                move |mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req.extensions_mut().insert(hold.clone());
                    req.map(axum::body::Body::new)
                },
            ));
            let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
            let (mut stop, ended) = (shutdown.clone(), ended_rx.clone());
            tokio::spawn(async move {
                let _ended = ended;
                tokio::pin!(conn);
                let result = tokio::select! {
                    result = conn.as_mut() => result,
                    () = stopped(&mut stop) => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    if e.is_timeout() {
                        counter!("http_server_connections_timed_out_total").increment(1);
                    } else {
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                }
            });
        }
        drop(listener);
        // Every connection's requests answered (WebSockets are not waited for).
        drop(ended_rx);
        ended_tx.closed().await;
    });
    Ok(HttpServer { addr, task })
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// An open connection's place in the bound and its address's share, counted in
/// `http_server_open_connections`.
struct Open {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _address: AddressHold,
}

impl Open {
    fn new(permit: tokio::sync::OwnedSemaphorePermit, address: AddressHold) -> Self {
        gauge!("http_server_open_connections").increment(1.0);
        Self { _permit: permit, _address: address }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        gauge!("http_server_open_connections").decrement(1.0);
    }
}

/// The connections open per client address, within [`Connections::per_address`].
#[derive(Clone)]
struct Addresses {
    most: Option<usize>,
    open: Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>>,
}

impl Addresses {
    fn new(most: Option<usize>) -> Self {
        Self { most, open: Arc::default() }
    }

    /// A place for one more connection from `ip`, unless its address holds its most.
    fn take(&self, ip: IpAddr) -> Option<AddressHold> {
        let Some(most) = self.most else {
            return Some(AddressHold { addresses: self.clone(), key: None });
        };
        let key = covenant_api::limits::client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if *n >= most {
            return None;
        }
        *n += 1;
        Some(AddressHold { addresses: self.clone(), key: Some(key) })
    }
}

/// One connection's share of its address (none without a bound); given back when dropped.
struct AddressHold {
    addresses: Addresses,
    key: Option<IpAddr>,
}

impl Drop for AddressHold {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut open = self.addresses.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let std::collections::hash_map::Entry::Occupied(mut e) = open.entry(key) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

/// The answer to a connection over its address's bound, written without waiting (a client
/// that does not read it loses it) before the connection is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 57\r\n\
connection: close\r\nretry-after: 1\r\n\r\ntoo many connections open from this address; retry later\n";

/// Answers `503` on a connection refused for its address, and closes it. Best effort, and
/// never waiting: what the client sent already is read first (closing a socket with
/// unread data resets it, and the client may lose the answer), what it sends later is not.
fn refuse(stream: tokio::net::TcpStream) {
    counter!("http_server_connections_refused_total").increment(1);
    let mut sent = [0u8; 4096];
    while matches!(stream.try_read(&mut sent), Ok(n) if n > 0) {}
    let _ = stream.try_write(REFUSED);
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

#[cfg(test)]
mod tests {
    use super::Addresses;

    #[test]
    fn an_address_gets_its_places_back_and_no_bound_takes_none() {
        let ip = "192.0.2.7".parse().expect("address");
        let bounded = Addresses::new(Some(2));
        let (a, b) = (bounded.take(ip).expect("first"), bounded.take(ip).expect("second"));
        assert!(bounded.take(ip).is_none(), "a third place");
        assert!(bounded.take("192.0.2.8".parse().expect("address")).is_some(), "another address");
        drop((a, b));
        assert!(bounded.open.lock().expect("lock").is_empty(), "entries left after every connection ended");
        let unbounded = Addresses::new(None);
        let held: Vec<_> = (0..1000).map(|_| unbounded.take(ip).expect("no bound")).collect();
        assert!(unbounded.open.lock().expect("lock").is_empty() && held.len() == 1000);
    }
}
