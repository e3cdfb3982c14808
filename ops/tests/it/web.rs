//! Checks from the JavaScript world against a live server: the `graphql-http` audit suite
//! (GraphQL over HTTP conformance), graphql-js's standard introspection query (what client
//! tooling sends first) and headless Chromium using GraphiQL's docs, completion and editor. The tools live
//! in `ops/tests/web` (installed by the README's test command).

use std::path::PathBuf;
use std::time::Duration;

use crate::harness::spawn_app;

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/web")
}

/// Runs `node <script> <args>` in `ops/tests/web` with `env`; returns (success, stdout +
/// stderr).
async fn node(script: &str, args: &[&str], env: &[(&str, &std::path::Path)]) -> (bool, String) {
    let dir = web_dir();
    assert!(
        dir.join("node_modules").is_dir(),
        "{} has no node_modules: run ./ops/scripts/test.sh, which installs the web test tools",
        dir.display()
    );
    let run = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(&dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .unwrap_or_else(|_| panic!("node {script} did not finish in 180 s"))
        .unwrap_or_else(|e| panic!("node is not installed ({e}): run ./ops/scripts/test.sh"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graphql_http_audit_suite_passes_every_check() {
    let app = spawn_app().await;
    let (ok, report) = node("audit.mjs", &[&format!("http://{}/api/graphql", app.addr)], &[]).await;
    println!("{report}");
    assert!(ok, "graphql-http audits failed:\n{report}");
    assert!(report.contains(" 0 not ok") && !report.contains("\n0 passed"), "{report}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_introspection_query_with_every_option_builds_a_client_schema() {
    let app = spawn_app().await;
    let (ok, report) = node("introspect.mjs", &[&format!("http://{}/api/graphql", app.addr)], &[]).await;
    println!("{report}");
    assert!(ok, "introspection failed:\n{report}");
    assert!(report.contains("covenantFund") && report.contains("mutations"), "{report}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_shows_the_docs_completes_a_field_and_runs_a_query_in_graphiql() {
    let app = spawn_app().await;
    crate::harness::register_country(&app.side, "JP", "Japan", 4_000).await;
    let screenshot = std::env::temp_dir().join(format!("covenant-graphiql-{}.png", std::process::id()));
    let (ok, report) = node("graphiql.mjs", &[&format!("http://{}", app.addr)], &[("SCREENSHOT", &screenshot)]).await;
    println!("{report}");
    assert!(ok, "GraphiQL in Chromium failed:\n{report}");
    assert!(report.contains("\"covenantFund\""), "{report}");
    assert!(report.contains("docs explorer, Query fields:") && report.contains("autocompletion after"), "{report}");
    assert!(screenshot.exists(), "a screenshot of the page was taken");
    std::fs::remove_file(&screenshot).ok();
    app.stop().await;
}
