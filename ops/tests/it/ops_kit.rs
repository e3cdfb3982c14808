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
    assert!(out.contains("SUCCESS: 16 rules found"), "{out}");
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
    assert_eq!(alerts.len(), 16, "{alerts:?}");
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

/// Starts the shipped nats-server config on free ports with a temporary store.
fn shipped_nats(dir: &std::path::Path) -> (std::process::Child, u16) {
    let bin = covenant_ops::managed::nats::locate(None).expect("nats-server >= 2.12");
    let (port, http) =
        (covenant_ops::managed::free_port().expect("port"), covenant_ops::managed::free_port().expect("port"));
    // The shipped file, with this test's ports and store.
    let conf = std::fs::read_to_string(root().join("ops/nats/nats-server.conf"))
        .expect("config")
        .replace("port: 4222", &format!("port: {port}"))
        .replace("http_port: 8222", &format!("http_port: {http}"))
        .replace("/data/jetstream", &dir.join("jetstream").display().to_string());
    std::fs::write(dir.join("nats-server.conf"), conf).expect("write config");
    let child = Command::new(bin)
        .args(["-c", &dir.join("nats-server.conf").display().to_string()])
        .env("NATS_SERVER_NAME", "perm-test")
        .env("NATS_COVENANT_PASSWORD", "covenant-pw")
        .env("NATS_AUDITOR_PASSWORD", "auditor-pw")
        .env("NATS_OPS_PASSWORD", "ops-pw")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server starts");
    (child, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_nats_users_enforce_append_only() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut server, port) = shipped_nats(dir.path());
    let url = |user: &str, pw: &str| format!("nats://{user}:{pw}@127.0.0.1:{port}");
    let mut covenant = Err(String::new());
    for _ in 0..50 {
        match covenant_ops::connect::client(&url("covenant", "covenant-pw")).await {
            Ok(c) => {
                covenant = Ok(c);
                break;
            }
            Err(e) => covenant = Err(format!("{e:#}")),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = covenant.unwrap_or_else(|e| panic!("the covenant user connects: {e}"));
    // A denied JetStream request gets no answer: a short request timeout keeps this quick.
    let covenant = async_nats::ConnectOptions::with_user_and_password("covenant".into(), "covenant-pw".into())
        .request_timeout(Some(std::time::Duration::from_millis(1500)))
        .connect(format!("127.0.0.1:{port}"))
        .await
        .expect("connect");
    let cfg = covenant_commands::LogConfig::default();
    let side =
        covenant_commands::CommandSide::open(covenant.clone(), cfg.clone()).await.expect("covenant creates its stream");
    crate::harness::register_country(&side, "LU", "Luxembourg", 5).await;

    // A wrong password is refused (credentials in the URL are used).
    assert!(covenant_ops::connect::client(&url("covenant", "wrong")).await.is_err());

    // The service's own user cannot rewrite history.
    let js = async_nats::jetstream::new(covenant.clone());
    let stream = js.get_stream(&cfg.stream).await.expect("stream");
    assert!(stream.delete_message(1).await.is_err(), "covenant may not delete a message");
    assert!(js.delete_stream(&cfg.stream).await.is_err(), "covenant may not delete the stream");
    let mut shorter = cfg.stream_config();
    shorter.max_age = std::time::Duration::from_secs(60);
    assert!(js.update_stream(&shorter).await.is_err(), "covenant may not update the stream (a lower limit deletes)");
    let purge = covenant.request(format!("$JS.API.STREAM.PURGE.{}", cfg.stream), "".into()).await;
    assert!(
        purge.map(|m| String::from_utf8_lossy(&m.payload).contains("\"error\"")).unwrap_or(true),
        "covenant may not purge"
    );

    // ... but may erase a user's key (forgetting a user) in its own key bucket.
    let user = uuid::Uuid::new_v4().to_string();
    let email = covenant_domain::Email::parse("perm-test@example.org").expect("email");
    let register = covenant_domain::UserCommand::Register {
        email,
        role: covenant_domain::Role::Viewer,
        actor: covenant_domain::Actor::System,
    };
    let system = covenant_commands::CommandContext::system();
    side.users.execute(&user, register, &system).await.expect("register a user");
    let forgotten = side.forget_user(&user, covenant_domain::Actor::System, &system).await.expect("forget the user");
    assert!(forgotten.key_erased, "the covenant user erases a key: {forgotten:?}");

    // The auditor reads but cannot append.
    let auditor = covenant_ops::connect::client(&url("auditor", "auditor-pw")).await.expect("auditor connects");
    let ajs = async_nats::jetstream::new(auditor.clone());
    let r = covenant_ops::audit::source::verify_stream(&ajs, &cfg.stream, &Default::default(), None, 1, |_, _| {})
        .await
        .expect("the auditor verifies the stream");
    assert_eq!(r.events, 3);
    let published = ajs.publish(format!("{}.country.XX", cfg.subject_prefix), "{}".into()).await;
    let appended = match published {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    assert!(!appended, "the auditor may not append");
    assert_eq!(js.get_stream(&cfg.stream).await.expect("stream").get_info().await.expect("info").state.messages, 3);

    // ops administers.
    let ops =
        async_nats::jetstream::new(covenant_ops::connect::client(&url("ops", "ops-pw")).await.expect("ops connects"));
    assert!(ops.delete_stream(&cfg.stream).await.is_ok(), "ops may delete");
    let _ = server.kill();
    let _ = server.wait();
}
