//! Events as projections see them: parsed from a JetStream message's subject and headers,
//! decoded into the domain's event enums.
//!
//! Projections depend on the domain and on the stored header names (a contract), never on
//! the command side.
//!
//! Personal fields: [`ProjectedEvent::payload`] is always the payload as stored (sealed),
//! which is what the `audit` projection keeps. Decoding uses the payload as
//! [`crate::personal::open_events`] opened it, or, before that, with every sealed field
//! withheld.

use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use covenant_domain::{CountryEvent, DecodeError, EventCodec, ProjectEvent, SecurityEvent, UserEvent, personal_fields};
use covenant_personal::{Place, seal};

/// A stored event, as read from the stream.
#[derive(Debug, Clone)]
pub struct ProjectedEvent {
    /// Stream sequence.
    pub seq: u64,
    /// Full subject.
    pub subject: String,
    /// Aggregate type (second-to-last subject token).
    pub aggregate: String,
    /// Aggregate id (last subject token).
    pub aggregate_id: String,
    /// `Event-Id`.
    pub event_id: String,
    /// `Event-Type`.
    pub event_type: String,
    /// `Aggregate-Version`.
    pub version: u64,
    /// `Actor`.
    pub actor: String,
    /// `Occurred-At`, parsed (the stream's time if the header is missing or malformed).
    pub occurred_at: DateTime<Utc>,
    /// Payload bytes as stored (personal fields sealed).
    pub payload: Bytes,
    /// The payload with its personal fields opened with the user's key (or withheld once
    /// the key is gone), or why they do not open; `None` until opened or when it has none.
    pub opened: Option<Result<Bytes, String>>,
    /// Why the headers could not be read in full, if so (the event is then skipped).
    pub header_problem: Option<String>,
    /// The W3C `traceparent` of the request that appended it, if traced.
    pub traceparent: Option<String>,
}

impl ProjectedEvent {
    /// Parses a raw message; problems are recorded in `header_problem`, never panicked on.
    pub fn parse(
        seq: u64,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: Bytes,
        stream_time: DateTime<Utc>,
    ) -> Self {
        let get = |n: &str| headers.and_then(|h| h.get(n)).map(|v| v.as_str().to_owned());
        let mut problems = Vec::new();
        let mut need = |n: &str| {
            get(n).unwrap_or_else(|| {
                problems.push(format!("missing {n}"));
                String::new()
            })
        };
        let event_id = need("Event-Id");
        let event_type = need("Event-Type");
        let actor = need("Actor");
        let version = need("Aggregate-Version");
        let occurred = need("Occurred-At");
        let version = version.parse().unwrap_or_else(|_| {
            problems.push("Aggregate-Version is not a number".into());
            0
        });
        let occurred_at = DateTime::parse_from_rfc3339(&occurred).map(|d| d.with_timezone(&Utc)).unwrap_or(stream_time);
        let mut tokens = subject.rsplitn(3, '.');
        let aggregate_id = tokens.next().unwrap_or_default().to_owned();
        let aggregate = tokens.next().unwrap_or_default().to_owned();
        Self {
            seq,
            subject: subject.to_owned(),
            aggregate,
            aggregate_id,
            event_id,
            event_type,
            version,
            actor,
            occurred_at,
            payload,
            opened: None,
            header_problem: (!problems.is_empty()).then(|| problems.join(", ")),
            traceparent: get("traceparent"),
        }
    }

    /// Decodes the payload into the domain event of its aggregate type.
    ///
    /// # Errors
    /// [`DecodeError`] for an unknown aggregate or event type or an unparsable payload.
    pub fn decode(&self) -> Result<DomainEvent, DecodeError> {
        if let Some(p) = &self.header_problem {
            return Err(DecodeError::BadPayload { event_type: self.event_type.clone(), reason: p.clone() });
        }
        let t = self.event_type.as_str();
        let bad = |reason: String| DecodeError::BadPayload { event_type: t.to_owned(), reason };
        let withheld;
        let p: &[u8] = match &self.opened {
            Some(Ok(opened)) => opened,
            Some(Err(why)) => return Err(bad(why.clone())),
            None => {
                let fields = personal_fields(&self.aggregate, t);
                if fields.is_empty() {
                    &self.payload
                } else {
                    let place = Place { owner: &self.aggregate_id, event_type: t };
                    withheld = seal::open(&self.payload, fields, place, None).map_err(|e| bad(e.to_string()))?;
                    &withheld
                }
            }
        };
        Ok(match self.aggregate.as_str() {
            "country" => DomainEvent::Country(CountryEvent::decode(t, p)?),
            "project" => DomainEvent::Project(ProjectEvent::decode(t, p)?),
            "user" => DomainEvent::User(UserEvent::decode(t, p)?),
            "security" => DomainEvent::Security(SecurityEvent::decode(t, p)?),
            other => return Err(DecodeError::UnknownType(format!("{other}/{t}"))),
        })
    }
}

/// A decoded event of any aggregate.
#[derive(Debug, Clone)]
pub enum DomainEvent {
    /// A country event.
    Country(CountryEvent),
    /// A project event.
    Project(ProjectEvent),
    /// A user event.
    User(UserEvent),
    /// A security event.
    Security(SecurityEvent),
}

impl ProjectedEvent {
    /// Builds from a JetStream message delivered by a consumer.
    ///
    /// # Errors
    /// When the message carries no JetStream metadata (not from a consumer).
    pub fn from_message(m: &async_nats::jetstream::Message) -> Result<Self, String> {
        let info = m.info().map_err(|e| e.to_string())?;
        let t = info.published;
        let stream_time = DateTime::<Utc>::from_timestamp(t.unix_timestamp(), t.nanosecond()).unwrap_or_default();
        Ok(Self::parse(
            info.stream_sequence,
            &m.message.subject,
            m.message.headers.as_ref(),
            m.message.payload.clone(),
            stream_time,
        ))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn missing_headers_are_reported_not_panicked_on() {
        let at = Utc.timestamp_opt(5, 0).single().expect("time");
        let e = ProjectedEvent::parse(3, "covenant.events.country.FR", None, Bytes::from_static(b"{}"), at);
        assert_eq!((e.aggregate.as_str(), e.aggregate_id.as_str(), e.occurred_at), ("country", "FR", at));
        let problem = e.header_problem.clone().expect("a problem");
        assert!(problem.contains("missing Event-Id") && problem.contains("missing Event-Type"), "{problem}");
        assert!(e.decode().is_err());
    }
}
