//! The User aggregate: registration, role changes, logins and logouts.
//!
//! Id: a UUID (`covenant.events.user.<uuid>`). Password hashes never enter an event (the
//! stream is immutable for years); they live in PostgreSQL beside the read models.

use std::net::IpAddr;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use crate::codec::{CovenantAggregate, IdError, validate_uuid_id};
use crate::values::{Actor, Email, Role};

/// What may be asked of a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserCommand {
    /// Registers a user; only an admin (or the system, for bootstrap) may.
    Register {
        /// Login address.
        email: Email,
        /// Initial role.
        role: Role,
        /// Who asks.
        actor: Actor,
    },
    /// Changes the user's role; only an admin (or the system) may.
    ChangeRole {
        /// New role.
        role: Role,
        /// Who asks.
        actor: Actor,
    },
    /// Records a successful login from `ip`.
    RecordLogin {
        /// Client address.
        ip: IpAddr,
    },
    /// Records a logout, ending the token `token` (its `jti`) everywhere.
    RecordLogout {
        /// The token the user signed out with.
        token: Option<uuid::Uuid>,
    },
}

/// `user.registered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRegistered {
    /// Login address.
    pub email: Email,
    /// Initial role.
    pub role: Role,
}

/// `user.role_change`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRoleChanged {
    /// Role before.
    pub old_role: Role,
    /// Role after.
    pub new_role: Role,
}

/// `user.login`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserLoggedIn {
    /// Client address.
    pub ip: IpAddr,
}

/// `user.logout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UserLoggedOut {
    /// The token (its `jti`) ended by the logout: every instance refuses it from this event
    /// on, without asking PostgreSQL. Absent in events written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<uuid::Uuid>,
}

/// Facts about a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    /// See [`UserRegistered`].
    Registered(UserRegistered),
    /// See [`UserRoleChanged`].
    RoleChanged(UserRoleChanged),
    /// See [`UserLoggedIn`].
    LoggedIn(UserLoggedIn),
    /// See [`UserLoggedOut`].
    LoggedOut(UserLoggedOut),
}

crate::stored_events!(UserEvent {
    Registered(UserRegistered) = "user.registered",
    RoleChanged(UserRoleChanged) = "user.role_change",
    LoggedIn(UserLoggedIn) = "user.login",
    LoggedOut(UserLoggedOut) = "user.logout",
});

/// Why a user command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// Registration or role change by a non-admin.
    #[error("only an admin may do this")]
    NotAdmin,
    /// Register on an existing user.
    #[error("user already exists")]
    AlreadyRegistered,
    /// Anything but Register on an unknown user.
    #[error("user not found")]
    NotFound,
    /// A role change to the current role.
    #[error("the user already has role {0}")]
    RoleUnchanged(&'static str),
}

/// A user as its events left them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    email: Option<Email>,
    role: Option<Role>,
}

impl User {
    /// The login address, once registered.
    pub fn email(&self) -> Option<&Email> {
        self.email.as_ref()
    }

    /// The current role, once registered.
    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// The pure decision for `command`.
    ///
    /// # Errors
    /// [`UserError`] when refused.
    pub fn decide(&self, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
        match command {
            UserCommand::Register { email, role, actor } => {
                if !actor.is_admin() {
                    return Err(UserError::NotAdmin);
                }
                if self.email.is_some() {
                    return Err(UserError::AlreadyRegistered);
                }
                Ok(vec![UserEvent::Registered(UserRegistered { email, role })])
            }
            _ if self.role.is_none() => Err(UserError::NotFound),
            UserCommand::ChangeRole { role, actor } => self.decide_role_change(role, &actor),
            UserCommand::RecordLogin { ip } => Ok(vec![UserEvent::LoggedIn(UserLoggedIn { ip })]),
            UserCommand::RecordLogout { token } => Ok(vec![UserEvent::LoggedOut(UserLoggedOut { token_id: token })]),
        }
    }

    fn decide_role_change(&self, role: Role, actor: &Actor) -> Result<Vec<UserEvent>, UserError> {
        if !actor.is_admin() {
            return Err(UserError::NotAdmin);
        }
        let old_role = self.role.ok_or(UserError::NotFound)?;
        if old_role == role {
            return Err(UserError::RoleUnchanged(role.as_str()));
        }
        Ok(vec![UserEvent::RoleChanged(UserRoleChanged { old_role, new_role: role })])
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            UserEvent::Registered(r) => {
                self.email = Some(r.email);
                self.role = Some(r.role);
            }
            UserEvent::RoleChanged(c) => self.role = Some(c.new_role),
            UserEvent::LoggedIn(_) | UserEvent::LoggedOut(_) => {}
        }
    }
}

