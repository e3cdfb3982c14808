//! How events become stored bytes and back.
//!
//! The `Event-Type` header names the event; the payload is the JSON of that event's fields
//! alone (no enum tag), so the stored bytes are what the audit hash covers and what any
//! reader in any language parses. Event type names are stored contracts: never rename one.

use cqrs_es::Aggregate;

/// Why stored bytes could not become an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The `Event-Type` is not one this aggregate knows.
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    /// The payload does not parse as that event type.
    #[error("payload of `{event_type}` does not parse: {reason}")]
    BadPayload {
        /// The event type that was attempted.
        event_type: String,
        /// The parser's message.
        reason: String,
    },
}

/// An event enum that can be stored with an `Event-Type` header and a JSON payload.
pub trait EventCodec: Sized {
    /// The stored type name, e.g. `country.update`.
    fn type_name(&self) -> &'static str;
    /// The payload bytes (JSON of the event's fields).
    fn encode(&self) -> Vec<u8>;
    /// Rebuilds an event from its type name and payload bytes.
    ///
    /// # Errors
    /// [`DecodeError`] for an unknown type or an unparsable payload.
    fn decode(event_type: &str, payload: &[u8]) -> Result<Self, DecodeError>;
}

/// Why an aggregate id was refused (ids become NATS subject tokens).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{id}` is not a valid {aggregate} id: {reason}")]
pub struct IdError {
    /// Aggregate type.
    pub aggregate: &'static str,
    /// The refused id (truncated).
    pub id: String,
    /// What is wrong with it.
    pub reason: String,
}

impl IdError {
    /// An `IdError` for `aggregate`, keeping at most 64 characters of `id`.
    pub fn new(aggregate: &'static str, id: &str, reason: impl Into<String>) -> Self {
        Self { aggregate, id: id.chars().take(64).collect(), reason: reason.into() }
    }
}

/// What the command side needs of every Covenant aggregate beyond cqrs-es's `Aggregate`.
pub trait CovenantAggregate: Aggregate<Event: EventCodec> + Clone {
    /// Validates an id of this aggregate type (it becomes the last subject token).
    ///
    /// # Errors
    /// [`IdError`] naming what is wrong.
    fn validate_id(id: &str) -> Result<(), IdError>;

    /// A short, stable name of the command (a metrics label), e.g. `update_gdp`.
    fn command_name(command: &Self::Command) -> &'static str;

    /// The id a command names itself, if any (a registration carries its country code);
    /// the dispatcher refuses a command sent to a different id.
    fn command_target(_command: &Self::Command) -> Option<String> {
        None
    }
}

/// Validates a UUID id (projects, users).
///
/// # Errors
/// [`IdError`] when `id` is not a hyphenated lower-case UUID.
pub fn validate_uuid_id(aggregate: &'static str, id: &str) -> Result<(), IdError> {
    match uuid::Uuid::parse_str(id) {
        Ok(u) if u.hyphenated().to_string() == id => Ok(()),
        Ok(_) => Err(IdError::new(aggregate, id, "use the lower-case hyphenated UUID form")),
        Err(_) => Err(IdError::new(aggregate, id, "not a UUID")),
    }
}

/// Implements [`EventCodec`] and `cqrs_es::DomainEvent` for an enum whose variants each
/// wrap one payload struct: `Variant(Payload) = "stored.name"`.
#[macro_export]
macro_rules! stored_events {
    ($enum:ident { $($variant:ident($payload:ty) = $name:literal),+ $(,)? }) => {
        impl $crate::codec::EventCodec for $enum {
            fn type_name(&self) -> &'static str {
                match self { $($enum::$variant(_) => $name),+ }
            }
            fn encode(&self) -> Vec<u8> {
                let r = match self { $($enum::$variant(p) => serde_json::to_vec(p)),+ };
                r.expect("event payloads are plain structs that always serialise")
            }
            fn decode(event_type: &str, payload: &[u8]) -> Result<Self, $crate::codec::DecodeError> {
                let bad = |e: serde_json::Error| $crate::codec::DecodeError::BadPayload {
                    event_type: event_type.to_owned(),
                    reason: e.to_string(),
                };
                match event_type {
                    $($name => serde_json::from_slice::<$payload>(payload).map($enum::$variant).map_err(bad),)+
                    other => Err($crate::codec::DecodeError::UnknownType(other.to_owned())),
                }
            }
        }
        impl cqrs_es::DomainEvent for $enum {
            fn event_type(&self) -> String {
                $crate::codec::EventCodec::type_name(self).to_owned()
            }
            fn event_version(&self) -> String {
                "1".to_owned()
            }
        }
    };
}
