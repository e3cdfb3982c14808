//! The HTTP server's connection bounds against clients that hold connections: headers
//! sent too slowly (slowloris) and idle keep-alive connections are closed after the header
//! timeout, and past the connection bound new clients wait for a place instead of taking
//! the process's last file descriptors.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::{metric_value, spawn_app_serving};

const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
const MAX: usize = 4;

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
    let app = spawn_app_serving(
        covenant_api::ApiOptions { limits: covenant_api::limits::LimitSettings::off(), ..Default::default() },
        covenant_ops::http::Connections { max: MAX, header_timeout: HEADER_TIMEOUT },
    )
    .await;
    assert_eq!(metric_value("http_server_connection_limit", &[]), Some(MAX as f64));

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
