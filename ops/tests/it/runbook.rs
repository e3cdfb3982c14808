//! Every `covenant` command RUNBOOK.md shows runs, in the order shown, against a live
//! instance (its own nats-server, PostgreSQL, projections and API).

use std::process::Command;

use crate::harness::{register_country, spawn_app};

/// The `covenant` commands of the RUNBOOK's shell blocks, in order.
fn runbook_commands() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../RUNBOOK.md")).expect("RUNBOOK.md");
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = t == "```sh";
            continue;
        }
        if in_sh && (t.starts_with("covenant ") || t.contains("| covenant ")) {
            out.push(t.split("  #").next().unwrap_or(t).trim().to_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_runbook_command_runs_against_a_live_instance() {
    let app = spawn_app().await;
    register_country(&app.side, "IS", "Iceland", 30).await;
    register_country(&app.side, "MT", "Malta", 20).await;
    let commands = runbook_commands();
    assert!(commands.len() >= 12, "{commands:?}");
    let data = tempfile::tempdir().expect("tmp");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_covenant")).parent().expect("bin dir").to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let cfg = app.side.log.config().clone();
    for cmd in &commands {
        let out = Command::new("sh")
            .args(["-c", cmd])
            .env("PATH", &path)
            .env("COVENANT_NATS_URL", app.nats.url())
            .env("COVENANT_DATABASE_URL", app.pg.url("covenant"))
            .env("COVENANT_STREAM", &cfg.stream)
            .env("COVENANT_SUBJECT_PREFIX", &cfg.subject_prefix)
            .env("COVENANT_DATA_DIR", data.path())
            .env("RUST_LOG", "error")
            .env_remove("COVENANT_SEALER_KEY")
            .output()
            .expect("sh runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let code = out.status.code().unwrap_or(-1);
        // `audit verify` exits 2 for warnings only (no checkpoint yet), 0 when all holds.
        let ok = code == 0 || (cmd.starts_with("covenant audit verify") && code == 2);
        assert!(ok, "`{cmd}` exited {code}:\n{text}");
    }
    app.stop().await;
}
