//! The live event feed over WebSocket (`graphql-transport-ws`), and GraphiQL served with
//! its own assets.

use std::time::Duration;

use covenant_domain::Role;
use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::harness::{http, spawn_app};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: std::net::SocketAddr, init: serde_json::Value) -> Socket {
    let mut req = format!("ws://{addr}/api/graphql").into_client_request().expect("request");
    req.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().expect("header"));
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.expect("WebSocket upgrade");
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()),
        Some("graphql-transport-ws")
    );
    send(&mut ws, serde_json::json!({ "type": "connection_init", "payload": init })).await;
    ws
}

async fn send(ws: &mut Socket, msg: serde_json::Value) {
    ws.send(Message::text(msg.to_string())).await.expect("send");
}

/// The next protocol message (pings answered), or `None` when the server closed.
async fn next(ws: &mut Socket) -> Option<serde_json::Value> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a message within 10 s")?;
        match m.expect("frame") {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).expect("JSON message");
                if v["type"] == "ping" {
                    send(ws, serde_json::json!({ "type": "pong" })).await;
                    continue;
                }
                return Some(v);
            }
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_receives_another_clients_events_in_order() {
    let app = spawn_app().await;
    let admin = app.user_token("admin@example.org", Role::Admin).await;
    let viewer = app.user_token("viewer@example.org", Role::Viewer).await;
    let start = app.side.log.last_sequence().await.expect("info");

    let mut all = connect(app.addr, serde_json::json!({ "Authorization": format!("Bearer {viewer}") })).await;
    assert_eq!(next(&mut all).await.expect("ack")["type"], "connection_ack");
    let query = format!(
        r#"subscription {{ events(afterSequence: "{start}") {{ sequence eventType subject actor payload }} }}"#
    );
    send(&mut all, serde_json::json!({ "id": "all", "type": "subscribe", "payload": { "query": query } })).await;
    let mut updates = connect(app.addr, serde_json::json!({ "authorization": viewer })).await;
    assert_eq!(next(&mut updates).await.expect("ack")["type"], "connection_ack");
    let query = format!(
        r#"subscription {{ events(afterSequence: "{start}", eventTypes: ["country.update"]) {{ sequence eventType }} }}"#
    );
    send(&mut updates, serde_json::json!({ "id": "u", "type": "subscribe", "payload": { "query": query } })).await;

    let (_, body) = app
        .graphql(
            r#"mutation { registerCountry(code: "NO", name: "Norway", gdpUsd: "100") { sequence } }"#,
            Some(&admin),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let mut expected = Vec::new();
    for gdp in 101..=105 {
        let (_, body) = app
            .graphql(&format!(r#"mutation {{ updateGdp(code: "NO", gdpUsd: "{gdp}") {{ sequence }} }}"#), Some(&admin))
            .await;
        expected.push(body["data"]["updateGdp"]["sequence"].as_str().expect("sequence").parse::<i64>().expect("n"));
    }

    let mut seen = Vec::new();
    while seen.len() < 6 {
        let m = next(&mut all).await.expect("an event");
        assert_eq!(m["type"], "next", "{m}");
        assert_eq!(m["id"], "all");
        seen.push(m["payload"]["data"]["events"].clone());
    }
    let sequences: Vec<i64> = seen.iter().map(|e| e["sequence"].as_i64().expect("sequence")).collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "in stream order: {sequences:?}");
    assert_eq!(seen[0]["eventType"], "country.registered");
    assert!(seen[0]["subject"].as_str().is_some_and(|s| s.ends_with(".events.country.NO")), "{}", seen[0]);
    assert_eq!(&sequences[1..], &expected[..], "every update, in order");
    assert_eq!(seen[5]["payload"]["new_gdp_usd"], "105");

    for want in &expected {
        let m = next(&mut updates).await.expect("an update");
        assert_eq!(m["payload"]["data"]["events"]["eventType"], "country.update", "{m}");
        assert_eq!(m["payload"]["data"]["events"]["sequence"].as_i64(), Some(*want), "{m}");
    }

    send(&mut all, serde_json::json!({ "id": "all", "type": "complete" })).await;
    all.close(None).await.ok();
    updates.close(None).await.ok();
    app.stop().await;
}

/// The code of a refused subscription: an execution error arrives as `next` with
/// `errors` (then `complete`), a request error as `error`.
fn error_code(m: &serde_json::Value) -> &str {
    let errors = if m["type"] == "error" { &m["payload"] } else { &m["payload"]["errors"] };
    assert!(m["type"] == "error" || m["payload"]["data"].is_null(), "{m}");
    errors[0]["extensions"]["code"].as_str().unwrap_or("none")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_needs_a_valid_sign_in() {
    let app = spawn_app().await;
    // No token: the connection is accepted, the subscription refused.
    let mut ws = connect(app.addr, serde_json::json!({})).await;
    assert_eq!(next(&mut ws).await.expect("ack")["type"], "connection_ack");
    send(
        &mut ws,
        serde_json::json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { events { sequence } }" } }),
    )
    .await;
    let m = next(&mut ws).await.expect("an answer");
    assert_eq!(error_code(&m), "UNAUTHENTICATED", "{m}");
    assert_eq!(next(&mut ws).await.expect("complete")["type"], "complete");
    // A forged token: the server closes the connection.
    let mut ws = connect(app.addr, serde_json::json!({ "Authorization": "Bearer not.a.token" })).await;
    assert!(next(&mut ws).await.is_none(), "a bad token closes the connection");
    // A bad afterSequence is the client's error.
    let viewer = app.user_token("viewer@example.org", Role::Viewer).await;
    let mut ws = connect(app.addr, serde_json::json!({ "Authorization": format!("Bearer {viewer}") })).await;
    assert_eq!(next(&mut ws).await.expect("ack")["type"], "connection_ack");
    let q = r#"subscription { events(afterSequence: "minus one") { sequence } }"#;
    send(&mut ws, serde_json::json!({ "id": "1", "type": "subscribe", "payload": { "query": q } })).await;
    let m = next(&mut ws).await.expect("an answer");
    assert_eq!(error_code(&m), "BAD_USER_INPUT", "{m}");
    app.stop().await;
}

/// Over WebSocket a document reaches the schema as text, and the guard is that schema's
/// parse step: a document nested deeply enough to overflow the parser's stack, or whose
/// fragments double at each level, is refused with the guard's reason, and the process
/// (this test's own) lives on to answer the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_documents_over_websocket_are_refused_by_the_guard() {
    let app = spawn_app().await;
    let viewer = app.user_token("viewer@example.org", Role::Viewer).await;
    let mut ws = connect(app.addr, serde_json::json!({ "Authorization": format!("Bearer {viewer}") })).await;
    assert_eq!(next(&mut ws).await.expect("ack")["type"], "connection_ack");

    let deep = format!("subscription {}sequence{}", "{ events ".repeat(5000), " }".repeat(5000));
    let mut doubling = String::from("subscription { ...F24 }\nfragment F0 on Subscription { events { sequence } }\n");
    for i in 1..=24 {
        doubling.push_str(&format!("fragment F{i} on Subscription {{ ...F{} ...F{} }}\n", i - 1, i - 1));
    }
    // async-graphql 7.2.1 panics validating a list default of an unknown type.
    let unknown = "subscription S($v: [Nope] = [1]) { events { sequence } }".to_owned();
    for (id, query, reason) in [
        ("deep", deep, "nests brackets more than"),
        ("doubling", doubling, "once its fragments are expanded"),
        ("unknown", unknown, r#"Unknown type \"Nope\""#),
    ] {
        let started = std::time::Instant::now();
        send(&mut ws, serde_json::json!({ "id": id, "type": "subscribe", "payload": { "query": query } })).await;
        let m = next(&mut ws).await.expect("an answer");
        assert_eq!(error_code(&m), "BAD_USER_INPUT", "{id}: {m}");
        assert!(m.to_string().contains(reason), "{id}: {m}");
        assert!(started.elapsed() < Duration::from_secs(2), "{id}: answered in {:?}", started.elapsed());
        if m["type"] == "next" {
            assert_eq!(next(&mut ws).await.expect("complete")["type"], "complete", "{id}");
        }
    }
    let q = r#"subscription { events(afterSequence: "minus one") { sequence } }"#;
    send(&mut ws, serde_json::json!({ "id": "after", "type": "subscribe", "payload": { "query": q } })).await;
    assert_eq!(error_code(&next(&mut ws).await.expect("an answer")), "BAD_USER_INPUT", "still served");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_is_served_with_its_own_assets() {
    let app = spawn_app().await;
    let (status, ctype, page) = http(app.addr, "GET", "/api/graphql", &[("Accept", "text/html")], "").await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(!page.contains("unpkg.com") && !page.contains("https://"), "no CDN: the page works offline");
    let assets: Vec<&str> = page.split(['"', '\'']).filter(|s| s.starts_with("/api/graphiql/")).collect::<Vec<_>>();
    assert_eq!(assets.len(), 4, "{assets:?}");
    for a in assets {
        let (status, ctype, body) = http(app.addr, "GET", a, &[], "").await;
        assert_eq!(status, 200, "{a}");
        assert!(ctype.starts_with("text/javascript") || ctype.starts_with("text/css"), "{a}: {ctype}");
        assert!(body.len() > 1000, "{a}");
    }
    let (status, _, _) = http(app.addr, "GET", "/api/graphiql/../../etc/passwd", &[], "").await;
    assert_eq!(status, 404);
    app.stop().await;
}
