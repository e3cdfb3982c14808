//! Value types shared by the aggregates: money, codes, names, roles and actors.
//!
//! Each constructor validates, so a value that exists is a valid one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::iso3166;

/// The largest amount a single GDP figure or budget may hold: 10^16 USD (about 100× world
/// GDP). With at most 249 countries the covenant fund (the sum of GDPs) then stays far
/// below `u64::MAX`, so every sum the read models keep is exact.
pub const MAX_USD: u64 = 10_000_000_000_000_000;

/// Whole US dollars. Serialised as a decimal string (`"21354105000000"`) because JSON and
/// GraphQL integers lose precision above 2^53 / 2^31.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Usd(u64);

/// Why an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsdError {
    /// Not a plain decimal number of whole dollars.
    #[error("`{0}` is not a whole number of US dollars (digits only, e.g. \"21354105000000\")")]
    NotANumber(String),
    /// Above [`MAX_USD`] (or beyond 64 bits).
    #[error("amount exceeds the maximum of {MAX_USD} USD")]
    Overflow,
}

impl Usd {
    /// An amount, refused above [`MAX_USD`].
    ///
    /// # Errors
    /// [`UsdError::Overflow`].
    pub fn new(dollars: u64) -> Result<Self, UsdError> {
        if dollars > MAX_USD {
            return Err(UsdError::Overflow);
        }
        Ok(Self(dollars))
    }

    /// The amount in dollars.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The change from `old` to `new` in basis points of `old` (rounded half away from
    /// zero), saturating at `i64::MAX` for growth beyond ~9.2e14 % (the decrease is at
    /// least −10 000 bp); `None` when `old` is zero (the change is not a ratio then).
    pub fn delta_bp(old: Usd, new: Usd) -> Option<i64> {
        if old.0 == 0 {
            return None;
        }
        let diff = i128::from(new.0) - i128::from(old.0);
        let num = diff * 10_000;
        let den = i128::from(old.0);
        let half = den / 2;
        let rounded = if num >= 0 { (num + half) / den } else { (num - half) / den };
        Some(i64::try_from(rounded).unwrap_or(i64::MAX))
    }
}

impl FromStr for Usd {
    type Err = UsdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(UsdError::NotANumber(s.chars().take(40).collect()));
        }
        let v: u64 = s.parse().map_err(|_| UsdError::Overflow)?;
        Usd::new(v)
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An ISO 3166-1 alpha-2 country code, upper case, officially assigned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CountryCode(String);

/// Why a country code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CountryCodeError {
    /// Not two upper-case ASCII letters.
    #[error("`{0}` is not an ISO 3166-1 alpha-2 code (two upper-case letters, e.g. \"FR\")")]
    Malformed(String),
    /// Well-formed but not assigned by ISO 3166-1.
    #[error("`{0}` is not an assigned ISO 3166-1 alpha-2 code")]
    Unknown(String),
}

impl CountryCode {
    /// Validates `code`: exactly two upper-case letters and assigned.
    ///
    /// # Errors
    /// [`CountryCodeError`].
    pub fn parse(code: &str) -> Result<Self, CountryCodeError> {
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(CountryCodeError::Malformed(code.chars().take(20).collect()));
        }
        if !iso3166::is_assigned(code) {
            return Err(CountryCodeError::Unknown(code.to_owned()));
        }
        Ok(Self(code.to_owned()))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CountryCode {
    type Error = CountryCodeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        CountryCode::parse(&s)
    }
}

impl From<CountryCode> for String {
    fn from(c: CountryCode) -> String {
        c.0
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest name (in characters) of a country, project or user field.
pub const MAX_NAME_CHARS: usize = 200;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty or only white space.
    #[error("name must not be empty")]
    Empty,
    /// Longer than [`MAX_NAME_CHARS`].
    #[error("name is {0} characters; the maximum is {MAX_NAME_CHARS}")]
    TooLong(usize),
    /// Contains a control character (newline, NUL, ...).
    #[error("name must not contain control characters")]
    ControlCharacter,
}

/// A display name: trimmed, 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// Validates and trims `raw`.
    ///
    /// # Errors
    /// [`NameError`].
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let t = raw.trim();
        if t.is_empty() {
            return Err(NameError::Empty);
        }
        let n = t.chars().count();
        if n > MAX_NAME_CHARS {
            return Err(NameError::TooLong(n));
        }
        if t.chars().any(char::is_control) {
            return Err(NameError::ControlCharacter);
        }
        Ok(Self(t.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Name::parse(&s)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

/// A user's role; it gates which commands the API lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Users, countries, secrets.
    Admin,
    /// GDP updates and projects.
    Steward,
    /// Read only.
    Viewer,
}

impl Role {
    /// The stored name (`admin`, `steward`, `viewer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Steward => "steward",
            Role::Viewer => "viewer",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "admin" => Ok(Role::Admin),
            "steward" => Ok(Role::Steward),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("unknown role `{other}` (admin, steward or viewer)")),
        }
    }
}