impl CovenantAggregate for User {
    fn command_name(command: &UserCommand) -> &'static str {
        match command {
            UserCommand::Register { .. } => "register",
            UserCommand::ChangeRole { .. } => "change_role",
            UserCommand::RecordLogin { .. } => "login",
            UserCommand::RecordLogout { .. } => "logout",
        }
    }

    fn validate_id(id: &str) -> Result<(), IdError> {
        validate_uuid_id("user", id)
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type Given = TestFramework<User>;

    fn actor(role: Role) -> Actor {
        Actor::User { id: uuid::Uuid::nil(), role }
    }

    fn registered(role: Role) -> UserEvent {
        UserEvent::Registered(UserRegistered { email: Email::parse("ada@example.org").expect("email"), role })
    }

    fn register(by: Actor) -> UserCommand {
        UserCommand::Register { email: Email::parse("ada@example.org").expect("email"), role: Role::Steward, actor: by }
    }

    #[test]
    fn an_admin_or_the_system_registers_users() {
        Given::with(())
            .given_no_previous_events()
            .when(register(actor(Role::Admin)))
            .then_expect_events(vec![registered(Role::Steward)]);
        Given::with(())
            .given_no_previous_events()
            .when(register(Actor::System))
            .then_expect_events(vec![registered(Role::Steward)]);
    }

    #[test]
    fn a_non_admin_cannot_register_users() {
        for role in [Role::Steward, Role::Viewer] {
            Given::with(())
                .given_no_previous_events()
                .when(register(actor(role)))
                .then_expect_error(UserError::NotAdmin);
        }
    }

    #[test]
    fn registering_an_existing_user_is_refused() {
        Given::with(())
            .given(vec![registered(Role::Viewer)])
            .when(register(Actor::System))
            .then_expect_error(UserError::AlreadyRegistered);
    }

    #[test]
    fn only_admins_change_roles() {
        Given::with(())
            .given(vec![registered(Role::Viewer)])
            .when(UserCommand::ChangeRole { role: Role::Steward, actor: actor(Role::Admin) })
            .then_expect_events(vec![UserEvent::RoleChanged(UserRoleChanged {
                old_role: Role::Viewer,
                new_role: Role::Steward,
            })]);
        Given::with(())
            .given(vec![registered(Role::Viewer)])
            .when(UserCommand::ChangeRole { role: Role::Admin, actor: actor(Role::Steward) })
            .then_expect_error(UserError::NotAdmin);
    }

    #[test]
    fn a_role_change_to_the_same_role_or_of_an_unknown_user_is_refused() {
        Given::with(())
            .given(vec![registered(Role::Viewer)])
            .when(UserCommand::ChangeRole { role: Role::Viewer, actor: Actor::System })
            .then_expect_error(UserError::RoleUnchanged("viewer"));
        Given::with(())
            .given_no_previous_events()
            .when(UserCommand::ChangeRole { role: Role::Viewer, actor: Actor::System })
            .then_expect_error(UserError::NotFound);
    }

    #[test]
    fn logins_and_logouts_are_recorded_for_known_users_only() {
        let ip: IpAddr = "203.0.113.7".parse().expect("ip");
        Given::with(())
            .given(vec![registered(Role::Viewer)])
            .when(UserCommand::RecordLogin { ip })
            .then_expect_events(vec![UserEvent::LoggedIn(UserLoggedIn { ip })]);
        Given::with(())
            .given(vec![registered(Role::Viewer)])
            .when(UserCommand::RecordLogout { token: None })
            .then_expect_events(vec![UserEvent::LoggedOut(UserLoggedOut::default())]);
        Given::with(())
            .given_no_previous_events()
            .when(UserCommand::RecordLogin { ip })
            .then_expect_error(UserError::NotFound);
        Given::with(())
            .given_no_previous_events()
            .when(UserCommand::RecordLogout { token: None })
            .then_expect_error(UserError::NotFound);
    }

    #[test]
    fn the_login_payload_matches_the_audit_vector() {
        use crate::codec::EventCodec;
        let e = UserEvent::LoggedIn(UserLoggedIn { ip: "203.0.113.7".parse().expect("ip") });
        assert_eq!(e.encode(), br#"{"ip":"203.0.113.7"}"#);
    }
}
