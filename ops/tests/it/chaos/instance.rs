//! A `covenant serve` child process of the chaos suite, and requests to it that report a
//! refused or broken connection instead of panicking.

use super::*;

/// One `covenant serve` child process.
pub(super) struct Instance {
    pub(super) child: Option<Child>,
    env: Vec<(String, String)>,
    pub(super) addr: SocketAddr,
    log: PathBuf,
}

impl Instance {
    pub(super) fn new(nats_url: &str, db_url: &str, cfg: &LogConfig, dir: &std::path::Path, n: usize) -> Self {
        let port = covenant_ops::managed::free_port().expect("port");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let env = vec![
            ("COVENANT_NATS_URL".into(), nats_url.to_owned()),
            ("COVENANT_DATABASE_URL".into(), db_url.to_owned()),
            ("COVENANT_STREAM".into(), cfg.stream.clone()),
            ("COVENANT_SUBJECT_PREFIX".into(), cfg.subject_prefix.clone()),
            ("COVENANT_HTTP_ADDR".into(), addr.to_string()),
            ("COVENANT_RATE_LIMIT_IP".into(), "off".into()),
            ("COVENANT_RATE_LIMIT_USER".into(), "off".into()),
            ("COVENANT_RATE_LIMIT_LOGIN".into(), "off".into()),
            ("COVENANT_PROJECTION_LEASE".into(), "2s".into()),
            ("RUST_LOG".into(), "warn".into()),
        ];
        Self { child: None, env, addr, log: dir.join(format!("serve-{n}.log")) }
    }

    pub(super) async fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_covenant"))
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn covenant serve");
        self.child = Some(child);
        let addr = self.addr;
        let up = crate::harness::eventually(Duration::from_secs(60), async || {
            matches!(request(addr, "GET", "/api/healthcheck", None, "").await, Ok((200, _)))
        })
        .await;
        assert!(up, "covenant serve did not become healthy:\n{}", self.log_text());
    }

    pub(super) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL covenant serve");
            c.wait().expect("reap");
        }
    }

    pub(super) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An exchange that reports a refused or broken connection instead of panicking:
/// (status, body).
pub(super) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Result<(u16, String), String> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json"), ("Accept", "application/graphql-response+json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let exchange = crate::harness::try_http_exchange(addr, method, path, &headers, body);
    let r =
        tokio::time::timeout(Duration::from_secs(40), exchange).await.map_err(|_| "no answer in 40 s".to_owned())??;
    Ok((r.status, r.body))
}

pub(super) async fn graphql(
    addr: SocketAddr,
    token: Option<&str>,
    query: &str,
) -> Result<(u16, serde_json::Value), String> {
    let body = serde_json::json!({ "query": query }).to_string();
    let (status, text) = request(addr, "POST", "/api/graphql", token, &body).await?;
    Ok((status, serde_json::from_str(&text).map_err(|_| format!("{status}: not JSON: {text}"))?))
}
