//! Hostile input against a live `covenant serve` child process (its default stacks and
//! workers, rate limits off so every request reaches the guard): more than 20,000 requests
//! generated from the GraphQL grammar (documents, variables, headers and bodies, some of
//! them corrupted), plus every class of attack the guard exists for, each at several sizes.
//! The process must not crash, no answer may be a 5xx or show internals, every GraphQL
//! error must carry a documented code other than `INTERNAL`, every answer's
//! `x-request-id` must be one the logs can carry (a client's too long or odd one is
//! replaced), made-up methods must share the metrics' `_OTHER` label, and a trivial query
//! sent alongside must stay under 100 ms at p99.
//!
//! The README's test command runs this test on its own after the others (`--skip
//! hostile::`, then `hostile::`), so the probe's latency measures the server under hostile
//! load, not the other tests sharing the machine's two cores.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harness::{log_config, nats, pg, register_country};

mod attacks;
mod grammar;
use attacks::*;
use grammar::*;

/// Generated requests (the fixed classes come on top).
const GENERATED: usize = 20_000;
/// Requests in flight at once.
const IN_FLIGHT: usize = 12;
/// The codes the README documents; `INTERNAL` is among them but means a bug.
const CODES: &[&str] =
    &["UNAUTHENTICATED", "FORBIDDEN", "BAD_USER_INPUT", "CONFLICT", "NOT_FOUND", "RATE_LIMITED", "UNAVAILABLE"];
/// Words that only an internal error would show a client.
const INTERNALS: &[&str] = &[
    "panicked",
    "thread '",
    "stack backtrace",
    ".rs:",
    "sqlx",
    "SQLSTATE",
    "error returned from database",
    "invalid byte sequence",
    "PgDatabaseError",
    "async_nats",
    "Os {",
    "overflowed",
];

/// An answer, as the suite reads it.
struct Answer {
    status: u16,
    body: String,
    /// The `x-request-id` the server answered with.
    request_id: Option<Vec<u8>>,
}

async fn send(client: &Client<HttpConnector, Full<Bytes>>, base: &str, r: &Req) -> Result<Answer, String> {
    let mut b = hyper::Request::builder().method(r.method.as_ref()).uri(format!("{base}{}", r.path));
    for (k, v) in &r.headers {
        b = b.header(k.as_str(), hyper::header::HeaderValue::from_bytes(v).map_err(|e| e.to_string())?);
    }
    let req = b.body(Full::new(Bytes::from(r.body.clone()))).map_err(|e| e.to_string())?;
    let res = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| "no answer in 30 s".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let status = res.status().as_u16();
    let request_id = res.headers().get("x-request-id").map(|v| v.as_bytes().to_vec());
    let body = res.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Answer { status, body: String::from_utf8_lossy(&body).into_owned(), request_id })
}

/// What is wrong with an answer, if anything.
fn judge(a: &Answer) -> Option<String> {
    if a.status >= 500 {
        return Some(format!("status {}", a.status));
    }
    // The id is written on every log line of the request: at most REQUEST_ID_MAX visible
    // characters.
    match &a.request_id {
        None => return Some("no x-request-id in the answer".into()),
        Some(id)
            if id.is_empty()
                || id.len() > covenant_api::http::REQUEST_ID_MAX
                || !id.iter().all(u8::is_ascii_graphic) =>
        {
            return Some(format!("x-request-id {:?} echoed", String::from_utf8_lossy(&id[..id.len().min(40)])));
        }
        Some(_) => {}
    }
    if let Some(w) = INTERNALS.iter().find(|w| a.body.contains(**w)) {
        return Some(format!("shows internals ({w:?})"));
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&a.body) {
        for e in v["errors"].as_array().into_iter().flatten() {
            let code = e["extensions"]["code"].as_str().unwrap_or("<none>");
            if !CODES.contains(&code) {
                return Some(format!("error code {code}: {}", e["message"]));
            }
        }
    }
    None
}

