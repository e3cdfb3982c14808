//! The operations kit, each piece checked by a real tool: Prometheus config and alert
//! rules (`promtool check config`, `promtool test rules`), Alertmanager routing (`amtool`),
//! the nats-server configs (`nats-server -t`) and docker-compose (the compose specification,
//! `check-jsonschema`). The dashboards' PromQL is checked against a real scrape in
//! `metrics_scrape`.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run ({e}); ./ops/scripts/test.sh installs it"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

#[test]
fn prometheus_config_and_alert_rules_pass_promtool() {
    let out = run(
        "promtool check config",
        Command::new("promtool").args(["check", "config", "ops/prometheus/prometheus.yml"]),
    );
    assert!(out.contains("SUCCESS: 11 rules found"), "{out}");
    let out = run(
        "promtool test rules",
        Command::new("promtool").args(["test", "rules", "ops/prometheus/tests/alerts_test.yml"]),
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_has_a_unit_test_and_a_runbook_playbook() {
    let rules = std::fs::read_to_string(root().join("ops/prometheus/alerts.yml")).expect("alerts.yml");
    let tests = std::fs::read_to_string(root().join("ops/prometheus/tests/alerts_test.yml")).expect("tests");
    let runbook = std::fs::read_to_string(root().join("RUNBOOK.md")).expect("RUNBOOK.md");
    let alerts: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert_eq!(alerts.len(), 11, "{alerts:?}");
    for a in &alerts {
        let fires = tests.matches(&format!("alertname: {a}\n")).count();
        assert!(fires >= 2, "{a}: a test that it fires and one that it does not ({fires} found)");
    }
    for anchor in rules.lines().filter_map(|l| l.split("RUNBOOK.md#").nth(1)) {
        let anchor = anchor.trim_end_matches('"');
        let heading = runbook.lines().any(|l| {
            l.starts_with('#')
                && l.trim_start_matches('#').trim().to_lowercase().replace(' ', "-").replace(['(', ')', ',', ':'], "")
                    == anchor
        });
        assert!(heading, "RUNBOOK.md has no section for #{anchor}");
    }
}

#[test]
fn alertmanager_routes_every_severity_as_the_seed_says() {
    let out = run("amtool routes", &mut Command::new("ops/alertmanager/test-routes.sh"));
    assert!(out.contains("ok: alertname=HighErrorRate severity=critical -> pager-and-on-call"), "{out}");
}

#[test]
fn nats_server_configs_are_valid() {
    let bin = covenant_ops::managed::nats::locate(None).expect("nats-server >= 2.12");
    for conf in ["ops/nats/nats-server.conf", "ops/nats/cluster.conf"] {
        let out = run(
            conf,
            Command::new(&bin)
                .args(["-c", conf, "-t"])
                .env("NATS_SERVER_NAME", "check")
                .env("NATS_COVENANT_PASSWORD", "x")
                .env("NATS_AUDITOR_PASSWORD", "y")
                .env("NATS_OPS_PASSWORD", "z"),
        );
        assert!(out.contains("is valid"), "{out}");
    }
}

#[test]
fn docker_compose_follows_the_compose_specification() {
    let out = run(
        "check-jsonschema",
        Command::new("python3").args([
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            "docker-compose.yml",
        ]),
    );
    assert!(out.contains("ok"), "{out}");
}
