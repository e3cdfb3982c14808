//! The HTTP API over a real server: GraphQL queries over the read models, GraphQL-over-HTTP
//! content negotiation, read-your-writes, health and metrics.

use std::time::Duration;

use covenant_commands::CommandContext;
use covenant_domain::{CountryCode, CountryCommand, Name, ProjectCommand, Usd};
use covenant_projections::checkpoint::{PROJECTIONS, wait_for_sequence};

use crate::harness::{graphql, http, http_exchange, log_config, nats, pg, register_country};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_negotiation_read_your_writes_health_and_metrics_over_http() {
    let server = nats().await;
    let (mut cluster, pool) = pg().await;
    let cfg = log_config();
    let side = std::sync::Arc::new(crate::harness::side(&server.url(), &cfg).await);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (api_stop_tx, api_stop_rx) = tokio::sync::watch::channel(false);
    let tasks =
        crate::harness::run_projections(side.log.jetstream(), &cfg.stream, &pool, &stop_rx, Duration::from_millis(200));
    let state = covenant_api::AppState::new(
        pool.clone(),
        crate::harness::client(&server.url()).await,
        cfg.stream.clone(),
        Some(crate::harness::metrics()),
        Some(side.clone()),
        covenant_api::ApiOptions { limits: covenant_api::limits::LimitSettings::off(), ..Default::default() },
    );
    state.follow(&cfg.subject_prefix, api_stop_rx.clone()).await;
    let api = covenant_ops::http::serve("127.0.0.1:0".parse().expect("addr"), state, api_stop_rx).await.expect("serve");
    let addr = api.addr;

    register_country(&side, "US", "United States", 300).await;
    register_country(&side, "FR", "France", 100).await;
    let de = register_country(&side, "DE", "Germany", 200).await;
    let project = uuid::Uuid::new_v4().to_string();
    let create = ProjectCommand::Create {
        country_code: CountryCode::parse("FR").expect("code"),
        name: Name::parse("Rail").expect("name"),
        budget_usd: Usd::new(7).expect("usd"),
    };
    side.projects.execute(&project, create, &CommandContext::system()).await.expect("project");
    let upd = side
        .countries
        .execute("DE", CountryCommand::UpdateGdp { gdp_usd: Usd::new(250).expect("usd") }, &CommandContext::system())
        .await
        .expect("update");
    assert!(upd.sequence > de.sequence);

    // Read-your-writes: with the update's sequence, the query sees it.
    let seq = upd.sequence.to_string();
    let (status, body) = graphql(
        addr,
        r#"{ country(code: "DE") { code name gdpUsd version gdpHistory { gdpUsd deltaBp } } }"#,
        &[("Covenant-Min-Sequence", &seq)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["country"]["gdpUsd"], "250", "{body}");
    assert_eq!(body["data"]["country"]["gdpHistory"][1]["deltaBp"], 2500, "{body}");

    let (_, body) = graphql(addr, "{ countries(first: 2, orderBy: GDP_DESC) { nodes { code gdpUsd } pageInfo { hasNextPage endCursor } totalCount } }", &[]).await;
    let c = &body["data"]["countries"];
    assert_eq!((c["nodes"][0]["code"].as_str(), c["nodes"][1]["code"].as_str()), (Some("US"), Some("DE")), "{body}");
    assert_eq!((c["pageInfo"]["hasNextPage"].as_bool(), c["totalCount"].as_i64()), (Some(true), Some(3)));
    let cursor = c["pageInfo"]["endCursor"].as_str().expect("cursor").to_owned();
    // The count is read only when `totalCount` is selected, by the page's own statement
    // when the page has a row, by a count of its own when it has none (no other test
    // selects `totalCount`).
    let counts = |operation: &str| {
        let part = format!(r#"operation="{operation}""#);
        crate::harness::metric_value("db_client_operation_duration_seconds_count", &[&part]).unwrap_or(0.0)
    };
    let before = (counts("countries_counted"), counts("country_count"));
    assert_eq!(before.0, 1.0, "the page above read its count with its rows");
    let (_, body) = graphql(addr, "{ countries(first: 2) { nodes { code } } }", &[]).await;
    assert_eq!(body["data"]["countries"]["nodes"][0]["code"], "DE", "{body}");
    assert_eq!(
        (counts("countries_counted"), counts("country_count")),
        before,
        "a page without totalCount counts nothing"
    );
    let (_, body) = graphql(addr, "{ countries(first: 0) { totalCount } }", &[]).await;
    assert_eq!(body["data"]["countries"]["totalCount"], 3, "{body}");
    assert_eq!(
        (counts("countries_counted"), counts("country_count")),
        (before.0 + 1.0, before.1),
        "a selected totalCount is read by the page's statement, and no other"
    );
    let (_, body) = graphql(addr, r#"{ countries(after: "WyJaWiIsIjAiXQ") { nodes { code } totalCount } }"#, &[]).await;
    assert_eq!(body["data"]["countries"]["nodes"].as_array().map(Vec::len), Some(0), "{body}");
    assert_eq!(body["data"]["countries"]["totalCount"], 3, "an empty page still has the count: {body}");
    assert_eq!(counts("country_count"), before.1 + 1.0, "an empty page's count is read on its own");
    let (_, body) = graphql(addr, &format!(r#"{{ countries(first: 2, orderBy: GDP_DESC, after: "{cursor}") {{ nodes {{ code }} pageInfo {{ hasNextPage }} }} }}"#), &[]).await;
    assert_eq!(body["data"]["countries"]["nodes"][0]["code"], "FR", "{body}");
    assert_eq!(body["data"]["countries"]["pageInfo"]["hasNextPage"], false);

    let (_, body) = graphql(addr, "{ covenantFund { totalUsd countries projects asOfSequence } projects(countryCode: \"FR\") { nodes { id name budgetUsd status } } }", &[("Covenant-Min-Sequence", &seq)]).await;
    assert_eq!(body["data"]["covenantFund"]["totalUsd"], "650", "{body}");
    assert_eq!(body["data"]["covenantFund"]["projects"], 1);
    assert_eq!(body["data"]["projects"]["nodes"][0]["id"], project.as_str());
    assert_eq!(body["data"]["projects"]["nodes"][0]["status"], "PROPOSED");
    let (_, body) = graphql(
        addr,
        r#"{ auditEvents(last: 2, eventType: "country.registered") { sequence subject eventType actor } }"#,
        &[],
    )
    .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "the audit trail needs a user: {body}");

    // With the projections stopped, a query asking for a newer sequence waits; it answers
    // with the write once they resume.
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.expect("projections stopped");
    }
    let w = side
        .countries
        .execute("FR", CountryCommand::UpdateGdp { gdp_usd: Usd::new(111).expect("usd") }, &CommandContext::system())
        .await
        .expect("update");
    let pending = tokio::spawn({
        let seq = w.sequence.to_string();
        async move { graphql(addr, r#"{ country(code: "FR") { gdpUsd } }"#, &[("Covenant-Min-Sequence", &seq)]).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pending.is_finished(), "the query waits for its sequence");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks =
        crate::harness::run_projections(side.log.jetstream(), &cfg.stream, &pool, &stop_rx, Duration::from_millis(200));
    let (status, body) = pending.await.expect("query");
    assert_eq!((status, body["data"]["country"]["gdpUsd"].as_str()), (200, Some("111")), "{body}");

    // Bad input: a clear code, no internals.
    // A variable of an unknown type inside a list, with a default: async-graphql 7.2.1's
    // validation panics on it (a 500), so the API refuses it first.
    let (status, body) = graphql(addr, "query Q($v: [Nope] = [1]) { covenantFund { totalUsd } }", &[]).await;
    assert_eq!((status, body["errors"][0]["extensions"]["code"].as_str()), (400, Some("BAD_USER_INPUT")), "{body}");
    assert_eq!(body["errors"][0]["message"], r#"Unknown type "Nope""#, "{body}");
    let (_, body) = graphql(addr, r#"{ country(code: "usa") { code } }"#, &[]).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{body}");
    let (_, body) = graphql(addr, "{ countries(first: 100000) { totalCount } }", &[]).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{body}");
    // A sequence the stream has not reached is the client's mistake, answered at once.
    let asked = std::time::Instant::now();
    let (status, body) =
        graphql(addr, "{ country(code: \"US\") { code } }", &[("Covenant-Min-Sequence", "999999")]).await;
    assert_eq!((status, body["errors"][0]["extensions"]["code"].as_str()), (400, Some("BAD_USER_INPUT")), "{body}");
    assert!(asked.elapsed() < Duration::from_secs(2), "refused without waiting");

    // GraphQL over HTTP: status and media type follow Accept.
    let syntax_error = r#"{"query":"{ countries { "}"#;
    for (accept, want_status, want_type) in [
        ("application/graphql-response+json", 400, "application/graphql-response+json"),
        ("application/json", 200, "application/json"),
        ("text/html", 406, "application/json"),
    ] {
        let headers = [("Content-Type", "application/json"), ("Accept", accept)];
        let (status, ctype, _) = http(addr, "POST", "/api/graphql", &headers, syntax_error).await;
        assert_eq!((status, ctype.as_str()), (want_status, want_type), "Accept: {accept}");
    }
    let (status, _, _) = http(addr, "POST", "/api/graphql", &[("Content-Type", "text/plain")], "{}").await;
    assert_eq!(status, 415);
    let (status, ctype, page) = http(addr, "GET", "/api/graphql", &[], "").await;
    assert!(status == 200 && ctype.starts_with("text/html") && page.contains("graphiql"), "{status} {ctype}");

    // A usable `x-request-id` is adopted and echoed; one too long, or not visible ASCII,
    // is replaced by a new UUID (it would be written on every line of the request).
    let echoed = |id: String| async move {
        let r = http_exchange(addr, "GET", "/api/healthcheck", &[("x-request-id", &id)], "").await;
        r.header("x-request-id").unwrap_or_default().to_owned()
    };
    assert_eq!(echoed("edge-7f3a:42".into()).await, "edge-7f3a:42");
    for bad in ["x".repeat(covenant_api::http::REQUEST_ID_MAX + 1), "two words".into()] {
        let id = echoed(bad.clone()).await;
        assert!(id.len() == 36 && uuid::Uuid::parse_str(&id).is_ok(), "{} chars sent, {id:?} echoed", bad.len());
    }

    // Health and metrics.
    let (status, _, body) = http(addr, "GET", "/api/healthcheck", &[], "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""status":"ok""#), "{body}");
    // Any token is a method in HTTP; one the standard does not name is labelled `_OTHER`,
    // so a client cannot add series without bound.
    let (status, _, _) = http(addr, "BREW", "/api/healthcheck", &[], "").await;
    assert_eq!(status, 405);
    let (status, _, text) = http(addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(text.contains(r#"method="_OTHER""#) && !text.contains("BREW"), "{text}");
    assert!(
        text.contains(r#"http_server_request_duration_seconds_bucket{method="POST",route="/api/graphql",status="200""#),
        "{text}"
    );
    assert!(text.contains("covenant_fund_usd"), "{text}");
    assert!(
        text.contains(r#"covenant_commands_total{aggregate="country",command="update_gdp",outcome="ok"}"#),
        "{text}"
    );
    assert!(
        text.contains("covenant_events_appended_total") && text.contains("covenant_append_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains(r#"graphql_operation_duration_seconds_bucket"#), "{text}");

    wait_for_sequence(&pool, &PROJECTIONS, upd.sequence, Duration::from_secs(5)).await.expect("caught up");
    cluster.stop(true);
    let (status, _, body) = http(addr, "GET", "/api/healthcheck", &[], "").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""postgres":"down""#) && body.contains(r#""status":"degraded""#), "{body}");
    let (_, body) = graphql(addr, "{ covenantFund { totalUsd } }", &[]).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAVAILABLE", "no internals leak: {body}");
    assert!(!body.to_string().contains("Connection refused"), "{body}");

    let _ = stop_tx.send(true);
    let _ = api_stop_tx.send(true);
    api.task.await.expect("server drained");
    for t in tasks {
        t.await.expect("stopped");
    }
}
