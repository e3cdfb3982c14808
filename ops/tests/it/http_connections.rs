//! The HTTP server's connection bounds against clients that hold connections: headers
//! sent too slowly (slowloris) and idle keep-alive connections are closed after the header
//! timeout, past the connection bound new clients wait for a place instead of taking the
//! process's last file descriptors, WebSockets count against the bound and must sign in
//! (`connection_init`) in time, HTTP/2 without TLS (no header timeout) is refused, and one
//! client address cannot hold every place, and a request's head (line and headers) is bounded.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::{metric_value, spawn_app_serving};

const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
const MAX: usize = 4;

/// A running Covenant without rate limits, its HTTP server within `connections`.
async fn app_within(connections: covenant_ops::http::Connections) -> crate::harness::TestApp {
    spawn_app_serving(
        covenant_api::ApiOptions { limits: covenant_api::limits::LimitSettings::off(), ..Default::default() },
        connections,
    )
    .await
}

/// Reads until the server closes `stream`: the time it took, or `None` if it was still
/// open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_and_the_bound_makes_newcomers_wait() {
    let app =
        app_within(covenant_ops::http::Connections { max: MAX, header_timeout: HEADER_TIMEOUT, ..Default::default() })
            .await;

    // An idle keep-alive connection: answered, then closed once the timeout has passed.
    let mut idle = TcpStream::connect(app.addr).await.expect("connect");
    idle.write_all(b"GET /api/healthcheck HTTP/1.1\r\nHost: t\r\n\r\n").await.expect("send");
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.expect("answer");
    assert_eq!(&head, b"HTTP/1.1 200");
    let t = closed_within(&mut idle, HEADER_TIMEOUT * 10).await;
    assert!(t.is_some_and(|t| t >= HEADER_TIMEOUT / 2), "an idle keep-alive connection: closed after {t:?}");

    // As many slowloris connections as the bound: half a request's headers, then nothing.
    let mut slow = Vec::new();
    for _ in 0..MAX {
        let mut s = TcpStream::connect(app.addr).await.expect("connect");
        s.write_all(b"GET /api/healthcheck HTTP/1.1\r\nHost: t\r\n").await.expect("send");
        slow.push(s);
    }
    // Let the server take them all before the newcomer arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let newcomer =
        tokio::spawn(async move { crate::harness::http(app.addr, "GET", "/api/healthcheck", &[], "").await });
    for s in &mut slow {
        let t = closed_within(s, HEADER_TIMEOUT * 10).await;
        assert!(t.is_some(), "a connection sending half its headers is still open after {:?}", HEADER_TIMEOUT * 10);
    }
    let (status, _, body) = tokio::time::timeout(HEADER_TIMEOUT * 10, newcomer)
        .await
        .expect("the newcomer is answered once the slow connections are closed")
        .expect("request task");
    assert_eq!(status, 200, "{body}");
    let waited = started.elapsed();
    assert!(
        waited >= HEADER_TIMEOUT / 2,
        "the newcomer was answered after {waited:?}, before any slow connection was closed: the bound of {MAX} did not hold"
    );
    let timed_out = metric_value("http_server_connections_timed_out_total", &[]).unwrap_or(0.0);
    assert!(
        timed_out >= (MAX + 1) as f64,
        "{timed_out} connections counted as timed out, expected at least {}",
        MAX + 1
    );
    app.stop().await;
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A `graphql-transport-ws` socket, signed in anonymously (`connection_init` sent and
/// acknowledged) when `init`.
async fn websocket(addr: std::net::SocketAddr, init: bool) -> Socket {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut req = format!("ws://{addr}/api/graphql").into_client_request().expect("request");
    req.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("WebSocket upgrade");
    if init {
        ws.send(Message::text(r#"{"type":"connection_init","payload":{}}"#)).await.expect("init");
        let ack = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("ack in time");
        assert!(matches!(&ack, Some(Ok(Message::Text(t))) if t.contains("connection_ack")), "{ack:?}");
    }
    ws
}

/// Waits until the server ends `ws`: the time it took, or `None` if it was still open
/// after `within`.
async fn ws_closed_within(ws: &mut Socket, within: Duration) -> Option<Duration> {
    use futures::StreamExt as _;
    let started = Instant::now();
    tokio::time::timeout(within, async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
        started.elapsed()
    })
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_hold_their_place_and_one_that_never_signs_in_is_closed() {
    let app =
        app_within(covenant_ops::http::Connections { max: 2, header_timeout: HEADER_TIMEOUT, ..Default::default() })
            .await;
    // Two sockets fill the bound: one signed in, one that never sends connection_init.
    let mut live = websocket(app.addr, true).await;
    let opened = Instant::now();
    let mut silent = websocket(app.addr, false).await;
    let newcomer =
        tokio::spawn(async move { crate::harness::http(app.addr, "GET", "/api/healthcheck", &[], "").await });
    tokio::time::sleep(HEADER_TIMEOUT * 3).await;
    assert!(!newcomer.is_finished(), "a third connection was served while two WebSockets held the bound of 2");
    // At least: the recorder is the test process's, shared with other tests' servers.
    let open = metric_value("http_server_open_connections", &[]).unwrap_or(0.0);
    assert!(open >= 2.0, "http_server_open_connections {open} with two WebSockets open");

    // The silent socket is closed after the init timeout, and its place goes to the newcomer.
    let limit = covenant_api::http::WS_INIT_TIMEOUT + Duration::from_secs(10);
    let closed = ws_closed_within(&mut silent, limit).await.map(|_| opened.elapsed());
    assert!(
        closed.is_some_and(|t| t >= covenant_api::http::WS_INIT_TIMEOUT - Duration::from_secs(1)),
        "a WebSocket that never sent connection_init: closed after {closed:?} (timeout {:?})",
        covenant_api::http::WS_INIT_TIMEOUT
    );
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(10), newcomer)
        .await
        .expect("the newcomer is answered once the silent socket is closed")
        .expect("request task");
    assert_eq!(status, 200, "{body}");
    let timed_out = metric_value("covenant_websocket_init_timed_out_total", &[]).unwrap_or(0.0);
    assert!(timed_out >= 1.0, "covenant_websocket_init_timed_out_total {timed_out}");
    // The signed-in socket stays open.
    assert!(ws_closed_within(&mut live, Duration::from_millis(500)).await.is_none(), "the signed-in socket was closed");
    drop(live);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_without_tls_is_refused_at_once() {
    // HTTP/2 by prior knowledge has no header timeout: an idle connection would hold its
    // place for ever. The server speaks HTTP/1.1 only and closes such a connection at once.
    let app = app_within(covenant_ops::http::Connections::default()).await;
    let mut s = TcpStream::connect(app.addr).await.expect("connect");
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.expect("preface");
    let t = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(t.is_some(), "an HTTP/2 connection is still open after 5 s (header timeout 10 s)");
    app.stop().await;
}

/// A connection to `to` from the loopback address `from` (127.0.0.2 is a second client).
async fn connect_from(from: [u8; 4], to: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind((from, 0).into()).expect("bind a loopback address");
    socket.connect(to).await.expect("connect")
}

/// A request on a new connection from `from`: the status line, or what went wrong.
async fn health_from(from: [u8; 4], to: std::net::SocketAddr) -> String {
    let mut s = connect_from(from, to).await;
    if let Err(e) = s.write_all(b"GET /api/healthcheck HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await {
        return e.to_string();
    }
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await {
        Ok(Ok(_)) => String::from_utf8_lossy(&answer).lines().next().unwrap_or("nothing").to_owned(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer in 10 s".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_connection() {
    const ONE: [u8; 4] = [127, 0, 0, 1];
    const TWO: [u8; 4] = [127, 0, 0, 2];
    let connections =
        covenant_ops::http::Connections { max: 8, header_timeout: Duration::from_secs(30), per_address: Some(2) };
    let app = app_within(connections).await;
    let refused = metric_value("http_server_connections_refused_total", &[]).unwrap_or(0.0);
    // Two idle connections fill the first address's share (accepted in order, before the third).
    let mut held = vec![connect_from(ONE, app.addr).await, connect_from(ONE, app.addr).await];

    // Its third is answered 503 at once, with a reason, and closed.
    let mut third = connect_from(ONE, app.addr).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut answer))
        .await
        .expect("the third connection is closed at once")
        .expect("read the answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1") && answer.ends_with("from this address; retry later\n"), "{answer}");
    let now = metric_value("http_server_connections_refused_total", &[]).unwrap_or(0.0);
    assert!(now >= refused + 1.0, "http_server_connections_refused_total {refused} -> {now}");

    // Another address is served while the first holds its share.
    assert_eq!(health_from(TWO, app.addr).await, "HTTP/1.1 200 OK");
    // A connection that ends gives its place back to its address.
    drop(held.pop());
    let served = crate::harness::eventually(Duration::from_secs(10), async || {
        health_from(ONE, app.addr).await == "HTTP/1.1 200 OK"
    })
    .await;
    assert!(served, "the first address was not served again after closing one of its connections");
    drop(held);
    app.stop().await;
}

/// The status line of one request sent on a new connection with `headers` added.
async fn status_with_headers(to: std::net::SocketAddr, headers: &str) -> String {
    let mut s = TcpStream::connect(to).await.expect("connect");
    let request = format!("GET /api/healthcheck HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}\r\n");
    if let Err(e) = s.write_all(request.as_bytes()).await {
        return e.to_string();
    }
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await {
        // A server that stops reading closes with our bytes unread, which resets the
        // connection: what arrived before the reset is the answer.
        Ok(_) if !answer.is_empty() => String::from_utf8_lossy(&answer).lines().next().unwrap_or("nothing").to_owned(),
        Ok(Ok(_)) => "nothing".into(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer in 10 s".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_are_bounded() {
    // As the README's limits table says: about 408 KiB of request line and headers (room
    // for a GET whose 64 KiB query is percent-encoded), at most 100 headers; past either,
    // 431 before the service sees the request.
    let app = app_within(covenant_ops::http::Connections::default()).await;
    let big = |n: usize| format!("X-Big: {}\r\n", "a".repeat(n));
    assert_eq!(status_with_headers(app.addr, &big(3 * 64 * 1024)).await, "HTTP/1.1 200 OK");
    // The server stops reading at its bound, so the rest of this head is never read: the
    // 431 may be lost to the reset that closing over unread bytes sends.
    let refused = status_with_headers(app.addr, &big(1024 * 1024)).await;
    assert!(
        refused == "HTTP/1.1 431 Request Header Fields Too Large"
            || refused.contains("reset")
            || refused.contains("pipe"),
        "a 1 MiB header: {refused}"
    );
    let many = |n: usize| (0..n).map(|i| format!("X-{i}: a\r\n")).collect::<String>();
    assert_eq!(status_with_headers(app.addr, &many(90)).await, "HTTP/1.1 200 OK");
    assert_eq!(status_with_headers(app.addr, &many(100)).await, "HTTP/1.1 431 Request Header Fields Too Large");
    app.stop().await;
}
