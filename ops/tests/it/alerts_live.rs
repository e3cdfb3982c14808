//! The lag alert end to end: a real Prometheus (Debian's) scrapes a live Covenant every
//! second with the shipped rules, their `for` windows shortened; PostgreSQL is stopped
//! while commands continue, the NATSStreamLag alert is seen firing through Prometheus's
//! API, and resolving once PostgreSQL is back.

use std::time::Duration;

use futures::future::try_join_all;

use crate::harness::{http, register_country, spawn_app};

/// GET `path` from Prometheus: (status, body), or `None` while it is not listening.
async fn get(prom: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    tokio::net::TcpStream::connect(prom).await.ok()?;
    let (status, _, body) = http(prom, "GET", path, &[], "").await;
    Some((status, body))
}

/// Alerts Prometheus reports, as (name, state).
async fn alerts(prom: std::net::SocketAddr) -> Vec<(String, String)> {
    let Some((200, body)) = get(prom, "/api/v1/alerts").await else { return Vec::new() };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
                        x["state"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    assert!(crate::harness::eventually(timeout, async || check().await).await, "{what} within {timeout:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_alert_fires_through_prometheus_while_postgres_is_down_and_resolves() {
    let mut app = spawn_app().await;
    register_country(&app.side, "CH", "Switzerland", 1_000).await;

    // The shipped rules with 5 s `for` windows, scraped and evaluated every second.
    let dir = tempfile::tempdir().expect("tmp");
    let rules =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/prometheus/alerts.yml")).expect("rules");
    let rules: String = rules
        .lines()
        .map(|l| if l.trim_start().starts_with("for: ") { "        for: 5s".to_owned() } else { l.to_owned() } + "\n")
        .collect();
    std::fs::write(dir.path().join("alerts.yml"), rules).expect("write rules");
    let port = covenant_ops::managed::free_port().expect("port");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [alerts.yml]\nscrape_configs:\n  - job_name: covenant\n    static_configs:\n      - targets: [\"{}\"]\n",
            app.addr
        ),
    )
    .expect("write config");
    let _prometheus = Killed(
        std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus runs (./ops/scripts/test.sh installs Debian's prometheus package)"),
    );
    let prom: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");

    {
        until("Prometheus scrapes Covenant", Duration::from_secs(30), async || {
            get(prom, "/api/v1/query?query=up%7Bjob%3D%22covenant%22%7D")
                .await
                .is_some_and(|(s, b)| s == 200 && b.contains("\"1\"]"))
        })
        .await;
        assert!(!alerts(prom).await.iter().any(|(n, _)| n == "NATSStreamLag"), "no lag alert before the outage");

        // PostgreSQL stops; commands go on (the stream does not need it).
        app.pg.stop(true);
        let side = app.side.clone();
        try_join_all((0..16).map(|w| {
            let side = side.clone();
            tokio::spawn(async move {
                let ctx = covenant_commands::CommandContext::system();
                for i in 0..160u64 {
                    let cmd = covenant_domain::CountryCommand::UpdateGdp {
                        gdp_usd: covenant_domain::Usd::new(2_000 + w * 1_000 + i).expect("usd"),
                    };
                    side.countries.execute("CH", cmd, &ctx).await.expect("the command side works without PostgreSQL");
                }
            })
        }))
        .await
        .expect("writers");
        until("NATSStreamLag fires", Duration::from_secs(60), async || {
            alerts(prom).await.iter().any(|(n, s)| n == "NATSStreamLag" && s == "firing")
        })
        .await;

        // PostgreSQL is back: the projections catch up and the alert resolves.
        app.pg.start().await.expect("PostgreSQL restarts");
        until("NATSStreamLag resolves", Duration::from_secs(90), async || {
            !alerts(prom).await.iter().any(|(n, _)| n == "NATSStreamLag")
        })
        .await;
    }
    app.stop().await;
}

/// A child process killed when dropped (also when the test fails).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
