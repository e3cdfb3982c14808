//! A `covenant serve` child process whose stderr nobody reads (a stuck log shipper): its
//! log lines fill the pipe, and the service must go on answering, count the lines it
//! drops on `/metrics`, and log again once the pipe is read.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::harness::{log_config, nats, pg};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The cheapest request that logs a line: `{ __typename }` over GET.
const TYPENAME: &str = "/api/graphql?query=%7B__typename%7D";

/// GETs `path` with `x-request-id: id`: the status, or an error after 10 s without one.
async fn get(client: &HttpClient, base: &str, path: &str, id: &str) -> Result<(u16, String), String> {
    let req = hyper::Request::get(format!("{base}{path}"))
        .header("x-request-id", id)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| format!("GET {path}: no answer in 10 s"))?
        .map_err(|e| format!("GET {path}: {e:?}"))?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `covenant_log_lines_dropped_total` on the server's `/metrics`.
async fn dropped(client: &HttpClient, base: &str) -> Result<f64, String> {
    let (status, text) = get(client, base, "/metrics", "scrape").await?;
    assert_eq!(status, 200, "/metrics: {text}");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("covenant_log_lines_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no covenant_log_lines_dropped_total on /metrics")))
}

/// The child process, killed when the test ends (passed or not).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_reader_that_stops_reading_does_not_stop_the_service() {
    let server = nats().await;
    let (cluster, _pool) = pg().await;
    let cfg = log_config();
    let data = tempfile::tempdir().expect("data dir");
    let port = covenant_ops::managed::free_port().expect("port");
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_covenant"))
            .arg("serve")
            .env("COVENANT_NATS_URL", server.url())
            .env("COVENANT_DATABASE_URL", cluster.url("covenant"))
            .env("COVENANT_STREAM", &cfg.stream)
            .env("COVENANT_SUBJECT_PREFIX", &cfg.subject_prefix)
            .env("COVENANT_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("COVENANT_DATA_DIR", data.path())
            .env("COVENANT_RATE_LIMIT_IP", "off")
            .env("COVENANT_LOG_FORMAT", "json")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            // A pipe this test holds and does not read until the end.
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn covenant serve"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let up = crate::harness::eventually(Duration::from_secs(60), async || {
        get(&client, &base, "/api/healthcheck", "up").await.is_ok_and(|(s, _)| s == 200)
    })
    .await;
    assert!(up, "covenant serve did not become healthy");

    // One line per request: enough requests fill the pipe (64 KiB) and then the writer's
    // queue (covenant_telemetry::LOG_QUEUE_LINES), after which lines are dropped.
    let started = Instant::now();
    let mut sent = 0usize;
    while dropped(&client, &base).await.expect("scrape while the log is stuck") == 0.0 {
        assert!(started.elapsed() < Duration::from_secs(120), "no line dropped after {sent} requests");
        let batch = futures::future::join_all((0..32).map(|w| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                for i in 0..64 {
                    let (status, body) = get(&client, &base, TYPENAME, &format!("fill-{w}-{i}")).await?;
                    assert_eq!(status, 200, "{body}");
                }
                Ok::<_, String>(())
            }
        }))
        .await;
        for r in batch {
            r.expect("a request while the log is stuck");
        }
        sent += 32 * 64;
    }
    assert!(
        sent > covenant_telemetry::LOG_QUEUE_LINES,
        "lines dropped after only {sent} requests: the queue is smaller than it says"
    );

    // The service answers at once while its log is full.
    let t = Instant::now();
    let (status, body) = get(&client, &base, "/api/healthcheck", "probe").await.expect("health while the log is stuck");
    assert_eq!(status, 200, "{body}");
    assert!(t.elapsed() < Duration::from_secs(5), "health check took {:?}", t.elapsed());

    // Reading the pipe again: the queued lines come out whole, and new ones are written.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let marker = "after-the-stall";
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut lines, mut seen) = (0usize, false);
    while !seen && Instant::now() < deadline {
        get(&client, &base, TYPENAME, marker).await.expect("request after the stall");
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("a torn or non-JSON log line ({e}): {line}"));
            lines += 1;
            seen |= v["request_id"] == marker;
        }
    }
    assert!(seen, "no log line of a request made after the pipe was read again ({lines} lines read)");
    assert!(lines > 1_000, "only {lines} lines came out of the queue");

    drop(child);
    drop(rx);
    let _ = reader.join();
}
