//! The seed's rate limits over HTTP: 429 with `Retry-After` at the threshold, nothing done
//! for a refused request, and recovery after the window. The windows are shortened (the
//! limits are configuration) so the test waits seconds, not minutes.

use std::time::Duration;

use covenant_api::ApiOptions;
use covenant_api::limits::{Limit, LimitSettings};
use covenant_domain::Role;

use crate::harness::{http_exchange, spawn_app_with};

const TYPENAME: &str = r#"{"query":"{ __typename }"}"#;

fn options(limits: LimitSettings) -> ApiOptions {
    ApiOptions { limits, ..Default::default() }
}

async fn post(addr: std::net::SocketAddr, body: &str, token: Option<&str>) -> crate::harness::HttpReply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json"), ("Accept", "application/graphql-response+json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    http_exchange(addr, "POST", "/api/graphql", &headers, body).await
}

fn assert_limited(r: &crate::harness::HttpReply, max_wait: u64) {
    assert_eq!(r.status, 429, "{}", r.body);
    let wait: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After in whole seconds");
    assert!((1..=max_wait).contains(&wait), "Retry-After {wait}");
    let body: serde_json::Value = serde_json::from_str(&r.body).expect("JSON body");
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_limit_refuses_the_request_after_the_burst_and_recovers() {
    let window = Duration::from_secs(6);
    let app = spawn_app_with(options(LimitSettings { per_ip: Limit::new(6, window), ..LimitSettings::off() })).await;
    for i in 0..6 {
        let r = post(app.addr, TYPENAME, None).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
    }
    assert_limited(&post(app.addr, TYPENAME, None).await, 1);
    // GraphiQL is the same route; health and metrics are never limited.
    assert_eq!(http_exchange(app.addr, "GET", "/api/graphql", &[], "").await.status, 429);
    for _ in 0..10 {
        assert_eq!(http_exchange(app.addr, "GET", "/api/healthcheck", &[], "").await.status, 200);
        assert_eq!(http_exchange(app.addr, "GET", "/metrics", &[], "").await.status, 200);
    }
    tokio::time::sleep(window).await;
    for i in 0..6 {
        let r = post(app.addr, TYPENAME, None).await;
        assert_eq!(r.status, 200, "after the window, request {i}: {}", r.body);
    }
    assert_limited(&post(app.addr, TYPENAME, None).await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_limit_counts_each_user_apart() {
    let window = Duration::from_secs(5);
    let app = spawn_app_with(options(LimitSettings { per_user: Limit::new(5, window), ..LimitSettings::off() })).await;
    let alice = app.user_token("alice@example.org", Role::Viewer).await;
    let bob = app.user_token("bob@example.org", Role::Viewer).await;
    for i in 0..5 {
        assert_eq!(post(app.addr, TYPENAME, Some(&alice)).await.status, 200, "alice's request {i}");
    }
    assert_limited(&post(app.addr, TYPENAME, Some(&alice)).await, 1);
    assert_eq!(post(app.addr, TYPENAME, Some(&bob)).await.status, 200, "bob has his own budget");
    assert_eq!(post(app.addr, TYPENAME, None).await.status, 200, "anonymous requests are not per-user");
    tokio::time::sleep(window).await;
    for i in 0..5 {
        assert_eq!(post(app.addr, TYPENAME, Some(&alice)).await.status, 200, "after the window, request {i}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attempts_are_limited_per_address_and_account_and_a_refused_login_records_nothing() {
    // Password hashing is slow: a window long enough that no attempt refills during the test.
    let window = Duration::from_secs(20);
    let app = spawn_app_with(options(LimitSettings { login: Limit::new(4, window), ..LimitSettings::off() })).await;
    let password = "correct horse battery";
    for email in ["carol@example.org", "dave@example.org"] {
        covenant_ops::users::create(&app.side, &app.pool, email, Role::Viewer, password).await.expect("create user");
    }
    let login = |email: &str, password: &str| {
        serde_json::json!({ "query": format!(r#"mutation {{ login(email: "{email}", password: "{password}") {{ token }} }}"#) })
            .to_string()
    };
    for _ in 0..3 {
        let r = post(app.addr, &login("carol@example.org", "wrong password!"), None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("UNAUTHENTICATED"), "{}", r.body);
    }
    let r = post(app.addr, &login("Carol@Example.org", password), None).await;
    assert!(r.body.contains("token"), "the fourth attempt is within the limit: {}", r.body);
    let before = app.side.log.last_sequence().await.expect("info");
    let r = post(app.addr, &login("carol@example.org", password), None).await;
    assert_limited(&r, 5);
    assert!(!r.body.contains("\"token\""), "{}", r.body);
    assert_eq!(app.side.log.last_sequence().await.expect("info"), before, "a refused login records no user.login");
    let r = post(app.addr, &login("dave@example.org", password), None).await;
    assert!(r.body.contains("token"), "another account from the same address is not limited: {}", r.body);

    tokio::time::sleep(window).await;
    let r = post(app.addr, &login("carol@example.org", password), None).await;
    assert!(r.body.contains("token"), "after the window: {}", r.body);
    app.stop().await;
}
