//! Personal data in events: which fields hold it, and how an event carries a field whose
//! value this reader may not see.
//!
//! The domain stays pure: it only names the fields. The event store seals them before an
//! event is stored (each user's own key, kept outside the stream) and opens them for readers
//! that hold the key; a reader without it (the command side, an auditor, anyone after the
//! user was forgotten) decodes the field as [`Personal::Withheld`].

use serde::{Deserialize, Serialize};

/// A personal field's value as a reader sees it.
///
/// Stored as the plain value; `null` (what a reader without the key is handed in place of
/// the sealed value) decodes as [`Personal::Withheld`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Option<T>", into = "Option<T>")]
#[serde(bound(serialize = "T: Serialize + Clone", deserialize = "T: Deserialize<'de>"))]
pub enum Personal<T> {
    /// The value.
    Known(T),
    /// Not readable here: sealed without its key at hand, or its key was deleted (the
    /// user was forgotten).
    Withheld,
}

impl<T> Personal<T> {
    /// The value, when known.
    pub fn known(&self) -> Option<&T> {
        match self {
            Personal::Known(v) => Some(v),
            Personal::Withheld => None,
        }
    }
}

impl<T> From<Option<T>> for Personal<T> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Personal::Withheld, Personal::Known)
    }
}

impl<T> From<Personal<T>> for Option<T> {
    fn from(p: Personal<T>) -> Self {
        match p {
            Personal::Known(v) => Some(v),
            Personal::Withheld => None,
        }
    }
}

/// The personal fields of a stored event, by aggregate type and event type: the top-level
/// payload fields that are sealed with the aggregate's own key (the aggregate id names the
/// key; only users have one). Stored contracts, like the event type names: a field added
/// here is sealed from then on, and events stored before keep it in plaintext.
pub fn personal_fields(aggregate: &str, event_type: &str) -> &'static [&'static str] {
    match (aggregate, event_type) {
        ("user", "user.registered") => &["email"],
        ("user", "user.login") => &["ip"],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_value_is_stored_plain_and_null_reads_as_withheld() {
        let known: Personal<u8> = Personal::Known(7);
        assert_eq!(serde_json::to_string(&known).expect("json"), "7");
        assert_eq!(serde_json::from_str::<Personal<u8>>("7").expect("json"), known);
        assert_eq!(serde_json::from_str::<Personal<u8>>("null").expect("json"), Personal::Withheld);
        assert_eq!(Personal::<u8>::Withheld.known(), None);
    }

    #[test]
    fn only_user_events_have_personal_fields() {
        assert_eq!(personal_fields("user", "user.registered"), ["email"]);
        assert_eq!(personal_fields("user", "user.login"), ["ip"]);
        assert!(personal_fields("user", "user.forgotten").is_empty());
        assert!(personal_fields("country", "country.registered").is_empty());
    }
}
