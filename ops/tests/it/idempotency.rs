//! Idempotency keys: the same command with the same key appends once and returns the same
//! receipt; a key reused for another command is refused; a refused command frees its key.

use covenant_commands::{CommandContext, CommandError};
use covenant_domain::{CountryCode, CountryCommand, CountryError, Name, Usd};

use crate::harness::{all_events, log_config, nats, side};

fn register(gdp: u64) -> CountryCommand {
    CountryCommand::Register {
        code: CountryCode::parse("FR").expect("code"),
        name: Name::parse("France").expect("name"),
        gdp_usd: Usd::new(gdp).expect("usd"),
    }
}

#[tokio::test]
async fn the_same_command_twice_with_one_key_appends_once_and_returns_the_same_result() {
    let server = nats().await;
    let cfg = log_config();
    let a = side(&server.url(), &cfg).await;
    let ctx = CommandContext::system().with_idempotency_key("client-42");
    let first = a.countries.execute("FR", register(10), &ctx).await.expect("first");
    let again = a.countries.execute("FR", register(10), &ctx).await.expect("retry");
    assert_eq!(first, again);
    // From another process (fresh cache, fresh connection) too.
    let b = side(&server.url(), &cfg).await;
    assert_eq!(b.countries.execute("FR", register(10), &ctx).await.expect("retry elsewhere"), first);
    assert_eq!(all_events(&a.log).await.len(), 1);

    // Without the key, the same command is a new command (and here a refusal).
    let err = a.countries.execute("FR", register(10), &CommandContext::system()).await.expect_err("refused");
    assert!(matches!(err, CommandError::Refused(CountryError::AlreadyRegistered(_))));
}

#[tokio::test]
async fn a_key_reused_for_another_command_is_refused_and_appends_nothing() {
    let server = nats().await;
    let a = side(&server.url(), &log_config()).await;
    let ctx = CommandContext::system().with_idempotency_key("k1");
    a.countries.execute("FR", register(10), &ctx).await.expect("first");
    let err = a
        .countries
        .execute("FR", CountryCommand::UpdateGdp { gdp_usd: Usd::new(11).expect("usd") }, &ctx)
        .await
        .expect_err("mismatch");
    assert!(matches!(err, CommandError::InvalidInput(ref m) if m.contains("idempotency key")), "{err:?}");
    assert_eq!(all_events(&a.log).await.len(), 1);
}

#[tokio::test]
async fn a_refused_command_releases_its_key() {
    let server = nats().await;
    let a = side(&server.url(), &log_config()).await;
    let ctx = CommandContext::system().with_idempotency_key("k2");
    let err = a
        .countries
        .execute("FR", CountryCommand::UpdateGdp { gdp_usd: Usd::new(3).expect("usd") }, &ctx)
        .await
        .expect_err("not registered");
    assert!(matches!(err, CommandError::Refused(CountryError::NotRegistered)));
    a.countries.execute("FR", register(10), &CommandContext::system()).await.expect("register");
    let r = a
        .countries
        .execute("FR", CountryCommand::UpdateGdp { gdp_usd: Usd::new(3).expect("usd") }, &ctx)
        .await
        .expect("now accepted");
    assert_eq!(r.version, 2);
}

#[tokio::test]
async fn invalid_keys_are_refused() {
    let server = nats().await;
    let a = side(&server.url(), &log_config()).await;
    for key in [String::new(), "x".repeat(201), "a\nb".into()] {
        let ctx = CommandContext::system().with_idempotency_key(key);
        let err = a.countries.execute("FR", register(10), &ctx).await.expect_err("bad key");
        assert!(matches!(err, CommandError::InvalidInput(_)));
    }
    assert_eq!(a.log.last_sequence().await.expect("info"), 0);
}
