//! The JetStream store is a real cqrs-es `EventStore`: stock `CqrsFramework` drives it.

use std::collections::HashMap;

use covenant_commands::JetStreamStore;
use covenant_domain::{Country, CountryCode, CountryCommand, Name, Usd};
use cqrs_es::{CqrsFramework, EventStore};

use crate::harness::{all_events, log_config, nats, side};

#[tokio::test]
async fn stock_cqrs_framework_executes_commands_through_the_jetstream_store() {
    let server = nats().await;
    let s = side(&server.url(), &log_config()).await;
    let store: JetStreamStore<Country> = JetStreamStore::new(s.log.clone(), 16);
    let cqrs = CqrsFramework::new(store.clone(), vec![], ());
    let register = CountryCommand::Register {
        code: CountryCode::parse("JP").expect("code"),
        name: Name::parse("Japan").expect("name"),
        gdp_usd: Usd::new(100).expect("usd"),
    };
    let actor = HashMap::from([("actor".to_owned(), "ops-user".to_owned())]);
    cqrs.execute_with_metadata("JP", register, actor).await.expect("register");
    cqrs.execute("JP", CountryCommand::UpdateGdp { gdp_usd: Usd::new(150).expect("usd") }).await.expect("update");
    let err = cqrs.execute("JP", CountryCommand::UpdateGdp { gdp_usd: Usd::new(0).expect("usd") }).await;
    assert!(matches!(err, Err(cqrs_es::AggregateError::UserError(_))));

    let envelopes = store.load_events("JP").await.expect("load events");
    assert_eq!(envelopes.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(envelopes[0].metadata["actor"], "ops-user");
    assert_eq!(envelopes[1].metadata["actor"], "system");
    let stored = all_events(&s.log).await;
    assert_eq!(envelopes[1].metadata["stream_sequence"], stored[1].seq.to_string());
    assert_eq!(store.load("JP").await.expect("load").aggregate.gdp_usd(), Usd::new(150).expect("usd"));
}
