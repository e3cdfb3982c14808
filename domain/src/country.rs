//! The Country aggregate: registration, GDP figures (integer USD) and renames.
//!
//! Id: the ISO 3166-1 alpha-2 code (`covenant.events.country.FR`).

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use crate::codec::{CovenantAggregate, IdError};
use crate::values::{CountryCode, Name, Usd};

/// The most GDP figures one `RecordGdpHistory` command may carry (it is one atomic batch,
/// and JetStream batches hold at most 1000 messages).
pub const MAX_HISTORY_POINTS: usize = 500;

/// What may be asked of a country.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CountryCommand {
    /// Registers a new country with its current GDP.
    Register {
        /// ISO code; must equal the aggregate id.
        code: CountryCode,
        /// Display name.
        name: Name,
        /// GDP in whole USD, positive.
        gdp_usd: Usd,
    },
    /// Records a new GDP figure.
    UpdateGdp {
        /// GDP in whole USD, positive.
        gdp_usd: Usd,
    },
    /// Changes the display name.
    Rename {
        /// The new name.
        name: Name,
    },
    /// Records several GDP figures in order, all or nothing (one `country.update` each).
    RecordGdpHistory {
        /// GDP figures, oldest first.
        gdp_usd: Vec<Usd>,
    },
}

/// `country.registered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountryRegistered {
    /// ISO code.
    pub code: CountryCode,
    /// Display name.
    pub name: Name,
    /// GDP at registration.
    pub gdp_usd: Usd,
}

/// `country.update`: a new GDP figure, with the old one and the change in basis points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountryGdpUpdated {
    /// GDP before.
    pub old_gdp_usd: Usd,
    /// GDP after.
    pub new_gdp_usd: Usd,
    /// (new − old) / old in basis points, rounded half away from zero (the seed's "delta %").
    pub delta_bp: i64,
}

/// `country.renamed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountryRenamed {
    /// Name before.
    pub old_name: Name,
    /// Name after.
    pub new_name: Name,
}

/// Facts about a country.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CountryEvent {
    /// See [`CountryRegistered`].
    Registered(CountryRegistered),
    /// See [`CountryGdpUpdated`].
    GdpUpdated(CountryGdpUpdated),
    /// See [`CountryRenamed`].
    Renamed(CountryRenamed),
}

crate::stored_events!(CountryEvent {
    Registered(CountryRegistered) = "country.registered",
    GdpUpdated(CountryGdpUpdated) = "country.update",
    Renamed(CountryRenamed) = "country.renamed",
});

/// Why a country command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CountryError {
    /// Register on a registered country.
    #[error("country {0} is already registered")]
    AlreadyRegistered(String),
    /// Anything but Register on an unregistered country.
    #[error("country is not registered")]
    NotRegistered,
    /// A GDP of zero.
    #[error("GDP must be a positive number of US dollars")]
    GdpNotPositive,
    /// A rename to the current name.
    #[error("the country is already named `{0}`")]
    NameUnchanged(String),
    /// A history with no figures, or more than [`MAX_HISTORY_POINTS`].
    #[error("a GDP history carries 1 to {MAX_HISTORY_POINTS} figures, not {0}")]
    HistorySize(usize),
}

/// A country as its events left it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Country {
    registered: Option<CountryRegistered>,
    name: Option<Name>,
    gdp_usd: Usd,
}

impl Country {
    /// Current GDP (zero before registration).
    pub fn gdp_usd(&self) -> Usd {
        self.gdp_usd
    }

    /// Whether the country is registered.
    pub fn is_registered(&self) -> bool {
        self.registered.is_some()
    }

    /// The pure decision: which events `command` produces on this state.
    ///
    /// # Errors
    /// [`CountryError`] when the command is refused.
    pub fn decide(&self, command: CountryCommand) -> Result<Vec<CountryEvent>, CountryError> {
        use CountryCommand as C;
        match command {
            C::Register { code, name, gdp_usd } => self.decide_register(code, name, gdp_usd),
            _ if !self.is_registered() => Err(CountryError::NotRegistered),
            C::UpdateGdp { gdp_usd } => Ok(gdp_updates(self.gdp_usd, &[gdp_usd])?),
            C::RecordGdpHistory { gdp_usd } => {
                if gdp_usd.is_empty() || gdp_usd.len() > MAX_HISTORY_POINTS {
                    return Err(CountryError::HistorySize(gdp_usd.len()));
                }
                gdp_updates(self.gdp_usd, &gdp_usd)
            }
            C::Rename { name } => self.decide_rename(name),
        }
    }

    fn decide_register(&self, code: CountryCode, name: Name, gdp_usd: Usd) -> Result<Vec<CountryEvent>, CountryError> {
        if let Some(r) = &self.registered {
            return Err(CountryError::AlreadyRegistered(r.code.to_string()));
        }
        if gdp_usd.get() == 0 {
            return Err(CountryError::GdpNotPositive);
        }
        Ok(vec![CountryEvent::Registered(CountryRegistered { code, name, gdp_usd })])
    }

    fn decide_rename(&self, name: Name) -> Result<Vec<CountryEvent>, CountryError> {
        let old = self.name.clone().ok_or(CountryError::NotRegistered)?;
        if old == name {
            return Err(CountryError::NameUnchanged(name.as_str().to_owned()));
        }
        Ok(vec![CountryEvent::Renamed(CountryRenamed { old_name: old, new_name: name })])
    }
}

/// One `country.update` per figure, each relative to the one before.
fn gdp_updates(mut current: Usd, figures: &[Usd]) -> Result<Vec<CountryEvent>, CountryError> {
    let mut out = Vec::with_capacity(figures.len());
    for &new in figures {
        if new.get() == 0 {
            return Err(CountryError::GdpNotPositive);
        }
        // current is positive once registered, so the ratio always exists.
        let delta_bp = Usd::delta_bp(current, new).unwrap_or(0);
        out.push(CountryEvent::GdpUpdated(CountryGdpUpdated { old_gdp_usd: current, new_gdp_usd: new, delta_bp }));
        current = new;
    }
    Ok(out)
}

impl Aggregate for Country {
    const TYPE: &'static str = "country";
    type Command = CountryCommand;
    type Event = CountryEvent;
    type Error = CountryError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CountryEvent::Registered(r) => {
                self.gdp_usd = r.gdp_usd;
                self.name = Some(r.name.clone());
                self.registered = Some(r);
            }
            CountryEvent::GdpUpdated(u) => self.gdp_usd = u.new_gdp_usd,
            CountryEvent::Renamed(r) => self.name = Some(r.new_name),
        }
    }
}

impl CovenantAggregate for Country {
    fn command_name(command: &CountryCommand) -> &'static str {
        match command {
            CountryCommand::Register { .. } => "register",
            CountryCommand::UpdateGdp { .. } => "update_gdp",
            CountryCommand::Rename { .. } => "rename",
            CountryCommand::RecordGdpHistory { .. } => "record_gdp_history",
        }
    }

    fn validate_id(id: &str) -> Result<(), IdError> {
        CountryCode::parse(id).map(|_| ()).map_err(|e| IdError::new("country", id, e.to_string()))
    }

    fn command_target(command: &CountryCommand) -> Option<String> {
        match command {
            CountryCommand::Register { code, .. } => Some(code.to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
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
}
