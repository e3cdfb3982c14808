//! Personal data (DESIGN section 11) against a real `covenant serve`, nats-server and
//! PostgreSQL: a user's email and login address are sealed in the stream; forgetting the
//! user erases them from every table, export and log line while the audit chain verifies;
//! a key store that does not answer is an error, never a plaintext fallback.

mod support;

use std::process::Command;
use std::time::Duration;

use covenant_domain::{Role, UserCommand};
use support::{
    LOGIN_IP, PASSWORD, Serve, bundle_text, every_row, holds, login_from_elsewhere, stream_text, user_row_becomes,
};

use crate::harness::{covenant_cli, log_config, nats, pg};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn personal_data_is_sealed_in_the_stream_and_forgetting_erases_it_everywhere_else() {
    let server = nats().await;
    let (cluster, pool) = pg().await;
    let cfg = log_config();
    let side = crate::harness::side(&server.url(), &cfg).await;
    let data = tempfile::tempdir().expect("tmp");
    let admin_email = "root@example.org";
    covenant_ops::users::create(&side, &pool, admin_email, Role::Admin, PASSWORD).await.expect("admin");
    let serve = Serve::start(&server.url(), &cluster.url("covenant"), &cfg, data.path());
    serve.ready().await;

    let admin = serve
        .graphql(&format!(r#"mutation {{ login(email: "{admin_email}", password: "{PASSWORD}") {{ token }} }}"#), None)
        .await;
    let admin = admin["data"]["login"]["token"].as_str().unwrap_or_else(|| panic!("admin token: {admin}")).to_owned();
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let email = format!("ada.{tag}@example.org");
    let r = serve
        .graphql(&format!(r#"mutation {{ registerUser(email: "{email}", password: "{PASSWORD}", role: STEWARD) {{ user {{ id email }} }} }}"#), Some(&admin))
        .await;
    let id = r["data"]["registerUser"]["user"]["id"].as_str().unwrap_or_else(|| panic!("registered: {r}")).to_owned();
    let login = login_from_elsewhere(serve.addr, &email).await;
    let token = login["data"]["login"]["token"].as_str().unwrap_or_else(|| panic!("login: {login}")).to_owned();
    let secrets = [email.as_str(), LOGIN_IP];

    // The read model holds them while the user exists.
    let projected = user_row_becomes(&pool, &id, &email, LOGIN_IP).await;
    assert!(projected, "the users read model shows the email and the login address");
    // An admin sees them opened in the audit trail; a steward sees them sealed.
    let trail = |t: String| {
        let q = format!(
            r#"{{ auditEvents(last: 50, subject: "{}.user.{id}") {{ eventType payload }} }}"#,
            cfg.subject_prefix
        );
        let serve = &serve;
        async move { serve.graphql(&q, Some(&t)).await.to_string() }
    };
    let seen = trail(admin.clone()).await;
    assert!(seen.contains(&email) && seen.contains(LOGIN_IP), "{seen}");
    let seen = trail(token.clone()).await;
    assert!(holds(&seen, &secrets).is_empty() && seen.contains("[sealed]"), "{seen}");

    // 1. No stream message holds them in plaintext; the sealed fields are marked.
    let js = side.log.jetstream().clone();
    let messages = stream_text(&js, &cfg.stream).await;
    for m in &messages {
        assert!(holds(m, &secrets).is_empty(), "plaintext personal data in the stream: {m}");
    }
    let ours: Vec<&String> = messages.iter().filter(|m| m.contains(&id)).collect();
    assert!(ours.iter().filter(|m| m.contains(r#""sealed":"XChaCha20-Poly1305""#)).count() >= 2, "{ours:#?}");

    let me = serve.graphql("{ me { id email } }", Some(&token)).await;
    assert_eq!(
        (me["data"]["me"]["id"].as_str(), me["data"]["me"]["email"].as_str()),
        (Some(id.as_str()), Some(email.as_str())),
        "{me}"
    );

    // Bad requests change nothing: a steward may not forget, an id must be a user's UUID.
    for (who, user, code) in [
        (&token, id.as_str(), "FORBIDDEN"),
        (&admin, "not-a-uuid", "BAD_USER_INPUT"),
        (&admin, "00000000-0000-4000-8000-000000000000", "NOT_FOUND"),
    ] {
        let r = serve.graphql(&format!(r#"mutation {{ forgetUser(userId: "{user}") }}"#), Some(who)).await;
        assert_eq!(r["errors"][0]["extensions"]["code"], code, "{r}");
    }

    // 2. Forget the user: the mutation answers true; the user can no longer sign in, and its
    // token is no longer honoured.
    let r = serve.graphql(&format!(r#"mutation {{ forgetUser(userId: "{id}") }}"#), Some(&admin)).await;
    assert_eq!(r["data"]["forgetUser"], true, "{r}");
    let again = login_from_elsewhere(serve.addr, &email).await;
    assert_eq!(again["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{again}");
    let me = serve.graphql("{ me { id } }", Some(&token)).await;
    assert!(me["data"]["me"].is_null() && !me.to_string().contains(&id), "a forgotten user's token is refused: {me}");
    let last = side.log.last_sequence().await.expect("last");
    let scrubbed = user_row_becomes(&pool, &id, "[forgotten]", "[forgotten]").await;
    assert!(scrubbed, "the users read model shows the placeholder");
    covenant_projections::checkpoint::wait_for_sequence(
        &pool,
        &covenant_projections::checkpoint::PROJECTIONS,
        last,
        Duration::from_secs(20),
    )
    .await
    .expect("projections caught up");
    assert!(
        covenant_personal::KeyStore::attach(js.clone(), &cfg.stream).get(&id).await.expect("key store").is_none(),
        "the key is erased"
    );

    // 3. In no PostgreSQL table; auditEvents shows the placeholder, to an admin too.
    let rows = every_row(&pool).await;
    assert!(holds(&rows, &secrets).is_empty(), "personal data left in PostgreSQL: {:?}", holds(&rows, &secrets));
    let seen = trail(admin.clone()).await;
    assert!(holds(&seen, &secrets).is_empty() && seen.contains("[forgotten]"), "{seen}");

    // A rebuild of the read models from the stream writes the placeholder too, and the
    // verification of the ledger agrees with a fold of the stream.
    let db_url = cluster.url("covenant");
    let cli = |args: &[&str]| covenant_cli(args, &server.url(), &db_url, &cfg);
    let (code, out) = cli(&["projections", "rebuild", "ledger"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = cli(&["projections", "verify", "ledger"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(holds(&every_row(&pool).await, &secrets).is_empty(), "a rebuild brought personal data back");

    // 4. The chain and the checkpoints verify without the key; exports hold ciphertext only.
    let audit = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_covenant"))
            .args(args)
            .env("COVENANT_NATS_URL", server.url())
            .env("COVENANT_STREAM", &cfg.stream)
            .env("COVENANT_DATA_DIR", data.path().join("auditor"))
            .env_remove("COVENANT_SEALER_KEY")
            .env("RUST_LOG", "error")
            .output()
            .expect("run covenant");
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (code, out) = audit(&["audit", "seal", "--once"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = audit(&["audit", "verify"]);
    assert_eq!(code, Some(0), "the chain verifies after the forget: {out}");
    for (name, extra) in [("plain", vec![]), ("redacted", vec!["--redact", "user.login"])] {
        let dir = data.path().join(name);
        let mut args = vec!["audit", "export", dir.to_str().expect("path")];
        args.extend(extra);
        let (code, out) = audit(&args);
        assert_eq!(code, Some(0), "{out}");
        let (code, out) = audit(&["audit", "verify", "--bundle", dir.to_str().expect("path")]);
        assert_eq!(code, Some(0), "the {name} bundle verifies: {out}");
        let text = bundle_text(&dir);
        assert!(holds(&text, &secrets).is_empty(), "personal data in the {name} export");
        assert!(text.contains("XChaCha20-Poly1305") || name == "redacted", "the ciphertext is exported");
    }

    // 5. The CLI forgets too, and says so when there is nothing left to do.
    let bob = uuid::Uuid::new_v4();
    let register = UserCommand::Register {
        email: covenant_domain::Email::parse(&format!("bob.{tag}@example.org")).expect("email"),
        role: Role::Viewer,
        actor: covenant_domain::Actor::System,
    };
    side.users.execute(&bob.to_string(), register, &covenant_commands::CommandContext::system()).await.expect("bob");
    let (code, out) = cli(&["users", "forget", &bob.to_string()]);
    // The key is erased by the forget, or a moment before by the running service's
    // projection passing `user.forgotten`: gone either way.
    assert!(code == Some(0) && out.contains("forgotten: user.forgotten at sequence"), "{out}");
    let keys = covenant_personal::KeyStore::attach(js.clone(), &cfg.stream);
    assert!(keys.get(&bob.to_string()).await.expect("key store").is_none(), "bob's key is erased: {out}");
    let (code, out) = cli(&["users", "forget", &bob.to_string()]);
    assert!(code == Some(0) && out.contains("was forgotten already") && out.contains("key already gone"), "{out}");
    let (code, out) = cli(&["users", "forget", &uuid::Uuid::new_v4().to_string()]);
    assert!(code != Some(0) && out.contains("user not found"), "{out}");

    // 6. No log line of the service ever held them; the forget is logged by user id.
    let logs = serve.stop();
    assert!(logs.lines().count() > 20, "the service logged: {logs}");
    assert!(
        holds(&logs, &secrets).is_empty(),
        "personal data in the logs: {:?}",
        logs.lines().filter(|l| !holds(l, &secrets).is_empty()).collect::<Vec<_>>()
    );
    assert!(logs.lines().any(|l| l.contains("user forgotten") && l.contains(&id)), "the forget is logged by id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_store_that_does_not_answer_is_an_error_never_a_plaintext_fallback() {
    let server = nats().await;
    let (_cluster, pool) = pg().await;
    let cfg = log_config();
    let side = crate::harness::side(&server.url(), &cfg).await;
    let system = covenant_commands::CommandContext::system();
    let user = uuid::Uuid::new_v4().to_string();
    let email = covenant_domain::Email::parse("grace@example.org").expect("email");
    let register = |email: &covenant_domain::Email| UserCommand::Register {
        email: email.clone(),
        role: Role::Viewer,
        actor: covenant_domain::Actor::System,
    };
    side.users.execute(&user, register(&email), &system).await.expect("registered while the key store answers");
    let before = side.log.last_sequence().await.expect("last");

    // The bucket is gone (deleted by mistake, or its stream has no leader).
    let js = side.log.jetstream().clone();
    js.delete_key_value(covenant_personal::keys::bucket_name(&cfg.stream)).await.expect("delete the bucket");
    let other = uuid::Uuid::new_v4().to_string();
    let refused = side
        .users
        .execute(&other, register(&covenant_domain::Email::parse("alan@example.org").expect("email")), &system)
        .await;
    match refused {
        Err(covenant_commands::CommandError::KeysUnavailable { reason }) => {
            assert!(reason.contains("key store") && reason.contains("_KEYS"), "{reason}")
        }
        other => panic!("expected a key store error, got {other:?}"),
    }
    let login =
        side.users.execute(&user, UserCommand::RecordLogin { ip: LOGIN_IP.parse().expect("ip") }, &system).await;
    assert!(matches!(login, Err(covenant_commands::CommandError::KeysUnavailable { .. })), "{login:?}");
    assert_eq!(side.log.last_sequence().await.expect("last"), before, "nothing was stored");
    for m in stream_text(&js, &cfg.stream).await {
        assert!(holds(&m, &["alan@", "grace@", LOGIN_IP]).is_empty(), "{m}");
    }

    // A projection waits for the key store rather than project without the key.
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let runner_cfg = covenant_projections::RunnerConfig {
        stream: cfg.stream.clone(),
        fetch_wait: Duration::from_millis(100),
        ..Default::default()
    };
    let ledger = covenant_projections::all().into_iter().find(|p| p.name() == "ledger").expect("ledger");
    let mut runner =
        covenant_projections::Runner::new(js.clone(), pool.clone(), ledger, runner_cfg.clone(), rx.clone());
    let stepped = tokio::time::timeout(Duration::from_secs(3), runner.try_process_next()).await;
    assert!(stepped.is_err(), "the batch waits for the key store: {stepped:?}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&pool).await.expect("count");
    assert_eq!(rows, 0, "nothing projected without the key");

    // The audit projection keeps payloads sealed: it reads no key, so the same batch goes in.
    let audit = covenant_projections::all().into_iter().find(|p| p.name() == "audit").expect("audit");
    let mut runner = covenant_projections::Runner::new(js.clone(), pool.clone(), audit, runner_cfg, rx);
    let stepped = tokio::time::timeout(Duration::from_secs(10), runner.try_process_next()).await;
    assert!(
        matches!(stepped, Ok(Ok(covenant_projections::Outcome::Applied { last_seq, .. })) if last_seq == before),
        "the audit projection applies without the key store: {stepped:?}"
    );
    let sealed: Vec<String> =
        sqlx::query_scalar("SELECT payload::text FROM audit_events WHERE event_type = 'user.registered'")
            .fetch_all(&pool)
            .await
            .expect("audit rows");
    assert_eq!(sealed.len(), 1, "{sealed:?}");
    assert!(sealed[0].contains("XChaCha20-Poly1305") && !sealed[0].contains("grace@"), "{}", sealed[0]);
}

/// A NATS outage is not a leader's failover: a key read whose connection is gone answers
/// UNAVAILABLE after its own timeout and the reconnect wait, not after retrying for the
/// whole failover wait (15 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_read_during_a_nats_outage_answers_without_the_failover_wait() {
    let mut server = nats().await;
    let cfg = log_config();
    let side = crate::harness::side(&server.url(), &cfg).await;
    let keys = covenant_personal::KeyStore::attach(side.log.jetstream().clone(), &cfg.stream);
    keys.get_or_create("someone").await.expect("a key while NATS answers");

    server.kill();
    let started = std::time::Instant::now();
    let read = keys.get("someone").await;
    let took = started.elapsed();
    assert!(matches!(read, Err(covenant_personal::KeyError::Unavailable { .. })), "{read:?}");
    // The request timeout (2 s here) and the reconnect wait (2 s), with room to spare.
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
}
