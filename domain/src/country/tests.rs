use cqrs_es::test::TestFramework;

use super::*;
use crate::codec::EventCodec;

type Given = TestFramework<Country>;

fn usd(v: u64) -> Usd {
    Usd::new(v).expect("in range")
}

fn registered(gdp: u64) -> CountryEvent {
    CountryEvent::Registered(CountryRegistered {
        code: CountryCode::parse("FR").expect("code"),
        name: Name::parse("France").expect("name"),
        gdp_usd: usd(gdp),
    })
}

fn register(gdp: u64) -> CountryCommand {
    CountryCommand::Register {
        code: CountryCode::parse("FR").expect("code"),
        name: Name::parse("France").expect("name"),
        gdp_usd: usd(gdp),
    }
}

fn updated(old: u64, new: u64, delta_bp: i64) -> CountryEvent {
    CountryEvent::GdpUpdated(CountryGdpUpdated { old_gdp_usd: usd(old), new_gdp_usd: usd(new), delta_bp })
}

#[test]
fn registering_a_new_country_records_its_gdp() {
    Given::with(()).given_no_previous_events().when(register(100)).then_expect_events(vec![registered(100)]);
}

#[test]
fn registering_twice_is_refused() {
    Given::with(())
        .given(vec![registered(100)])
        .when(register(100))
        .then_expect_error(CountryError::AlreadyRegistered("FR".into()));
}

#[test]
fn registering_with_zero_gdp_is_refused() {
    Given::with(()).given_no_previous_events().when(register(0)).then_expect_error(CountryError::GdpNotPositive);
}

#[test]
fn a_gdp_update_carries_old_new_and_delta_in_basis_points() {
    Given::with(())
        .given(vec![registered(200)])
        .when(CountryCommand::UpdateGdp { gdp_usd: usd(250) })
        .then_expect_events(vec![updated(200, 250, 2500)]);
}

#[test]
fn a_gdp_update_on_an_unregistered_country_is_refused() {
    Given::with(())
        .given_no_previous_events()
        .when(CountryCommand::UpdateGdp { gdp_usd: usd(250) })
        .then_expect_error(CountryError::NotRegistered);
}

#[test]
fn a_gdp_update_to_zero_is_refused() {
    Given::with(())
        .given(vec![registered(200)])
        .when(CountryCommand::UpdateGdp { gdp_usd: usd(0) })
        .then_expect_error(CountryError::GdpNotPositive);
}

#[test]
fn a_history_chains_each_figure_to_the_one_before() {
    Given::with(())
        .given(vec![registered(100), updated(100, 200, 10_000)])
        .when(CountryCommand::RecordGdpHistory { gdp_usd: vec![usd(300), usd(150)] })
        .then_expect_events(vec![updated(200, 300, 5000), updated(300, 150, -5000)]);
}

#[test]
fn a_history_with_a_zero_figure_is_refused_whole() {
    Given::with(())
        .given(vec![registered(100)])
        .when(CountryCommand::RecordGdpHistory { gdp_usd: vec![usd(300), usd(0)] })
        .then_expect_error(CountryError::GdpNotPositive);
}

#[test]
fn an_empty_or_oversize_history_is_refused() {
    Given::with(())
        .given(vec![registered(100)])
        .when(CountryCommand::RecordGdpHistory { gdp_usd: vec![] })
        .then_expect_error(CountryError::HistorySize(0));
    Given::with(())
        .given(vec![registered(100)])
        .when(CountryCommand::RecordGdpHistory { gdp_usd: vec![usd(1); MAX_HISTORY_POINTS + 1] })
        .then_expect_error(CountryError::HistorySize(MAX_HISTORY_POINTS + 1));
}

#[test]
fn a_history_on_an_unregistered_country_is_refused() {
    Given::with(())
        .given_no_previous_events()
        .when(CountryCommand::RecordGdpHistory { gdp_usd: vec![usd(1)] })
        .then_expect_error(CountryError::NotRegistered);
}

#[test]
fn renaming_records_old_and_new_names() {
    let new_name = Name::parse("French Republic").expect("name");
    Given::with(())
        .given(vec![registered(100)])
        .when(CountryCommand::Rename { name: new_name.clone() })
        .then_expect_events(vec![CountryEvent::Renamed(CountryRenamed {
            old_name: Name::parse("France").expect("name"),
            new_name,
        })]);
}

#[test]
fn renaming_to_the_same_name_or_an_unregistered_country_is_refused() {
    let same = Name::parse("France").expect("name");
    Given::with(())
        .given(vec![registered(100)])
        .when(CountryCommand::Rename { name: same.clone() })
        .then_expect_error(CountryError::NameUnchanged("France".into()));
    Given::with(())
        .given_no_previous_events()
        .when(CountryCommand::Rename { name: same })
        .then_expect_error(CountryError::NotRegistered);
}

#[test]
fn stored_payloads_match_the_audit_vector_layout() {
    let e = CountryEvent::Registered(CountryRegistered {
        code: CountryCode::parse("US").expect("code"),
        name: Name::parse("United States").expect("name"),
        gdp_usd: usd(12_934_458_535_084),
    });
    let bytes = e.encode();
    assert_eq!(
        std::str::from_utf8(&bytes).expect("utf8"),
        r#"{"code":"US","name":"United States","gdp_usd":"12934458535084"}"#
    );
    assert_eq!(CountryEvent::decode("country.registered", &bytes), Ok(e));
    let u = updated(12_934_458_535_084, 13_500_000_000_000, 437).encode();
    assert_eq!(
        std::str::from_utf8(&u).expect("utf8"),
        r#"{"old_gdp_usd":"12934458535084","new_gdp_usd":"13500000000000","delta_bp":437}"#
    );
}

#[test]
fn unknown_types_and_bad_payloads_decode_to_typed_errors() {
    assert!(matches!(CountryEvent::decode("country.exploded", b"{}"), Err(crate::DecodeError::UnknownType(_))));
    assert!(matches!(
        CountryEvent::decode("country.registered", br#"{"code":"ZZ","name":"x","gdp_usd":"1"}"#),
        Err(crate::DecodeError::BadPayload { .. })
    ));
}

#[test]
fn ids_must_be_assigned_country_codes() {
    assert!(Country::validate_id("FR").is_ok());
    for bad in ["fr", "F.R", "ZZ", "", "FR>"] {
        assert!(Country::validate_id(bad).is_err(), "{bad}");
    }
}
