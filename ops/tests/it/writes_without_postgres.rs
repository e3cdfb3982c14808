//! Writes do not depend on PostgreSQL: with the read-model database stopped, a signed-in
//! steward keeps writing (keys, roles and revocations are in memory, followed from the
//! stream), each stored write answers its sequence with the entity null and
//! `extensions.readModels` saying why, a logout still ends its token, a role change still
//! takes effect, and a password login fails with UNAVAILABLE. After PostgreSQL returns the
//! read models hold every write.

use std::time::{Duration, Instant};

use covenant_domain::Role;

use crate::harness::spawn_app;

fn code(body: &serde_json::Value) -> &str {
    body["errors"][0]["extensions"]["code"].as_str().unwrap_or("none")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_steward_writes_while_postgres_is_down_and_nothing_is_reported_failed() {
    let mut app = spawn_app().await;
    let admin = app.user_token("root@example.org", Role::Admin).await;
    let steward = app.user_token("steward@example.org", Role::Steward).await;
    let leaving = app.user_token("leaving@example.org", Role::Steward).await;
    let demoted = app.user_token("demoted@example.org", Role::Steward).await;
    let (_, body) = app.graphql("{ me { id } }", Some(&demoted)).await;
    let demoted_id = body["data"]["me"]["id"].as_str().expect("id").to_owned();
    let (_, body) = app
        .graphql(
            r#"mutation { registerCountry(code: "FR", name: "France", gdpUsd: "100") { sequence } }"#,
            Some(&admin),
        )
        .await;
    assert!(body["data"]["registerCountry"]["sequence"].is_string(), "{body}");

    app.pg.stop(true);
    let down = Instant::now();

    // Writes go on, each answered with its sequence; the entity is null and explained.
    let mut sequences = Vec::new();
    for gdp in 101..=110 {
        let q = format!(r#"mutation {{ updateGdp(code: "FR", gdpUsd: "{gdp}") {{ sequence country {{ gdpUsd }} }} }}"#);
        let started = Instant::now();
        let (status, body) = app.graphql(&q, Some(&steward)).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "a stored write is never reported as failed: {body}");
        let seq = body["data"]["updateGdp"]["sequence"].as_str().expect("sequence").to_owned();
        assert!(body["data"]["updateGdp"]["country"].is_null(), "{body}");
        let note = &body["extensions"]["readModels"][0];
        assert_eq!(note["sequence"].as_str(), Some(seq.as_str()), "{body}");
        assert_eq!(note["path"], "updateGdp", "{body}");
        assert!(
            note["reason"].as_str().unwrap_or_default().starts_with("the write is stored at this sequence"),
            "{body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a write took {:?} with PostgreSQL down",
            started.elapsed()
        );
        sequences.push(seq);
    }
    // Without the entity in the selection nothing waits for the read models.
    let started = Instant::now();
    let (_, body) =
        app.graphql(r#"mutation { updateGdp(code: "FR", gdpUsd: "111") { sequence } }"#, Some(&steward)).await;
    assert!(body["data"]["updateGdp"]["sequence"].is_string() && body.get("extensions").is_none(), "{body}");
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());

    // A role change reaches every request at once, from the stream.
    let q = format!(
        r#"mutation {{ changeRole(userId: "{demoted_id}", role: VIEWER) {{ sequence user {{ email role }} }} }}"#
    );
    let (_, body) = app.graphql(&q, Some(&admin)).await;
    assert_eq!(body["data"]["changeRole"]["user"]["email"], "demoted@example.org", "{body}");
    let (_, body) =
        app.graphql(r#"mutation { updateGdp(code: "FR", gdpUsd: "1") { sequence } }"#, Some(&demoted)).await;
    assert_eq!(code(&body), "FORBIDDEN", "the demoted steward may no longer write: {body}");

    // A logout ends its token although revoked_tokens cannot be written.
    let (_, body) = app.graphql("mutation { logout }", Some(&leaving)).await;
    assert_eq!(body["data"]["logout"], true, "{body}");
    let (status, body) = app.graphql("{ me { id } }", Some(&leaving)).await;
    assert_eq!((status, code(&body)), (401, "UNAUTHENTICATED"), "{body}");

    // A password login needs the credentials table: UNAVAILABLE, nothing else.
    let (_, body) = app
        .graphql(
            r#"mutation { login(email: "steward@example.org", password: "correct horse battery") { token } }"#,
            None,
        )
        .await;
    assert_eq!(code(&body), "UNAVAILABLE", "{body}");
    let outage = down.elapsed();

    app.pg.start().await.expect("restart postgres");
    let last = app.side.log.last_sequence().await.expect("last");
    covenant_projections::checkpoint::wait_for_sequence(
        &app.pool,
        &covenant_projections::checkpoint::PROJECTIONS,
        last,
        Duration::from_secs(60),
    )
    .await
    .expect("the read models catch up");
    let (_, body) = app.graphql(r#"{ country(code: "FR") { gdpUsd } }"#, Some(&steward)).await;
    assert_eq!(body["data"]["country"]["gdpUsd"], "111", "{body}");
    for seq in &sequences {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE seq = $1")
            .bind(seq.parse::<i64>().expect("seq"))
            .fetch_one(&app.pool)
            .await
            .expect("audit");
        assert_eq!(n, 1, "the write at {seq} reached the read models once");
    }
    // The token stays revoked once PostgreSQL is back.
    let (status, _) = app.graphql("{ me { id } }", Some(&leaving)).await;
    assert_eq!(status, 401);
    eprintln!("writes during a {outage:.1?} PostgreSQL outage: {} stored, none reported failed", sequences.len() + 1);
    app.stop().await;
}
