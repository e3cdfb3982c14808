//! What the personal-data tests need around a real service: `covenant serve` as a child
//! process with its logs collected, a sign-in from another address, and every place
//! personal data could be left (stream messages, tables, bundles) as text.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use base64::Engine as _;
use futures::StreamExt as _;

use crate::harness::{eventually, try_http_exchange};

/// Every test user's password.
pub const PASSWORD: &str = "correct horse battery";
/// The address the user signs in from: loopback, but no other test uses it.
pub const LOGIN_IP: &str = "127.0.0.77";

/// `covenant serve` as a child process, its log lines (stdout and stderr) collected.
pub struct Serve {
    child: Child,
    logs: Arc<Mutex<String>>,
    /// The API address.
    pub addr: std::net::SocketAddr,
}

impl Serve {
    pub fn start(nats_url: &str, db_url: &str, cfg: &covenant_commands::LogConfig, data: &std::path::Path) -> Self {
        let port = covenant_ops::managed::free_port().expect("port");
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut child = Command::new(env!("CARGO_BIN_EXE_covenant"))
            .arg("serve")
            .env("COVENANT_NATS_URL", nats_url)
            .env("COVENANT_DATABASE_URL", db_url)
            .env("COVENANT_STREAM", &cfg.stream)
            .env("COVENANT_SUBJECT_PREFIX", &cfg.subject_prefix)
            .env("COVENANT_HTTP_ADDR", addr.to_string())
            .env("COVENANT_DATA_DIR", data)
            .env("COVENANT_RATE_LIMIT_LOGIN", "off")
            .env("COVENANT_RATE_LIMIT_IP", "off")
            // Every level of every crate: no line may hold the personal data.
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run covenant serve");
        let logs = Arc::new(Mutex::new(String::new()));
        for mut pipe in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    logs.lock().expect("logs").push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Self { child, logs, addr }
    }

    pub async fn ready(&self) {
        let up = eventually(Duration::from_secs(60), async || {
            try_http_exchange(self.addr, "GET", "/api/healthcheck", &[], "").await.is_ok_and(|r| r.status == 200)
        })
        .await;
        assert!(up, "covenant serve did not come up: {}", self.logs());
    }

    pub async fn graphql(&self, query: &str, token: Option<&str>) -> serde_json::Value {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = auth.as_deref() {
            headers.push(("Authorization", a));
        }
        let body = serde_json::json!({ "query": query }).to_string();
        let r = try_http_exchange(self.addr, "POST", "/api/graphql", &headers, &body).await.expect("graphql");
        serde_json::from_str(&r.body).unwrap_or_else(|_| panic!("JSON, got {}", r.body))
    }

    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").clone()
    }

    /// Stops the service (SIGTERM, then its shutdown) and returns every log line.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..100 {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(200)); // the readers drain the pipes
        self.logs()
    }
}

/// A test that fails before [`Serve::stop`] does not leave the service running.
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signs in as `email` from [`LOGIN_IP`]: the GraphQL answer.
pub async fn login_from_elsewhere(addr: std::net::SocketAddr, email: &str) -> serde_json::Value {
    use http_body_util::BodyExt as _;
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_local_address(Some(LOGIN_IP.parse().expect("ip")));
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let query = format!(r#"mutation {{ login(email: "{email}", password: "{PASSWORD}") {{ token }} }}"#);
    let body = serde_json::json!({ "query": query }).to_string();
    let req = hyper::Request::post(format!("http://{addr}/api/graphql"))
        .header("Content-Type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("request");
    let resp = client.request(req).await.expect("login answered");
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("JSON")
}

/// Every message of `stream` as text: subject, each header, payload.
pub async fn stream_text(js: &jetstream::Context, stream: &str) -> Vec<String> {
    let s = js.get_stream(stream).await.expect("stream");
    let last = s.get_info().await.expect("info").state.last_sequence;
    let c = s.create_consumer(consumer::pull::OrderedConfig::default()).await.expect("consumer");
    let mut messages = c.messages().await.expect("messages");
    let mut out = Vec::new();
    while (out.len() as u64) < last {
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next()).await.expect("read").expect("m");
        let m = m.expect("message");
        let mut text = m.subject.to_string();
        for (name, values) in m.headers.iter().flat_map(|h| h.iter()) {
            for v in values {
                text.push_str(&format!("\n{name}: {}", v.as_str()));
            }
        }
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(&m.payload));
        out.push(text);
    }
    out
}

/// Every row of every table of the database, as text.
pub async fn every_row(pool: &sqlx::PgPool) -> String {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'")
            .fetch_all(pool)
            .await
            .expect("tables");
    let mut out = String::new();
    for t in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT to_jsonb(x)::text FROM \"{t}\" x"))
            .fetch_all(pool)
            .await
            .expect("rows");
        out.push_str(&format!("{t}: {}\n", rows.join(" ")));
    }
    out
}

/// Every file of an exported bundle as text, base64 payloads decoded.
pub fn bundle_text(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for f in std::fs::read_dir(dir).expect("bundle") {
        let text = std::fs::read_to_string(f.expect("file").path()).expect("read");
        for line in text.lines() {
            out.push_str(line);
            if let Some(p) = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["payload"].as_str().map(str::to_owned))
            {
                let decoded = base64::engine::general_purpose::STANDARD.decode(p).unwrap_or_default();
                out.push_str(&String::from_utf8_lossy(&decoded));
            }
            out.push('\n');
        }
    }
    out
}

pub fn holds(text: &str, secrets: &[&str]) -> Vec<String> {
    secrets.iter().filter(|s| text.contains(*s)).map(|s| (*s).to_owned()).collect()
}

/// Whether user `id`'s row of the `users` read model comes to show `email` and last login
/// address `ip` within 20 s.
pub async fn user_row_becomes(pool: &sqlx::PgPool, id: &str, email: &str, ip: &str) -> bool {
    eventually(Duration::from_secs(20), async || {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT email, last_login_ip FROM users WHERE id = $1::uuid")
                .bind(id)
                .fetch_optional(pool)
                .await
                .expect("users");
        row.is_some_and(|(e, i)| e == email && i.as_deref() == Some(ip))
    })
    .await
}
