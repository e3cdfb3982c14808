//! A real scrape after a scenario: `promtool check metrics` (Debian's prometheus package)
//! passes on it, it holds every series the alerts and dashboards use, and the 5xx of an
//! induced failure (PostgreSQL stopped) are counted exactly.

use std::io::Write as _;
use std::process::{Command, Stdio};

use covenant_domain::Role;

use crate::harness::{http, spawn_app};

/// The series the seed's alerts and dashboards need (DESIGN section 8), by name.
pub const REQUIRED: &[&str] = &[
    "http_server_request_duration_seconds_bucket",
    "http_server_request_duration_seconds_count",
    "graphql_operation_duration_seconds_bucket",
    "db_client_operation_duration_seconds_bucket",
    "db_client_connections",
    "covenant_commands_total",
    "covenant_command_duration_seconds_bucket",
    "covenant_events_appended_total",
    "covenant_append_duration_seconds_bucket",
    "covenant_projection_lag_events",
    "covenant_projection_events_total",
    "covenant_projection_batch_duration_seconds_bucket",
    "nats_consumer_pending_messages",
    "covenant_fund_usd",
    "covenant_countries",
    "covenant_projects",
    "covenant_users",
    "covenant_projects_created_total",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_threads",
    "tokio_alive_tasks",
    "tokio_workers",
    "covenant_nats_connected",
    "covenant_audit_checkpoint_size",
    "covenant_audit_checkpoint_timestamp_seconds",
    "covenant_audit_unsealed_events",
];

/// The scrape's series names (the part before `{` or the value).
pub fn series_names(scrape: &str) -> std::collections::BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned))
        .collect()
}

fn count_5xx(scrape: &str, route: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| {
            l.starts_with("http_server_request_duration_seconds_count{")
                && l.contains(&format!("route=\"{route}\""))
                && l.contains("status=\"5")
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_scrape_passes_promtool_and_counts_induced_5xx() {
    let mut app = spawn_app().await;
    let admin = app.user_token("ops@example.org", Role::Admin).await;
    for q in [
        r#"mutation { registerCountry(code: "KE", name: "Kenya", gdpUsd: "100") { sequence } }"#,
        r#"mutation { updateGdp(code: "KE", gdpUsd: "120") { sequence } }"#,
        r#"mutation { createProject(countryCode: "KE", name: "Wells", budgetUsd: "10") { sequence } }"#,
        "query Fund { covenantFund { totalUsd countries } }",
        "{ countries(first: 5) { nodes { code } } }",
    ] {
        let (status, body) = app.graphql(q, Some(&admin)).await;
        assert_eq!(status, 200, "{body}");
    }
    // The monitor refreshes the lag gauges every 200 ms here.
    let addr = app.addr;
    let monitored = crate::harness::eventually(std::time::Duration::from_secs(10), async || {
        http(addr, "GET", "/metrics", &[], "").await.2.contains("covenant_projection_lag_events{")
    })
    .await;
    assert!(monitored, "the lag gauges are published");
    let (_, _, before) = http(app.addr, "GET", "/metrics", &[], "").await;

    // An induced failure: PostgreSQL stops; the health check and signed-in requests
    // answer 503, each counted once.
    app.pg.stop(true);
    let mut induced = 0.0;
    for _ in 0..3 {
        let (status, _, _) = http(app.addr, "GET", "/api/healthcheck", &[], "").await;
        assert_eq!(status, 503);
        induced += 1.0;
    }
    let (_, _, after) = http(app.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(count_5xx(&after, "/api/healthcheck") - count_5xx(&before, "/api/healthcheck"), induced);
    app.pg.start().await.expect("PostgreSQL restarts");

    // promtool's own checks (format and lint) on the real scrape.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (./ops/scripts/test.sh installs Debian's prometheus package)");
    promtool.stdin.take().expect("stdin").write_all(after.as_bytes()).expect("write the scrape");
    let out = promtool.wait_with_output().expect("promtool");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}");

    let names = series_names(&after);
    let missing: Vec<&&str> = REQUIRED.iter().filter(|n| !names.contains(**n)).collect();
    assert!(missing.is_empty(), "series missing from the scrape: {missing:?}");
    assert!(
        after.contains(r#"graphql_operation_duration_seconds_count{operation="Fund",type="query"}"#),
        "named operations are labelled"
    );
    app.stop().await;
}
