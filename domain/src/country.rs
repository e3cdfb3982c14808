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
mod tests;
