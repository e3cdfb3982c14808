//! The Security aggregate: JWT signing-secret rotations (the key id only, never the secret).
//!
//! There is one instance, id [`SECURITY_ID`] (`covenant.events.security.jwt`).

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use crate::codec::{CovenantAggregate, IdError};
use crate::values::Actor;

/// The id of the single security aggregate.
pub const SECURITY_ID: &str = "jwt";

/// What may be asked of the security aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SecurityCommand {
    /// Records that the JWT secret was rotated to the key named `key_id`.
    RotateSecret {
        /// The new key's id (the JWT `kid`): 1 to 64 of `[A-Za-z0-9_-]`.
        key_id: String,
        /// Who asks; must be an admin or the system.
        actor: Actor,
    },
}

/// `security.secret_rotated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretRotated {
    /// The new key id.
    pub key_id: String,
}

/// Facts about security settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SecurityEvent {
    /// See [`SecretRotated`].
    SecretRotated(SecretRotated),
}

crate::stored_events!(SecurityEvent {
    SecretRotated(SecretRotated) = "security.secret_rotated",
});

/// Why a security command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    /// Rotation by a non-admin.
    #[error("only an admin may rotate secrets")]
    NotAdmin,
    /// A key id that is empty, too long or has characters outside `[A-Za-z0-9_-]`.
    #[error("key id must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")]
    InvalidKeyId,
    /// A key id used before (a `kid` must name one secret forever).
    #[error("key id `{0}` was used before")]
    KeyIdReused(String),
}

/// The rotation history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Security {
    key_ids: Vec<String>,
}

impl Security {
    /// The key id in force, if any rotation happened.
    pub fn current_key_id(&self) -> Option<&str> {
        self.key_ids.last().map(String::as_str)
    }

    /// The pure decision for `command`.
    ///
    /// # Errors
    /// [`SecurityError`] when refused.
    pub fn decide(&self, command: SecurityCommand) -> Result<Vec<SecurityEvent>, SecurityError> {
        let SecurityCommand::RotateSecret { key_id, actor } = command;
        if !actor.is_admin() {
            return Err(SecurityError::NotAdmin);
        }
        let valid = (1..=64).contains(&key_id.len())
            && key_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(SecurityError::InvalidKeyId);
        }
        if self.key_ids.contains(&key_id) {
            return Err(SecurityError::KeyIdReused(key_id));
        }
        Ok(vec![SecurityEvent::SecretRotated(SecretRotated { key_id })])
    }
}

impl Aggregate for Security {
    const TYPE: &'static str = "security";
    type Command = SecurityCommand;
    type Event = SecurityEvent;
    type Error = SecurityError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let SecurityEvent::SecretRotated(r) = event;
        self.key_ids.push(r.key_id);
    }
}

impl CovenantAggregate for Security {
    fn command_name(_: &SecurityCommand) -> &'static str {
        "rotate_secret"
    }

    fn validate_id(id: &str) -> Result<(), IdError> {
        if id == SECURITY_ID {
            Ok(())
        } else {
            Err(IdError::new("security", id, format!("the only security aggregate is `{SECURITY_ID}`")))
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::values::Role;

    type Given = TestFramework<Security>;

    fn rotate(key_id: &str, actor: Actor) -> SecurityCommand {
        SecurityCommand::RotateSecret { key_id: key_id.into(), actor }
    }

    fn rotated(key_id: &str) -> SecurityEvent {
        SecurityEvent::SecretRotated(SecretRotated { key_id: key_id.into() })
    }

    #[test]
    fn an_admin_rotates_the_secret() {
        let admin = Actor::User { id: uuid::Uuid::nil(), role: Role::Admin };
        Given::with(()).given(vec![rotated("k1")]).when(rotate("k2", admin)).then_expect_events(vec![rotated("k2")]);
    }

    #[test]
    fn a_steward_cannot_rotate_the_secret() {
        let steward = Actor::User { id: uuid::Uuid::nil(), role: Role::Steward };
        Given::with(())
            .given_no_previous_events()
            .when(rotate("k1", steward))
            .then_expect_error(SecurityError::NotAdmin);
    }

    #[test]
    fn a_key_id_is_never_reused() {
        Given::with(())
            .given(vec![rotated("k1"), rotated("k2")])
            .when(rotate("k1", Actor::System))
            .then_expect_error(SecurityError::KeyIdReused("k1".into()));
    }

    #[test]
    fn malformed_key_ids_are_refused() {
        for bad in ["", "has space", "k.1", &"k".repeat(65)] {
            Given::with(())
                .given_no_previous_events()
                .when(rotate(bad, Actor::System))
                .then_expect_error(SecurityError::InvalidKeyId);
        }
    }

    #[test]
    fn only_the_jwt_id_exists() {
        assert!(Security::validate_id("jwt").is_ok());
        assert!(Security::validate_id("other").is_err());
    }
}
