//! Bad input gets a typed error and appends nothing.

use covenant_commands::{CommandContext, CommandError};
use covenant_domain::values::{CountryCodeError, NameError, UsdError};
use covenant_domain::{CountryCode, CountryCommand, Name, ProjectCommand, ProjectError, Usd};

use crate::harness::{log_config, nats, side};

#[test]
fn malformed_values_are_refused_at_the_boundary_with_typed_errors() {
    assert!(matches!(CountryCode::parse("fr"), Err(CountryCodeError::Malformed(_))));
    assert!(matches!(CountryCode::parse("F1"), Err(CountryCodeError::Malformed(_))));
    assert!(matches!(CountryCode::parse("QQ"), Err(CountryCodeError::Unknown(_))));
    assert_eq!("18446744073709551616".parse::<Usd>(), Err(UsdError::Overflow));
    assert_eq!("10000000000000001".parse::<Usd>(), Err(UsdError::Overflow));
    assert!(matches!("12.5".parse::<Usd>(), Err(UsdError::NotANumber(_))));
    assert_eq!(Name::parse(""), Err(NameError::Empty));
    assert_eq!(Name::parse(&"x".repeat(1000)), Err(NameError::TooLong(1000)));
    let json = r#"{"code":"XX","name":"Nowhere","gdp_usd":"1"}"#;
    assert!(
        serde_json::from_str::<covenant_domain::country::CountryRegistered>(json).is_err(),
        "payloads validate too"
    );
}

#[tokio::test]
async fn invalid_ids_unknown_aggregates_and_mismatched_targets_append_nothing() {
    let server = nats().await;
    let s = side(&server.url(), &log_config()).await;
    let ctx = CommandContext::system();
    let fr = CountryCode::parse("FR").expect("code");
    let usd = |v| Usd::new(v).expect("usd");

    for bad_id in ["fr", "ZZ", "F.R", "*", ">", "F R", "", "FR.>"] {
        let err =
            s.countries.execute(bad_id, CountryCommand::UpdateGdp { gdp_usd: usd(1) }, &ctx).await.expect_err(bad_id);
        assert!(matches!(err, CommandError::InvalidInput(_)), "{bad_id:?}: {err:?}");
    }
    for bad_id in ["not-a-uuid", "a.b", "*", ">", "0B7C6A4E-2F1D-4C55-9A8E-6F0C2D9B1A11", "x y"] {
        let err = s.projects.execute(bad_id, ProjectCommand::Delete, &ctx).await.expect_err(bad_id);
        assert!(matches!(err, CommandError::InvalidInput(_)), "{bad_id:?}: {err:?}");
    }
    let register_de = CountryCommand::Register {
        code: CountryCode::parse("DE").expect("code"),
        name: Name::parse("Germany").expect("name"),
        gdp_usd: usd(5),
    };
    let err = s.countries.execute("FR", register_de, &ctx).await.expect_err("target mismatch");
    assert!(matches!(err, CommandError::InvalidInput(ref m) if m.contains("DE")), "{err:?}");

    let unknown = uuid::Uuid::new_v4().to_string();
    let update = ProjectCommand::Update { name: Some(Name::parse("X").expect("name")), budget_usd: None, status: None };
    let err = s.projects.execute(&unknown, update, &ctx).await.expect_err("unknown project");
    assert!(matches!(err, CommandError::Refused(ProjectError::NotFound)), "{err:?}");
    let create = ProjectCommand::Create {
        country_code: fr.clone(),
        name: Name::parse("Rail").expect("name"),
        budget_usd: usd(9),
    };
    let err = s.projects.execute(&unknown, create, &ctx).await.expect_err("unregistered country");
    assert!(matches!(err, CommandError::Refused(ProjectError::UnknownCountry(ref c)) if c == "FR"), "{err:?}");
    let err =
        s.countries.execute("FR", CountryCommand::UpdateGdp { gdp_usd: usd(1) }, &ctx).await.expect_err("unregistered");
    assert!(matches!(err, CommandError::Refused(_)));
    let register_zero =
        CountryCommand::Register { code: fr, name: Name::parse("France").expect("name"), gdp_usd: usd(0) };
    assert!(matches!(s.countries.execute("FR", register_zero, &ctx).await, Err(CommandError::Refused(_))));

    assert_eq!(s.log.last_sequence().await.expect("info"), 0, "nothing was appended");
}