fn spawn_serve(env: &[(&str, String)], log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_covenant"))
        .arg("serve")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("COVENANT_RATE_LIMIT_IP", "off")
        .env("COVENANT_RATE_LIMIT_USER", "off")
        .env("COVENANT_RATE_LIMIT_LOGIN", "off")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn covenant serve")
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_hostile_requests_crash_nothing_and_leak_nothing() {
    let server = nats().await;
    let (cluster, pool) = pg().await;
    let cfg = log_config();
    let side = crate::harness::side(&server.url(), &cfg).await;
    register_country(&side, "FR", "France", 3_000).await;
    register_country(&side, "JP", "Japan", 4_000).await;
    let port = covenant_ops::managed::free_port().expect("port");
    let base = format!("http://127.0.0.1:{port}");
    let env = [
        ("COVENANT_NATS_URL", server.url()),
        ("COVENANT_DATABASE_URL", cluster.url("covenant")),
        ("COVENANT_STREAM", cfg.stream.clone()),
        ("COVENANT_SUBJECT_PREFIX", cfg.subject_prefix.clone()),
        ("COVENANT_HTTP_ADDR", format!("127.0.0.1:{port}")),
    ];
    let logfile = tempfile::NamedTempFile::new().expect("log");
    let mut child = spawn_serve(&env, logfile.path());
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let health = Req { method: "GET".into(), path: "/api/healthcheck".into(), headers: Vec::new(), body: Vec::new() };
    let up = crate::harness::eventually(Duration::from_secs(60), async || {
        send(&client, &base, &health).await.is_ok_and(|a| a.status == 200)
    })
    .await;
    assert!(
        up,
        "covenant serve did not become healthy:\n{}",
        std::fs::read_to_string(logfile.path()).unwrap_or_default()
    );

    // A signed-in editor, so generated mutations reach their resolvers too.
    let password = "correct horse battery";
    covenant_ops::users::create(&side, &pool, "steward@hostile.test", covenant_domain::Role::Steward, password)
        .await
        .expect("create user");
    let login =
        post(&format!(r#"mutation {{ login(email: "steward@hostile.test", password: "{password}") {{ token }} }}"#));
    let mut token = String::new();
    let signed_in = crate::harness::eventually(Duration::from_secs(20), async || {
        let Ok(a) = send(&client, &base, &login).await else { return false };
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_default();
        v["data"]["login"]["token"].as_str().map(|t| token = t.to_owned()).is_some()
    })
    .await;
    assert!(signed_in, "the steward signs in");

    // The probe: a trivial query every 10 ms, on its own connection, for the whole run.
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
        tokio::spawn(async move {
            let trivial = post("{ __typename }");
            let mut times = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let a = send(&client, &base, &trivial).await.expect("the probe is answered");
                assert_eq!(a.status, 200, "{}", a.body);
                times.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            times
        })
    };

    let started = Instant::now();
    let classes = classes();
    let mut failures = Vec::new();
    let mut refused_by_code = std::collections::BTreeMap::<String, u64>::new();
    for (what, req) in &classes {
        match send(&client, &base, req).await {
            Ok(a) => {
                if let Some(bad) = judge(&a) {
                    failures.push(format!("{what}: {bad}: {}", a.body.chars().take(300).collect::<String>()));
                }
                let v: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_default();
                let code = v["errors"][0]["extensions"]["code"].as_str().unwrap_or("none").to_owned();
                // Every class is the client's mistake, refused as such, with nothing run.
                if code != "BAD_USER_INPUT" || v.get("data").is_some_and(|d| !d.is_null()) {
                    failures.push(format!("{what}: answered {} {}", a.status, a.body));
                }
                *refused_by_code.entry(code).or_default() += 1;
                println!("{what}: {} {}", a.status, a.body.chars().take(160).collect::<String>());
            }
            Err(e) => failures.push(format!("{what}: {e}")),
        }
    }
    let class_count = classes.len();

    // One fixed sequence in CI; another seed explores other requests (a failure names it).
    let seed = std::env::var("COVENANT_HOSTILE_SEED").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0xC0FE);
    let next = Arc::new(AtomicU64::new(0));
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<u16, u64>::new()));
    let problems = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|w| {
            let (client, base, next, statuses, problems, token) =
                (client.clone(), base.clone(), next.clone(), statuses.clone(), problems.clone(), token.clone());
            tokio::spawn(async move {
                let mut g = Gen { rng: StdRng::seed_from_u64(seed.wrapping_add(w as u64)), budget: 0 };
                while next.fetch_add(1, Ordering::Relaxed) < GENERATED as u64 {
                    let req = g.request(&token);
                    match send(&client, &base, &req).await {
                        Ok(a) => {
                            *statuses.lock().expect("lock").entry(a.status).or_default() += 1;
                            if let Some(bad) = judge(&a) {
                                let body = String::from_utf8_lossy(&req.body).chars().take(300).collect::<String>();
                                problems.lock().expect("lock").push(format!("{bad}: {body} -> {}", a.body));
                            }
                        }
                        Err(e) => problems.lock().expect("lock").push(format!("no answer ({e})")),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    stop.store(true, Ordering::Relaxed);
    let mut times = probe.await.expect("probe");
    let elapsed = started.elapsed();
    times.sort();
    let (p50, p99, max) = (quantile(&times, 0.5), quantile(&times, 0.99), *times.last().expect("samples"));

    let alive = child.try_wait().expect("try_wait").is_none();
    let metrics = send(
        &client,
        &base,
        &Req { method: "GET".into(), path: "/metrics".into(), headers: Vec::new(), body: Vec::new() },
    )
    .await
    .map(|a| a.body)
    .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(logfile.path()).unwrap_or_default();
    let problems = problems.lock().expect("lock").clone();
    println!(
        "hostile suite (COVENANT_HOSTILE_SEED={seed}): {} generated + {class_count} class requests in {:.1} s; statuses {:?}; class codes {refused_by_code:?}; \
         probe {} samples p50 {p50:?} p99 {p99:?} max {max:?}",
        GENERATED,
        elapsed.as_secs_f64(),
        statuses.lock().expect("lock"),
        times.len()
    );
    assert!(alive, "covenant serve died:\n{log}");
    assert!(!log.contains("panicked") && !log.contains("overflowed"), "the server log shows a panic:\n{log}");
    assert!(
        metrics.lines().all(|l| !l.starts_with("covenant_http_panics_total") || l.ends_with(" 0")),
        "a request panicked"
    );
    // Made-up methods share one label: a series per token would grow without bound.
    let methods: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("http_server_request_duration_seconds"))
        .filter_map(|l| l.split("method=\"").nth(1).and_then(|m| m.split('"').next()))
        .collect();
    assert!(methods.contains("_OTHER"), "made-up methods were sent: {methods:?}");
    assert!(methods.iter().all(|m| ["GET", "POST", "_OTHER"].contains(m)), "method labels {methods:?}");
    assert!(failures.is_empty(), "{} class failures:\n{}", failures.len(), failures.join("\n"));
    assert!(
        problems.is_empty(),
        "{} generated failures, first ones:\n{}",
        problems.len(),
        problems[..problems.len().min(20)].join("\n")
    );
    let served: u64 = statuses.lock().expect("lock").values().sum();
    assert_eq!(served, GENERATED as u64, "every generated request was answered");
    assert!(p99 < Duration::from_millis(100), "the trivial query's p99 was {p99:?} (p50 {p50:?}, max {max:?})");
}