/// Who issues a command. It travels with the commands that need authorisation and is
/// written to every event's `Actor` header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    /// The service itself or an operator at the CLI (bootstrap, seeding).
    System,
    /// An authenticated user.
    User {
        /// The user's id.
        id: uuid::Uuid,
        /// The role the user held when authenticated.
        role: Role,
    },
}

impl Actor {
    /// The `Actor` header value: the user id or `system`.
    pub fn header_value(&self) -> String {
        match self {
            Actor::System => "system".to_owned(),
            Actor::User { id, .. } => id.to_string(),
        }
    }

    /// Whether this actor may administer users and secrets.
    pub fn is_admin(&self) -> bool {
        matches!(self, Actor::System | Actor::User { role: Role::Admin, .. })
    }
}

/// Why an email address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid email address")]
pub struct EmailError(pub String);

/// An email address, lower-cased, with one `@`, no white space, at most 254 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Validates and lower-cases `raw`.
    ///
    /// # Errors
    /// [`EmailError`].
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let t = raw.trim().to_lowercase();
        let bad = || EmailError(raw.chars().take(60).collect());
        if t.len() > 254 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        match t.split_once('@') {
            Some((local, domain))
                if !local.is_empty()
                    && domain.contains('.')
                    && !domain.contains('@')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.') =>
            {
                Ok(Self(t))
            }
            _ => Err(bad()),
        }
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Email::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_parses_digits_and_refuses_everything_else() {
        assert_eq!("21354105000000".parse::<Usd>().map(Usd::get), Ok(21_354_105_000_000));
        assert!(matches!("-5".parse::<Usd>(), Err(UsdError::NotANumber(_))));
        assert!(matches!("1e9".parse::<Usd>(), Err(UsdError::NotANumber(_))));
        assert!(matches!("".parse::<Usd>(), Err(UsdError::NotANumber(_))));
        assert_eq!("99999999999999999999999".parse::<Usd>(), Err(UsdError::Overflow));
        assert_eq!("10000000000000001".parse::<Usd>(), Err(UsdError::Overflow));
    }

    #[test]
    fn usd_serialises_as_a_decimal_string() {
        let v = Usd::new(12_934_458_535_084).expect("in range");
        assert_eq!(serde_json::to_string(&v).expect("json"), "\"12934458535084\"");
    }

    #[test]
    fn delta_is_in_basis_points_rounded_half_away_from_zero() {
        let u = |v| Usd::new(v).expect("in range");
        assert_eq!(Usd::delta_bp(u(12_934_458_535_084), u(13_500_000_000_000)), Some(437));
        assert_eq!(Usd::delta_bp(u(200), u(100)), Some(-5000));
        assert_eq!(Usd::delta_bp(u(20_000), u(20_001)), Some(1)); // 0.5 bp rounds up
        assert_eq!(Usd::delta_bp(u(20_000), u(19_999)), Some(-1));
        assert_eq!(Usd::delta_bp(u(0), u(5)), None);
        assert_eq!(Usd::delta_bp(u(1), u(MAX_USD)), Some(i64::MAX));
        assert_eq!(Usd::delta_bp(u(MAX_USD), u(1)), Some(-10_000));
    }

    #[test]
    fn country_codes_must_be_assigned_upper_case_pairs() {
        assert!(CountryCode::parse("FR").is_ok());
        assert!(matches!(CountryCode::parse("fr"), Err(CountryCodeError::Malformed(_))));
        assert!(matches!(CountryCode::parse("FRA"), Err(CountryCodeError::Malformed(_))));
        assert!(matches!(CountryCode::parse("U*"), Err(CountryCodeError::Malformed(_))));
        assert_eq!(CountryCode::parse("ZZ"), Err(CountryCodeError::Unknown("ZZ".into())));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(Name::parse("  Rail  ").map(|n| n.as_str().to_owned()), Ok("Rail".into()));
        assert_eq!(Name::parse("   "), Err(NameError::Empty));
        assert_eq!(Name::parse(&"é".repeat(201)), Err(NameError::TooLong(201)));
        assert!(Name::parse(&"é".repeat(200)).is_ok());
        assert_eq!(Name::parse("a\nb"), Err(NameError::ControlCharacter));
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert_eq!(Email::parse(" Ada@Example.ORG ").map(|e| e.as_str().to_owned()), Ok("ada@example.org".into()));
        for bad in ["", "ada", "@example.org", "ada@org", "a b@example.org", "a@b@c.org", "a@.org"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
